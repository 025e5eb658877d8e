import { randomUUID } from 'node:crypto';
import { RedisStore } from 'connect-redis';
import { Store, type SessionData } from 'express-session';
import { type Callback, settle } from '../callback.js';
import { withDeadline } from '../redis/deadline.js';
import { StoreClosedError } from '../errors.js';
import { type Attempt, type Backend, Failover } from '../redis/failover.js';
import { OnceLogger } from '../logger.js';
import { describe } from '../options/checks.js';
import { MemorySide } from './memory-side.js';
import {
	renewedTtlMs,
	resolveStoreOptions,
	type ResilientStoreOptions,
	type Serializer,
	type StoreConfig,
	ttlMs,
} from './options.js';
import { OutageJournal } from './outage-journal.js';
import { markLoaded } from './request-session.js';
import {
	connectInBackground,
	createOwnedClient,
	isCluster,
	isRedisFailure,
	markCallerError,
	type RedisClient,
} from '../redis/client.js';
import { RedisScript } from '../redis/script.js';
import { linkStore } from '../redis/link.js';

/** Bulk operations (`all`, `ids`, `length`, `clear`) scan every key: they get this many deadlines. */
const BULK_DEADLINES = 20;

/** Write-back sends this many commands at a time (node-redis pipelines them). */
const WRITE_BACK_BATCH = 100;

/**
 * Reads a session and extends its expiry in one round trip, to the time to live that
 * express-session's touch would give it at the end of the request: the cookie's full
 * `originalMaxAge`, or the store's `ttl` for a cookie without one (ARGV[1]); both in
 * milliseconds. The touch of an unchanged session then has nothing left to do. connect-redis needs two round trips
 * for this (`GET`, then `EXPIRE` from touch), which is why reads do not go through it
 * when sessions are JSON and `ttl` is a number. Returns `[text, ttl]`, or nil.
 */
const READ_AND_RENEW = new RedisScript(`
local text = redis.call('GET', KEYS[1])
if not text then return false end
local ttl = tonumber(ARGV[1])
-- express-session writes the cookie first, and the cookie its originalMaxAge first:
-- reading it off the front of the text spares decoding the whole session.
local maxAge = string.match(text, '^{"cookie":{"originalMaxAge":([^,}]+)')
if maxAge == nil then
	local ok, session = pcall(cjson.decode, text)
	if ok and type(session) == 'table' and type(session.cookie) == 'table' then
		maxAge = session.cookie.originalMaxAge
	end
end
maxAge = tonumber(maxAge)
if maxAge then ttl = math.ceil(maxAge) end
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
return { text, ttl }
`);

/**
 * When a session read from Redis was given its renewed expiry (epoch ms), carried from
 * the read to express-session's touch: keyed by the object `get` returned, then by the
 * request's session made from it. Kept beside the session rather than on it, so that
 * nothing of the store's own shows on a session (spreads, clones, deep equality).
 */
const renewedUntil = new WeakMap<object, number>();

/** A touch within this much of the renewal made by the read is not sent again. */
const RENEWAL_TOLERANCE_MS = 2_000;

/** A session read from Redis: the text Redis holds, and how long it lives on. */
interface Read {
	readonly text: string;
	/** The time to live the read gave it (ms), when it renewed the expiry itself. */
	readonly ttl?: number;
	/** Whether the read renewed the expiry itself. */
	readonly renewed: boolean;
}

/** The caller's serializer, with its errors marked as the caller's (they trip no fallback). */
const guardSerializer = (serializer: Serializer): Serializer => ({
	parse(text) {
		try {
			const parsed = serializer.parse(text);
			return parsed instanceof Promise ? parsed.catch((error: unknown) => Promise.reject(markCallerError(error))) : parsed;
		} catch (error) {
			throw markCallerError(error);
		}
	},
	stringify(session) {
		try {
			return serializer.stringify(session);
		} catch (error) {
			throw markCallerError(error);
		}
	},
});

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

/** A snapshot of the store's state, from {@link ResilientStore.stats}. */
export interface StoreStats {
	/** Where operations go right now. */
	readonly backend: Backend;
	/** Since when. */
	readonly since: Date;
	/** How many times the store fell back to memory. */
	readonly failovers: number;
	/** The last error Redis or its client gave. */
	readonly lastError: Error | undefined;
	/** Sessions written, touched or destroyed during the outage, waiting for Redis. */
	readonly pendingWriteBack: number;
	/** Of those, sessions destroyed. */
	readonly tombstones: number;
	/** Sessions held in memory (warm copies, and every session during an outage). */
	readonly memorySessions: number;
	/** Smoothed latency of Redis operations in milliseconds (undefined before the first). */
	readonly redisLatencyMs: number | undefined;
}

