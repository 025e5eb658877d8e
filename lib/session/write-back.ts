import type { Serializer, StoreConfig } from './options.js';
import { capTtl, endsAtOf, withEndsAt } from './lifetime.js';
import { renewedTtlMs, ttlMs } from './options.js';
import type { MemorySide } from './memory-side.js';
import type { OutageJournal } from './outage-journal.js';
import type { RedisSessions } from './redis-sessions.js';
import type { UserIndex } from './user-index.js';
import { isRedisFailure, type RedisClient } from '../redis/client.js';
import { EpochWatch } from '../redis/epoch.js';
import type { Failover } from '../redis/failover.js';
import type { OnceLogger } from '../logger.js';

/** Bulk operations (`all`, `ids`, `length`, `clear`) scan every key: they get this many deadlines. */
export const BULK_DEADLINES = 20;

/** Write-back sends this many commands at a time (node-redis pipelines them). */
const WRITE_BACK_BATCH = 100;

/** What one write-back did, as given to the `'writeback'` event. */
export interface WriteBackResult {
	/** Sessions destroyed during the outage, now destroyed in Redis. */
	readonly destroyed: number;
	/** Sessions created or changed during the outage, now written to Redis. */
	readonly written: number;
	/** Sessions touched during the outage, their expiry now extended in Redis. */
	readonly touched: number;
	/** Sessions written back because Redis came back empty (`SET NX`: nothing newer was overwritten). */
	readonly restored: number;
	/** Pending sessions no longer in memory (expired, or dropped at `memory.max`), so not written. */
	readonly lost: number;
	/** Sessions Redis refused with a reply error (logged). */
	readonly failed: number;
}

/** What the write-back works on: the store's parts. */
export interface WriteBackParts {
	readonly config: StoreConfig;
	readonly client: RedisClient;
	readonly failover: Failover;
	readonly sessions: RedisSessions;
	readonly memory: MemorySide;
	readonly journal: OutageJournal;
	readonly log: OnceLogger;
	/** The caller's serializer, its errors marked as the caller's. */
	readonly serializer: Serializer;
	/** Whether the store's copies are kept current by Redis's invalidations. */
	readonly tracked: boolean;
	/** Each user's sessions: ends of users replayed first, write-backs checked against them. */
	readonly users: UserIndex;
	/** Reports what a write-back did (the store's `'writeback'` event). */
	readonly emit: (result: WriteBackResult) => void;
}

/**
 * Brings Redis up to date after an outage: the store's recovery step. It also keeps the
 * marker that tells a Redis that lost its data (restarted empty, flushed) from one that
 * kept it, since only the former needs sessions restored.
 */
export class WriteBack {
	readonly #config: StoreConfig;
	readonly #failover: Failover;
	readonly #sessions: RedisSessions;
	readonly #memory: MemorySide;
	readonly #journal: OutageJournal;
	readonly #log: OnceLogger;
	readonly #serializer: Serializer;
	readonly #tracked: boolean;
	readonly #users: UserIndex;
	readonly #emit: (result: WriteBackResult) => void;
	readonly #epoch: EpochWatch;

