import session, { type SessionData } from 'express-session';
import memorystore from 'memorystore';
import { type StoreConfig, ttlMs } from './options.js';

const MemoryStore = memorystore(session);

type Session = SessionData & { id: string };

/**
 * The in-process side of the store: memorystore, bounded by `memory.max` (least recently
 * used dropped first) and given the same time to live as Redis. memorystore counts time
 * to live in milliseconds and connect-redis in seconds; this is where that is bridged.
 *
 * Writes are synchronous: memorystore's set, touch and destroy only defer their callback.
 */
export class MemorySide {
	readonly #store: InstanceType<typeof MemoryStore>;
	readonly #config: StoreConfig;

	constructor(config: StoreConfig) {
		this.#config = config;
		this.#store = new MemoryStore({
			max: config.memory.max,
			checkPeriod: config.memory.checkPeriodMs,
			serializer: config.serializer as { parse(text: string): unknown; stringify(value: unknown): string },
			// 0 is "no expiry" to the LRU cache behind memorystore.
			ttl: (_options, session) => (config.disableTTL ? 0 : ttlMs(config, session)),
		});
	}

	/** Sessions held, expired ones not yet swept included. */
	get size(): number {
		return this.#store.store.itemCount;
	}

	get(sid: string): Promise<SessionData | null> {
		return new Promise((resolve, reject) => {
			this.#store.get(sid, (error, value) => {
				if (error) reject(error);
				// A serializer's parse() may return a promise: resolve() unwraps it.
				else resolve(value ?? null);
			});
		});
	}

	/**
	 * Keeps a warm copy of a session read from Redis, as the text Redis holds, for
	 * `ttlMs` milliseconds. The text goes straight into memorystore's LRU cache, which holds
	 * sessions as text in that same format: parsing it only to serialize it again would
	 * cost every read a second serialization.
	 */
	keepWarm(sid: string, text: string, ttlMs: number): void {
		if (this.#config.disableTTL) this.#store.store.set(sid, text, 0);
		else if (ttlMs > 0) this.#store.store.set(sid, text, ttlMs);
	}

	touch(sid: string, session: SessionData): void {
		if (!this.#config.disableTouch && !this.#config.disableTTL) this.#store.touch(sid, session);
	}

	destroy(sid: string): void {
		this.#store.destroy(sid);
	}

	clear(): void {
		this.#store.clear();
	}

	/** Every live session, each with its `id`, as connect-redis's `all()` gives them. */
	async all(): Promise<Session[]> {
		const byId = await new Promise<Record<string, SessionData>>((resolve, reject) => {
			this.#store.all((error, value) => (error ? reject(error) : resolve(value ?? {})));
		});
		const sessions = await Promise.all(
			Object.entries(byId).map(async ([id, data]) => ({ ...(await data), id }) as Session),
		);
		return sessions;
	}

	ids(): Promise<string[]> {
		return new Promise((resolve, reject) => {
			this.#store.ids((error, value) => (error ? reject(error) : resolve(value ?? [])));
		});
	}

	length(): Promise<number> {
		return new Promise((resolve, reject) => {
			this.#store.length((error, value) => (error ? reject(error) : resolve(value ?? 0)));
		});
	}

	close(): void {
		this.#store.stopInterval();
	}
}