/** A session as `all()` lists it: with its id. */
export type SessionWithId = SessionData & { id: string };

// Typed events on top of express-session's Store, which is an EventEmitter.
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export interface ResilientStore {
	on(event: 'fallback', listener: (error: Error) => void): this;
	on(event: 'recover', listener: () => void): this;
	on(event: 'writeback', listener: (result: WriteBackResult) => void): this;
	on(event: string | symbol, listener: (...args: any[]) => void): this;
	once(event: 'fallback', listener: (error: Error) => void): this;
	once(event: 'recover', listener: () => void): this;
	once(event: 'writeback', listener: (result: WriteBackResult) => void): this;
	once(event: string | symbol, listener: (...args: any[]) => void): this;
}

/**
 * An express-session store that keeps sessions in Redis through connect-redis and
 * switches to an in-process memorystore when Redis is unreachable or slow, then back
 * when Redis recovers.
 *
 * It never emits `'disconnect'` (express-session would then drop every session) nor
 * `'error'`. It emits `'fallback'` (with the error), `'recover'` and `'writeback'`.
 */
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export class ResilientStore extends Store {
	readonly #config: StoreConfig;
	readonly #log: OnceLogger;
	readonly #memory: MemorySide;
	readonly #journal: OutageJournal;
	readonly #client: RedisClient | undefined;
	readonly #ownsClient: boolean;
	readonly #redis: RedisStore | undefined;
	readonly #failover: Failover | undefined;
	/** The caller's serializer, its errors marked as the caller's. */
	readonly #serializer: Serializer;
	/** Whether reads renew the expiry in the same round trip (see `READ_AND_RENEW`). */
	readonly #renewOnRead: boolean;
	/** The marker last seen in Redis; a different or missing one means Redis lost its data. */
	#epoch: string | undefined;
	#closed = false;

	constructor(options: ResilientStoreOptions = {}) {
		super();
		const config = resolveStoreOptions(options);
		this.#config = config;
		this.#log = new OnceLogger(config.logger);
		this.#memory = new MemorySide(config);
		this.#journal = new OutageJournal(
			{ maxTombstones: config.maxTombstones, maxPending: config.memory.max },
			this.#log,
		);

		this.#serializer = guardSerializer(config.serializer);
		this.#renewOnRead =
			config.serializer === JSON && typeof config.ttl === 'number' && !config.disableTouch && !config.disableTTL;
		this.#ownsClient = config.client === undefined && config.url !== undefined;
		this.#client = this.#ownsClient
			? createOwnedClient({
					url: config.url!,
					connectTimeoutMs: Math.max(config.timeoutMs * 4, 1_000),
					reconnectMaxDelayMs: config.reconnectMaxDelayMs,
					// The failover records and reports the error; this only keeps it from crashing.
					onError: () => {},
				})
			: config.client;

		if (!this.#client) {
			linkStore(this, undefined);
			if (process.env.NODE_ENV === 'production') {
				config.logger.warn(
					'resilient-session: no Redis configured (no `client`, `url` or REDIS_URL): sessions are kept ' +
						'in this process only and are not shared between instances',
				);
			}

			return;
		}

		const client = this.#client;
		this.#redis = new RedisStore({
			client,
			prefix: config.prefix,
			ttl: config.ttl,
			disableTTL: config.disableTTL,
			disableTouch: config.disableTouch,
			serializer: this.#serializer,
			scanCount: config.scanCount,
		});
		this.#failover = new Failover({
			client,
			timeoutMs: config.timeoutMs,
			probeIntervalMs: config.probeIntervalMs,
			recoverAfterProbes: config.recoverAfterProbes,
			minFallbackMs: config.minFallbackMs,
			log: this.#log,
			resetConnection: this.#ownsClient ? () => this.#resetConnection() : undefined,
		});
		linkStore(this, { failover: this.#failover, client });
		this.#failover.on('fallback', (error) => {
			this.#journal.forgetWarnings();
			this.emit('fallback', error);
		});
		this.#failover.on('recover', () => this.emit('recover'));
		this.#failover.addRecoveryStep({
			flush: () => this.#writeBack(),
			pending: () => !this.#journal.isEmpty,
		});
		this.#learnEpoch();
	}

	/** Where operations go right now: `'redis'` or `'memory'`. */
	get backend(): Backend {
		return this.#failover?.backend ?? 'memory';
	}

	/**
	 * Called by express-session when a request's session was found in the store; marks
	 * the request so that the rate limit can tell a stored session from a new one.
	 */
	override createSession(...args: Parameters<Store['createSession']>): ReturnType<Store['createSession']> {
		const [req, data] = args;
		if (req.sessionID) markLoaded(req, req.sessionID);
		const session = super.createSession(...args);
		const until = renewedUntil.get(data);
		if (until !== undefined) renewedUntil.set(session, until);
		return session;
	}

	/** A snapshot of the store's state. */
	stats(): StoreStats {
		return {
			backend: this.backend,
			since: this.#failover?.since ?? new Date(0),
			failovers: this.#failover?.failovers ?? 0,
			lastError: this.#failover?.lastError,
			pendingWriteBack: this.#journal.pending + this.#journal.tombstones,
			tombstones: this.#journal.tombstones,
			memorySessions: this.#memory.size,
			redisLatencyMs: this.#failover?.latencyMs,
		};
	}

	/** Reads a session: `null` if there is none. */
	get(sid: string, callback?: Callback<SessionData | null>): Promise<SessionData | null | undefined> {
		return settle(this.#get(sid), callback);
	}

	/** Creates or replaces a session. */
	set(sid: string, session: SessionData, callback?: Callback<void>): Promise<void> {
		return settle(this.#set(sid, session), callback);
	}

	/** Extends a session's time to live. */
	override touch(sid: string, session: SessionData, callback?: Callback<void>): Promise<void> {
		return settle(this.#touch(sid, session), callback);
	}

	/** Destroys a session. Destroyed during an outage, it stays destroyed after it. */
	destroy(sid: string, callback?: Callback<void>): Promise<void> {
		return settle(this.#destroy(sid), callback);
	}

	/** Every session, each with its `id`. During an outage: those held by this instance. */
	override all(callback?: Callback<SessionWithId[]>): Promise<SessionWithId[] | undefined> {
		return settle(this.#bulk('all', () => this.#allRedis(), () => this.#memory.all()), callback) as Promise<
			SessionWithId[] | undefined
		>;
	}

	/** Every session id. During an outage: those held by this instance. */
	ids(callback?: Callback<string[]>): Promise<string[] | undefined> {
		return settle(this.#bulk('ids', () => this.#redis!.ids(), () => this.#memory.ids()), callback);
	}

	/** How many sessions there are. During an outage: those held by this instance. */
	override length(callback?: Callback<number>): Promise<number | undefined> {
		return settle(this.#bulk('length', () => this.#redis!.length(), () => this.#memory.length()), callback);
	}

	/** Destroys every session. During an outage, Redis is cleared when it returns. */
	override clear(callback?: Callback<void>): Promise<void> {
		return settle(this.#clear(), callback);
	}

	/**
	 * Stops every timer and closes the client the store created (not one passed as
	 * `client`). Afterwards every method rejects with `ERR_RESILIENT_CLOSED`.
	 */
	async close(): Promise<void> {
		if (this.#closed) return;
		this.#closed = true;
		this.#failover?.close();
		this.#memory.close();
		const client = this.#client;
		if (!this.#ownsClient || !client) return;
		// Even a client that is not open may have a reconnection under way: destroy() stops it.
		const destroy = () => {
			try {
				client.destroy();
			} catch {}
		};

		if (client.isReady) {
			await withDeadline(client.close() as Promise<void>, this.#config.timeoutMs, 'close').catch(destroy);
		} else {
			destroy();
		}
	}

	async #get(sid: string): Promise<SessionData | null> {
		// Right after a recovery, what the outage changed may not be in Redis yet.
		if (this.#journal.isDestroyed(sid)) return null;
		if (this.#journal.hasPendingWrite(sid)) return this.#memory.get(sid);
		const read = await this.#attempt('get', this.#renewOnRead ? 'GET+EXPIRE' : 'GET', () => this.#readRedis(sid));
		if (!read.served) return this.#memory.get(sid);
		// Never let the memory side serve a session Redis no longer has.
		if (!read.value) {
			this.#memory.destroy(sid);
			return null;
		}

		const { text, renewed } = read.value;
		// Parsed outside the failover: a session the serializer rejects is not a Redis failure.
		const session = await this.#parse(sid, text);
		if (!session) {
			this.#memory.destroy(sid);
			return null;
		}

		const ttl = read.value.ttl ?? renewedTtlMs(this.#config, session);
		// Keep the memory side warm, for as long as Redis keeps the session.
		this.#memory.keepWarm(sid, text, ttl);
		if (renewed) renewedUntil.set(session, Date.now() + ttl);
		return session;
	}

	/**
	 * Parses the text Redis holds for `sid`. Text that is not a session (`null`, empty,
	 * garbage: another writer, a corrupted value) is no session, logged once, so that the
	 * request goes on with a fresh one instead of failing.
	 */
	async #parse(sid: string, text: string): Promise<SessionData | null> {
		let why: string;
		try {
			const session: unknown = await this.#config.serializer.parse(text);
			if (session !== null && typeof session === 'object' && !Array.isArray(session)) return session as SessionData;
			why = `it is ${describe(session)}`;
		} catch (error) {
			why = (error as Error).message;
		}

		this.#log.warn(
			'unreadable-session',
			`resilient-session: the session text of ${JSON.stringify(this.#config.prefix + sid)} is not a session (${why}): treated as no session`,
		);
		return null;
	}

	/**
	 * Reads the text of `sid` from Redis: with its expiry renewed in the same round trip
	 * when it can be. The text, not a parsed session, so that it is parsed once and kept
	 * warm as it is (connect-redis's get would parse it, and the warm copy serialize it again).
	 */
	async #readRedis(sid: string): Promise<Read | null> {
		const key = this.#config.prefix + sid;
		if (this.#renewOnRead) {
			const reply = (await READ_AND_RENEW.run(this.#client!, [key], [(this.#config.ttl as number) * 1000])) as
				| [string, number]
				| null;
			return reply && { text: reply[0], ttl: Number(reply[1]), renewed: true };
		}

		const text = (await this.#client!.get(key)) as string | null;
		return text === null ? null : { text, renewed: false };
	}

	/**
	 * Writes a session's `text` to Redis with its time to live in milliseconds (`PX`);
	 * connect-redis would round it up to whole seconds, so a cookie of 5 ms would live a
	 * second. With `condition: 'NX'`, only if Redis has no such key; resolves whether it wrote.
	 */
	async #writeRedis(sid: string, text: string, ttl: number, condition?: 'NX'): Promise<boolean> {
		const expiration = this.#config.disableTTL ? {} : { expiration: { type: 'PX', value: ttl } as const };
		return (await this.#client!.set(this.#config.prefix + sid, text, { ...expiration, condition })) !== null;
	}

	/** Extends the expiry of `session` in Redis to its time to live in milliseconds (`PEXPIRE`). */
	async #renewRedis(sid: string, session: SessionData): Promise<true> {
		await this.#client!.pExpire(this.#config.prefix + sid, ttlMs(this.#config, session));
		return true;
	}

	async #set(sid: string, session: SessionData): Promise<void> {
		this.#assertOpen('set');
		// A request still in flight when its session was destroyed (a logout on another
		// tab) must not bring it back.
		if (this.#journal.isDestroyed(sid)) return;
		const ttl = ttlMs(this.#config, session);
		// Already expired: destroyed, as connect-redis does.
		if (!this.#config.disableTTL && ttl <= 0) return this.#destroy(sid);
		// Written here rather than through connect-redis's set, which would serialize the
		// session a second time: the same text goes to Redis and to the warm copy. A
		// session the serializer cannot encode rejects, in every mode (memorystore would
		// keep the previous version and report nothing).
		const text = this.#serializer.stringify(session);
		this.#memory.keepWarm(sid, text, ttl);
		if (!this.#client) return;
		const result = await this.#attempt('set', 'SET', () => this.#writeRedis(sid, text, ttl));
		if (result.served) this.#journal.settled(sid);
		else this.#journal.written(sid);
		// Destroyed while this write waited on a stalled Redis: the destroy wins.
		if (this.#journal.isDestroyed(sid)) this.#memory.destroy(sid);
	}

	async #touch(sid: string, session: SessionData): Promise<void> {
		this.#assertOpen('touch');
		// The read renewed it already, in its own round trip.
		const until = renewedUntil.get(session);
		if (until !== undefined && Math.abs(Date.now() + ttlMs(this.#config, session) - until) < RENEWAL_TOLERANCE_MS) {
			return;
		}

		this.#memory.touch(sid, session);
		if (this.#config.disableTouch || this.#config.disableTTL) return;
		const result = await this.#attempt('touch', 'PEXPIRE', () => this.#renewRedis(sid, session));
		if (!result.served && this.#redis) this.#journal.touched(sid);
	}

	async #destroy(sid: string): Promise<void> {
		this.#assertOpen('destroy');
		this.#memory.destroy(sid);
		const result = await this.#attempt('destroy', 'DEL', () => this.#redis!.destroy(sid));
		if (result.served) this.#journal.settled(sid);
		else if (this.#redis) this.#journal.destroyed(sid);
	}

	/**
	 * Clears memory and Redis. During an outage, Redis is cleared when it returns. When
	 * Redis fails during the clear itself, the promise rejects: the caller may try again.
	 */
	async #clear(): Promise<void> {
		this.#assertOpen('clear');
		this.#memory.clear();
		if (!this.#redis) return;
		if (this.#failover!.backend === 'memory') {
			this.#journal.clearedAll();
			return;
		}

		await this.#failover!.runWhenReady('SCAN+DEL', () => this.#clearRedis(), this.#config.timeoutMs * BULK_DEADLINES);
	}

	/**
	 * Bulk reads (`all`, `ids`, `length`) scan every key, which can take long: they get a
	 * longer deadline, and missing it trips nothing (a big keyspace is not an outage).
	 * They answer from memory when Redis is away or fails.
	 */
	async #bulk<T>(method: string, redis: () => Promise<T>, memory: () => Promise<T>): Promise<T> {
		this.#assertOpen(method);
		if (!this.#redis || this.#failover!.backend === 'memory') return memory();
		try {
			return await this.#failover!.runWhenReady('SCAN', redis, this.#config.timeoutMs * BULK_DEADLINES);
		} catch (error) {
			if (!isRedisFailure(error)) throw error;
			return memory();
		}
	}

	/**
	 * Every session in Redis. connect-redis 9 reads them with one `MGET`; a redis v5
	 * cluster sends that to a single node, which refuses keys of other slots (v6 splits
	 * it by itself). On a cluster, each session is read on its own.
	 */
	async #allRedis(): Promise<SessionWithId[]> {
		const redis = this.#redis!;
		if (!isCluster(this.#client!)) return redis.all();
		const ids: string[] = await redis.ids();
		const sessions = await Promise.all(
			ids.map(async (id) => {
				const session = (await redis.get(id)) as SessionData | null;
				return session && { ...session, id };
			}),
		);
		return sessions.filter((session): session is SessionWithId => session !== null);
	}

	/** Destroys every session in Redis; one key at a time on a cluster, for the same reason as {@link allRedis}. */
	async #clearRedis(): Promise<void> {
		const redis = this.#redis!;
		if (!isCluster(this.#client!)) return redis.clear();
		const ids: string[] = await redis.ids();
		await Promise.all(ids.map((id) => redis.destroy(id)));
	}

	/** Runs `command` on Redis through the failover; `served: false` means "use memory". */
	#attempt<T>(method: string, operation: string, command: () => Promise<T>, timeoutMs?: number): Promise<Attempt<T>> {
		this.#assertOpen(method);
		if (!this.#failover) return Promise.resolve({ served: false });
		return this.#failover.attempt(operation, command, timeoutMs);
	}

	#assertOpen(method: string): void {
		if (this.#closed) throw new StoreClosedError(method);
	}

	/** A stalled connection keeps TCP open and answers nothing: drop it and connect anew. */
	#resetConnection(): void {
		const client = this.#client!;
		if (this.#closed || !client.isOpen) return;
		client.destroy();
		connectInBackground(client);
	}

	get #epochKey(): string {
		return `resilient-session:epoch:${this.#config.prefix}`;
	}

	/** Learns the marker once Redis first answers, so that a later loss of data is noticed. */
	#learnEpoch(): void {
		void this.#failover!.whenReady().then(() => {
			if (this.#epoch === undefined && !this.#closed) return this.#redisLostData();
		}).catch(() => {});
	}

	/**
	 * Whether Redis lost its data since this store last saw it (restarted without
	 * persistence, or flushed): the marker key this store keeps there is gone or replaced.
	 */
	async #redisLostData(): Promise<boolean> {
		const failover = this.#failover!;
		const client = this.#client!;
		const fresh = randomUUID();
		try {
			const created = await failover.run('SET NX', () =>
				client.set(this.#epochKey, fresh, { condition: 'NX' }),
			);
			const current = created ? fresh : ((await failover.run('GET', () => client.get(this.#epochKey))) as string);
			const lost = this.#epoch !== undefined && current !== this.#epoch;
			this.#epoch = current;
			return lost;
		} catch (error) {
			if (isRedisFailure(error)) throw error;
			// Refused (an ACL that allows only the session prefix, say): the store works on,
			// without noticing that Redis lost its data.
			this.#log.warn(
				'epoch-refused',
				`resilient-session: Redis refused the marker key ${this.#epochKey} (${(error as Error).message}): ` +
					'a Redis that restarts empty is not noticed, so sessions are not restored from memory',
			);
			return false;
		}
	}

	/**
	 * Brings Redis up to date after an outage, in the order that keeps logouts done:
	 * restore what Redis lost, destroy, write, touch. Rejects when Redis fails meanwhile;
	 * the failover then stays on memory and tries again later. Every step is idempotent,
	 * since a write that failed on a dropped socket may have reached Redis anyway.
	 */
	async #writeBack(): Promise<void> {
		const failover = this.#failover!;
		const redis = this.#redis!;
		const journal = this.#journal;
		const counts = { destroyed: 0, written: 0, touched: 0, restored: 0, lost: 0, failed: 0 };

		if (await this.#redisLostData()) counts.restored = await this.#restore(counts);

		if (journal.cleared) {
			try {
				await failover.run('SCAN+DEL', () => this.#clearRedis(), this.#config.timeoutMs * BULK_DEADLINES);
			} catch (error) {
				// A refusal must not hold the store on memory for good: logged, and done with.
				if (isRedisFailure(error)) throw error;
				counts.failed++;
				this.#log.error('writeback-failed', `resilient-session: Redis refused a write-back: ${(error as Error).message}`);
			}

			journal.settleClear();
		}

		await this.#inBatches(journal.tombstoneEntries(), async ([sid, seq]) => {
			if (await this.#writeOne(counts, 'DEL', () => redis.destroy(sid).then(() => true))) counts.destroyed++;
			journal.settleTombstone(sid, seq);
		});

		await this.#inBatches(journal.pendingEntries(), async ([sid, { kind, seq }]) => {
			const session = await this.#memory.get(sid).catch(() => null);
			// A request wrote a newer version meanwhile (to Redis, or again to memory):
			// checked with no await before the command goes out, so an older one never
			// overwrites it.
			if (!journal.isCurrent(sid, seq)) return;
			if (!session) counts.lost++;
			else if (kind === 'write') {
				const text = this.#serializer.stringify(session);
				const ttl = Math.max(ttlMs(this.#config, session), 1);
				if (await this.#writeOne(counts, 'SET', () => this.#writeRedis(sid, text, ttl))) counts.written++;
			} else {
				if (await this.#writeOne(counts, 'PEXPIRE', () => this.#renewRedis(sid, session))) counts.touched++;
			}

			journal.settlePending(sid, seq);
		});

		if (Object.values(counts).some((count) => count > 0)) this.emit('writeback', counts);
	}

	/** Writes every session held in memory that Redis does not have (`SET NX`). */
	async #restore(counts: { failed: number }): Promise<number> {
		const { serializer, disableTTL } = this.#config;
		let restored = 0;
		const sessions = await this.#memory.all();
		await this.#inBatches(sessions, async (session) => {
			const { id, ...data } = session;
			if (this.#journal.isDestroyed(id)) return;
			// A warm copy holds the session as last written, with the cookie of then: it
			// lives on as long as a touch would have kept it.
			const ttl = renewedTtlMs(this.#config, data);
			if (!disableTTL && ttl <= 0) return;
			// Hand-written because connect-redis has no "set if absent".
			const written = await this.#writeOne(counts, 'SET NX', () =>
				this.#writeRedis(id, serializer.stringify(data), ttl, 'NX'),
			);
			if (written) restored++;
		});
		return restored;
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
			return Boolean(await this.#failover!.run(operation, command));
		} catch (error) {
			if (isRedisFailure(error)) throw error;
			counts.failed++;
			this.#log.error('writeback-failed', `resilient-session: Redis refused a write-back: ${(error as Error).message}`);
			return false;
		}
	}
}