	constructor(parts: WriteBackParts) {
		this.#config = parts.config;
		this.#failover = parts.failover;
		this.#sessions = parts.sessions;
		this.#memory = parts.memory;
		this.#journal = parts.journal;
		this.#log = parts.log;
		this.#serializer = parts.serializer;
		this.#tracked = parts.tracked;
		this.#users = parts.users;
		this.#emit = parts.emit;
		// Refused (an ACL that allows only the session prefix, say): the store works on,
		// without noticing that Redis lost its data.
		this.#epoch = new EpochWatch(parts.client, parts.failover, `resilient-session:epoch:${parts.config.prefix}`, (key, error) =>
			this.#log.warn(
				'epoch-refused',
				`resilient-session: Redis refused the marker key ${key} (${error.message}): ` +
					'a Redis that restarts empty is not noticed, so sessions are not restored from memory',
			),
		);
	}

	/** Learns the marker once Redis first answers, so that a later loss of data is noticed. */
	learnEpoch(isClosed: () => boolean): void {
		this.#epoch.learn(isClosed, this.#config.probeIntervalMs);
	}

	/**
	 * Brings Redis up to date after an outage, in the order that keeps logouts done:
	 * restore what Redis lost, destroy, write, touch. Rejects when Redis fails meanwhile;
	 * the failover then stays on memory and tries again later. Every step is idempotent,
	 * since a write that failed on a dropped socket may have reached Redis anyway.
	 */
	async run(): Promise<void> {
		const failover = this.#failover;
		const sessions = this.#sessions;
		const journal = this.#journal;
		const counts = { destroyed: 0, written: 0, touched: 0, restored: 0, lost: 0, failed: 0 };
		// Users whose sessions were all ended during the outage: first of all.
		counts.destroyed += await this.#users.replayEnds();

		if (await this.#epoch.lostData()) counts.restored = await this.#restore(counts);

		if (journal.cleared) {
			try {
				await failover.run('SCAN+DEL', () => sessions.clear(), this.#config.timeoutMs * BULK_DEADLINES);
			} catch (error) {
				// A refusal must not hold the store on memory for good: logged, and done with.
				if (isRedisFailure(error)) throw error;
				counts.failed++;
				this.#log.error('writeback-failed', `resilient-session: Redis refused a write-back: ${(error as Error).message}`);
			}

			journal.settleClear();
		}

		// Tombstones, not deletions: an instance that recovers later must find them, and
		// not restore or write back what was destroyed here.
		await this.#inBatches(journal.tombstoneEntries(), async ([sid, seq]) => {
			const bury = () => this.#users.withDestroy(sessions.bury(sid), sid).then(() => true);
			if (await this.#writeOne(counts, 'SET', bury)) counts.destroyed++;
			journal.settleTombstone(sid, seq);
		});

		await this.#inBatches(journal.pendingEntries(), async ([sid, { kind, seq, at }]) => {
			const session = await this.#memory.get(sid).catch(() => null);
			// A request wrote a newer version meanwhile (to Redis, or again to memory):
			// checked with no await before the command goes out, so an older one never
			// overwrites it.
			if (!journal.isCurrent(sid, seq)) return;
			if (!session) counts.lost++;
			else if (kind === 'write') {
				const { text, ttl } = this.#withEnd(sid, this.#serializer.stringify(session), Math.max(ttlMs(this.#config, session), 1));
				if (ttl <= 0) return journal.settlePending(sid, seq);
				const write = () => this.#users.withWrite(sessions.write(sid, text, ttl), sid, session, ttl, undefined, at);
				if (await this.#writeOne(counts, 'SET', async () => (await write()) === 'written')) counts.written++;
			} else {
				const ttl = ttlMs(this.#config, session);
				if (await this.#writeOne(counts, 'PEXPIRE', async () => (await sessions.renew(sid, ttl)) === 'written')) {
					counts.touched++;
				}
			}

			journal.settlePending(sid, seq);
		});

		// Sessions just written back whose user's sessions were ended after they were written.
		counts.destroyed += await this.#users.checkRewritten();
		if (Object.values(counts).some((count) => count > 0)) this.#emit(counts);
	}

	/**
	 * Writes back to a Redis that lost its data the sessions this instance can vouch for,
	 * each only if Redis has no key for it (`SET NX`, so neither a newer session nor a
	 * tombstone another instance wrote back first is overwritten):
	 * - with `CLIENT TRACKING` (clients the store creates), every copy it holds: each was
	 *   current when the link was lost, as Redis told of every change until then;
	 * - without, only the sessions used here during the outage: a copy of a session that
	 *   nobody used may be one another instance destroyed meanwhile.
	 * Sessions written during the outage are written back after this, with the others.
	 */
	async #restore(counts: { failed: number }): Promise<number> {
		const { serializer, disableTTL } = this.#config;
		const journal = this.#journal;
		// Copies held through the outage were current when the link was lost.
		const heldSince = this.#failover.since.getTime();
		let restored = 0;
		const held = await this.#memory.all();
		const sessions = held.filter(({ id }) => !journal.hasPendingWrite(id) && (this.#tracked || journal.isPending(id)));
		await this.#inBatches(sessions, async (session) => {
			const { id, ...data } = session;
			if (journal.isDestroyed(id)) return;
			// A copy holds the session as last written, with the cookie of then: it lives on
			// as long as a touch would have kept it.
			const { text, ttl } = this.#withEnd(id, serializer.stringify(data), renewedTtlMs(this.#config, data));
			if (!disableTTL && ttl <= 0) return;
			const written = await this.#writeOne(
				counts,
				'SET NX',
				async () =>
					(await this.#users.withWrite(this.#sessions.write(id, text, ttl, 'NX'), id, data, ttl, undefined, heldSince)) ===
					'written',
			);
			if (written) restored++;
		});
		return restored;
	}

	/**
	 * With an absolute lifetime, the text of a session held here with the end its copy
	 * carries (parsed sessions no longer have it), and its time to live cut to that end.
	 */
	#withEnd(sid: string, text: string, ttl: number): { text: string; ttl: number } {
		if (this.#config.absoluteLifetimeMs === undefined) return { text, ttl };
		const endsAt = endsAtOf(this.#memory.peek(sid));
		return endsAt === undefined ? { text, ttl } : { text: withEndsAt(text, endsAt), ttl: capTtl(ttl, endsAt) };
	}

	/** Runs `write` over `items`, `WRITE_BACK_BATCH` at a time (node-redis pipelines each batch). */
	async #inBatches<T>(items: T[], write: (item: T) => Promise<void>): Promise<void> {
		for (let start = 0; start < items.length; start += WRITE_BACK_BATCH) {
			await Promise.all(items.slice(start, start + WRITE_BACK_BATCH).map(write));
		}
	}

	/**
	 * Runs a write-back command. A reply error (Redis refused this one key) is logged and
	 * counted, and the item is done with; any other error stops the write-back.
	 */
	async #writeOne(counts: { failed: number }, operation: string, command: () => Promise<unknown>): Promise<boolean> {
		try {
			return Boolean(await this.#failover.run(operation, command));
		} catch (error) {
			if (isRedisFailure(error)) throw error;
			counts.failed++;
			this.#log.error('writeback-failed', `resilient-session: Redis refused a write-back: ${(error as Error).message}`);
			return false;
		}
	}
}
