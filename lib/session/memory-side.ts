import session, { type SessionData } from 'express-session';
import memorystore from 'memorystore';
import { capTtl, endsAtOf, withoutEndsAt } from './lifetime.js';
import { renewalThresholdMs, type StoreConfig, ttlMs } from './options.js';
import { TOMBSTONE } from './redis-sessions.js';

const MemoryStore = memorystore(session);

type Session = SessionData & { id: string };

/** How long after a read renewed a session the touch that follows it is taken as the same request's. */
const READ_RENEWAL_COVERS_MS = 1_000;

/** What the store knows of a copy it keeps of a session in Redis. */
export interface CopyInfo {
	/** When the session expires in Redis (epoch ms); 0 when unknown. */
	readonly expiresAt: number;
	/** The connection generation the copy was read or written on (see the store's near cache). */
	readonly generation: number;
	/**
	 * When the read that brought the copy renewed the session's expiry (epoch ms), until a
	 * touch comes: the touch that ends the same request has nothing left to do.
	 */
	readonly renewedByReadAt?: number;
}

/**
 * The in-process side of the store: memorystore, bounded by `memory.max` (least recently
 * used dropped first) and given the same time to live as Redis. memorystore counts time
 * to live in milliseconds and connect-redis in seconds; this is where that is bridged.
 *
 * It holds sessions as text, in the format Redis holds them, and destroyed sessions as
 * tombstones (the same JSON `null` as in Redis, for `tombstoneTtlMs`): a destroyed id is
 * never served nor written again here, in memory-only mode as during an outage.
 *
 * Everything here is synchronous but the parse of a custom serializer.
 */
export class MemorySide {
	readonly #store: InstanceType<typeof MemoryStore>;
	readonly #config: StoreConfig;
	/** Beside each copy of a session in Redis; dropped with the copy (the cache's `dispose`). */
	readonly #info = new Map<string, CopyInfo>();

	constructor(config: StoreConfig) {
		this.#config = config;
		this.#store = new MemoryStore({
			max: config.memory.max,
			checkPeriod: config.memory.checkPeriodMs,
			serializer: config.serializer as { parse(text: string): unknown; stringify(value: unknown): string },
			// 0 is "no expiry" to the LRU cache behind memorystore. Used by its touch: never
			// past the end of the session's absolute lifetime.
			ttl: (_options, session, sid) => (config.disableTTL ? 0 : this.#touchedTtl(sid, session)),
			dispose: (sid) => this.#info.delete(sid),
		});
	}

	/** The time to live a touch gives `session`: its own, never past its end (at least 1 ms: 0 is no expiry). */
	#touchedTtl(sid: string, session: SessionData): number {
		const ttl = ttlMs(this.#config, session);
		if (this.#config.absoluteLifetimeMs === undefined) return ttl;
		return Math.max(1, capTtl(ttl, endsAtOf(this.#lru.peek(sid))));
	}

	/** The LRU cache behind memorystore, which holds each session's text. */
	get #lru() {
		return this.#store.store;
	}

	/** The session held for `sid`: `null` for none, or a tombstone. */
	async get(sid: string): Promise<SessionData | null> {
		const text = this.#lru.get(sid);
		if (text === undefined || text === TOMBSTONE) return null;
		return withoutEndsAt(((await this.#config.serializer.parse(text)) as SessionData | null) ?? null);
	}

	/** The text held for `sid`, tombstones left out. */
	text(sid: string): string | undefined {
		const text = this.#lru.get(sid);
		return text === TOMBSTONE ? undefined : text;
	}

	/** What is known of the copy of `sid` in Redis, if one is held. */
	info(sid: string): CopyInfo | undefined {
		return this.#info.get(sid);
	}

	/**
	 * Whether renewing `sid` to `ttl` ms from now moves the known expiry of its copy in
	 * Redis far enough to be sent. Not when the read of the same request renewed it
	 * already: express-session touches an unchanged session after reading it, and the read
	 * did the touch's work. That read is the last one that renewed, less than a second ago:
	 * a read with no touch after it (`store.get` from other code, `req.session.reload()`)
	 * must not make a later request skip its renewal.
	 */
	renewalDue(sid: string, ttl: number): boolean {
		const info = this.info(sid);
		if (info?.renewedByReadAt !== undefined) {
			this.describe(sid, { ...info, renewedByReadAt: undefined });
			if (Date.now() - info.renewedByReadAt < READ_RENEWAL_COVERS_MS) return false;
		}

		return Date.now() + ttl - (info?.expiresAt ?? 0) >= renewalThresholdMs(this.#config, ttl);
	}

	/** Records what is known of the copy held of `sid` (nothing if none is held). */
	describe(sid: string, info: CopyInfo): void {
		if (this.#lru.peek(sid) !== undefined) this.#info.set(sid, info);
	}

	/** The text of the session held for `sid`, without parsing it: `undefined` for none or a tombstone. */
	peek(sid: string): string | undefined {
		const text = this.#lru.peek(sid);
		return text === TOMBSTONE ? undefined : text;
	}

	/** Whether `sid` was destroyed here (or found destroyed in Redis) within `tombstoneTtlMs`. */
	isDestroyed(sid: string): boolean {
		return this.#lru.peek(sid) === TOMBSTONE;
	}

	/**
	 * Keeps a session's text for `ttlMs` milliseconds: a warm copy of what Redis holds, or
	 * the session itself during an outage and in memory-only mode. The text goes straight
	 * into memorystore's LRU cache, which holds sessions as text in that same format.
	 */
	keepWarm(sid: string, text: string, ttlMs: number, info?: CopyInfo): void {
		if (this.#config.disableTTL) this.#lru.set(sid, text, 0);
		else if (ttlMs > 0) this.#lru.set(sid, text, ttlMs);
		else return this.#lru.del(sid);
		if (info) this.#info.set(sid, info);
	}

	/** Marks `sid` destroyed for `tombstoneTtlMs`. */
	bury(sid: string): void {
		this.#lru.set(sid, TOMBSTONE, this.#config.tombstoneTtlMs);
	}

	touch(sid: string, session: SessionData): void {
		if (this.#config.disableTouch || this.#config.disableTTL || this.isDestroyed(sid)) return;
		this.#store.touch(sid, session);
	}

	/** Drops what is held for `sid`, session or tombstone. */
	forget(sid: string): void {
		this.#lru.del(sid);
	}

	/** Drops everything held but what `keep` names. */
	forgetAll(keep: (sid: string) => boolean = () => false): void {
		for (const sid of this.#lru.keys()) if (!keep(sid)) this.#lru.del(sid);
	}

	/** Every live session, each with its `id`, as connect-redis's `all()` gives them. */
	async all(): Promise<Session[]> {
		const texts: Array<[string, string]> = [];
		this.#lru.forEach((text, sid) => {
			if (text !== TOMBSTONE) texts.push([sid, text]);
		});
		const sessions = await Promise.all(
			texts.map(async ([id, text]) => ({ ...withoutEndsAt((await this.#config.serializer.parse(text)) as SessionData), id })),
		);
		return sessions;
	}

	ids(): string[] {
		const ids: string[] = [];
		this.#lru.forEach((text, sid) => {
			if (text !== TOMBSTONE) ids.push(sid);
		});
		return ids;
	}

	close(): void {
		this.#store.stopInterval();
	}
}
