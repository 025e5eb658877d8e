import type { OnceLogger } from '../logger.js';
import { isRedisFailure } from '../redis/client.js';
import type { Failover } from '../redis/failover.js';
import type { MemorySide } from './memory-side.js';
import type { StoreConfig } from './options.js';
import type { OutageJournal } from './outage-journal.js';
import type { RedisSessions } from './redis-sessions.js';
import { parseSessionText } from './session-text.js';
import type { SessionWithId } from './store-types.js';
import { BULK_DEADLINES } from './write-back.js';

/**
 * The store's operations on every session (`all`, `ids`, `length`, `clear`). They scan
 * every key, which can take long: they get a longer deadline, and missing it trips
 * nothing (a big keyspace is not an outage). Reads answer from memory when Redis is away
 * or fails; a clear during an outage clears Redis when it returns.
 */
export class BulkOperations {
	readonly #config: StoreConfig;
	readonly #log: OnceLogger;
	readonly #memory: MemorySide;
	readonly #journal: OutageJournal;
	readonly #redis: { readonly sessions: RedisSessions; readonly failover: Failover } | undefined;

	constructor(
		config: StoreConfig,
		log: OnceLogger,
		memory: MemorySide,
		journal: OutageJournal,
		redis?: { readonly sessions: RedisSessions; readonly failover: Failover },
	) {
		this.#config = config;
		this.#log = log;
		this.#memory = memory;
		this.#journal = journal;
		this.#redis = redis;
	}

	/** Every session with its id; what Redis holds that is not a session is left out. */
	all(): Promise<SessionWithId[]> {
		return this.#read(
			async ({ sessions }) => {
				const read = await Promise.all(
					(await sessions.entries()).map(async ([id, text]) => {
						const session = await parseSessionText(this.#config, this.#log, id, text);
						return session && ({ ...session, id } as SessionWithId);
					}),
				);
				return read.filter((session): session is SessionWithId => session !== null);
			},
			() => this.#memory.all(),
		);
	}

	ids(): Promise<string[]> {
		return this.#read(
			async ({ sessions }) => (await sessions.entries()).map(([id]) => id),
			async () => this.#memory.ids(),
		);
	}

	length(): Promise<number> {
		return this.#read(
			async ({ sessions }) => (await sessions.entries()).length,
			async () => this.#memory.ids().length,
		);
	}

	/**
	 * Clears memory and Redis. During an outage, Redis is cleared when it returns. When
	 * Redis fails during the clear itself, the promise rejects: the caller may try again.
	 */
	async clear(): Promise<void> {
		this.#memory.forgetAll();
		const redis = this.#redis;
		if (!redis) return;
		if (redis.failover.backend === 'memory') {
			this.#journal.clearedAll();
			return;
		}

		await redis.failover.runWhenReady('SCAN+DEL', () => redis.sessions.clear(), this.#config.timeoutMs * BULK_DEADLINES);
	}

	async #read<T>(
		fromRedis: (redis: { readonly sessions: RedisSessions }) => Promise<T>,
		fromMemory: () => Promise<T>,
	): Promise<T> {
		const redis = this.#redis;
		if (!redis || redis.failover.backend === 'memory') return fromMemory();
		try {
			return await redis.failover.runWhenReady('SCAN', () => fromRedis(redis), this.#config.timeoutMs * BULK_DEADLINES);
		} catch (error) {
			if (!isRedisFailure(error)) throw error;
			return fromMemory();
		}
	}
}
