import { RedisStore } from 'connect-redis';
import { Store, type SessionData } from 'express-session';
import { type Callback, settle } from '../callback.js';
import { withDeadline } from '../redis/deadline.js';
import { StoreClosedError } from '../errors.js';
import { type Attempt, type Backend, Failover } from '../redis/failover.js';
import { OnceLogger } from '../logger.js';
import { describe } from '../options/checks.js';
import { EpochWatch } from './epoch.js';
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
import { RedisSessions, type SessionRead, TOMBSTONE } from './redis-sessions.js';
import { markLoaded } from './request-session.js';
import { type DestroySessionsOfOptions, UserIndex, type UserSession } from './user-index.js';
import {
	connectInBackground,
	createOwnedClient,
	isRedisFailure,
	markCallerError,
	type RedisClient,
} from '../redis/client.js';
import { createTracking } from '../redis/tracking.js';

/** Bulk operations (`all`, `ids`, `length`, `clear`) scan every key: they get this many deadlines. */
const BULK_DEADLINES = 20;

/** Write-back sends this many commands at a time (node-redis pipelines them). */
const WRITE_BACK_BATCH = 100;

/**
 * When a session read from Redis was given its renewed expiry (epoch ms), carried from
 * the read to express-session's touch: keyed by the object `get` returned, then by the
 * request's session made from it. Kept beside the session rather than on it, so that
 * nothing of the store's own shows on a session (spreads, clones, deep equality).
 */
const renewedUntil = new WeakMap<object, number>();

/** A touch within this much of the renewal made by the read is not sent again. */
const RENEWAL_TOLERANCE_MS = 2_000;

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
	readonly #sessions: RedisSessions | undefined;
	readonly #failover: Failover | undefined;
	/** Each user's sessions (the `userId` option). */
	readonly #users: UserIndex;
	/** The caller's serializer, its errors marked as the caller's. */
	readonly #serializer: Serializer;
	/**
	 * Whether Redis tells this store when another instance changes a session it holds a
	 * copy of (`CLIENT TRACKING`, on clients the store creates): its warm copies are then
	 * current up to the moment the link was lost, and can be restored to a Redis that
	 * came back empty.
	 */
	readonly #tracked: boolean;
	/** Reads in flight, by session id: an invalidation during one makes its copy stale. */
	readonly #reads = new Map<string, Set<{ stale: boolean }>>();
	/** Notices a Redis that lost its data (`undefined` on a memory-only store). */
	readonly #epoch: EpochWatch | undefined;
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
		this.#ownsClient = config.client === undefined && config.url !== undefined;
		const tracking = this.#ownsClient ? createTracking({ invalidated: (key) => this.#invalidated(key) }) : undefined;
		this.#tracked = tracking !== undefined;
		this.#client = this.#ownsClient
			? createOwnedClient({
					url: config.url!,
					connectTimeoutMs: Math.max(config.timeoutMs * 4, 1_000),
					reconnectMaxDelayMs: config.reconnectMaxDelayMs,
					// The failover records and reports the error; this only keeps it from crashing.
					onError: () => {},
					tracking,
				})
			: config.client;

		if (!this.#client) {
			if (process.env.NODE_ENV === 'production') {
				config.logger.warn(
					'resilient-session: no Redis configured (no `client`, `url` or REDIS_URL): sessions are kept ' +
						'in this process only and are not shared between instances',
				);
			}

			this.#users = this.#userIndex();
			return;
		}

		const client = this.#client;
		const connectRedis = new RedisStore({
			client,
			prefix: config.prefix,
			ttl: config.ttl,
			disableTTL: config.disableTTL,
			disableTouch: config.disableTouch,
			serializer: this.#serializer,
			scanCount: config.scanCount,
		});
		this.#sessions = new RedisSessions(client, connectRedis, config);
		this.#failover = new Failover({
			client,
			timeoutMs: config.timeoutMs,
			probeIntervalMs: config.probeIntervalMs,
			recoverAfterProbes: config.recoverAfterProbes,
			minFallbackMs: config.minFallbackMs,
			log: this.#log,
			resetConnection: this.#ownsClient ? () => this.#resetConnection() : undefined,
		});
		this.#failover.on('fallback', (error) => {
			this.#journal.forgetWarnings();
			this.emit('fallback', error);
		});
		this.#failover.on('recover', () => {
			// Copies kept through the outage may have missed invalidations while the link was
			// down: Redis is the truth again. What still waits to be written back stays.
			this.#memory.forgetAll((sid) => this.#journal.isPending(sid));
			this.emit('recover');
		});
		this.#failover.addRecoveryStep({
			flush: () => this.#writeBack(),
			pending: () => !this.#journal.isEmpty || this.#users.pending,
		});
		this.#users = this.#userIndex();
		this.#epoch = new EpochWatch(client, this.#failover, config.prefix, this.#log);
		this.#epoch.learn(() => this.#closed);
	}

	#userIndex(): UserIndex {
		return new UserIndex({
			config: this.#config,
			log: this.#log,
			memory: this.#memory,
			client: this.#client,
			failover: this.#failover,
			sessions: this.#sessions,
			destroy: (sid) => this.destroy(sid),
			isDestroyed: (sid) => this.#isDestroyed(sid),
		});
	}

	/** Where operations go right now: `'redis'` or `'memory'`. */
	get backend(): Backend {
		return this.#failover?.backend ?? 'memory';
	}

	/**
	 * The failover decision this store's Redis is guarded by, shared with the rate limit
	 * and login guard built on this store. `undefined` on a memory-only store.
	 * @internal
	 */
	get failover(): Failover | undefined {
		return this.#failover;
	}

	/** The Redis client (`undefined` on a memory-only store). @internal */
	get client(): RedisClient | undefined {
		return this.#client;
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
			memorySessions: this.#memory.ids().length,
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

	/**
	 * Destroys a session, for good: a `set` or `touch` of its id that arrives later (a
	 * request that loaded it before, on any instance) is ignored for `tombstoneTtlMs`.
	 * Destroyed during an outage, it stays destroyed after it.
	 */
	destroy(sid: string, callback?: Callback<void>): Promise<void> {
		return settle(this.#destroy(sid), callback);
	}

	/**
	 * The live sessions of a user (as the `userId` option tells), from every instance,
	 * the latest to expire first. During an outage: those this instance holds.
	 */
	sessionsOf(userId: string, callback?: Callback<UserSession[]>): Promise<UserSession[] | undefined> {
		return settle(Promise.resolve().then(() => (this.#assertOpen('sessionsOf'), this.#users.list(userId))), callback);
	}

	/**
	 * Destroys every session of a user but `except` (the current one, say), on every
	 * instance, each as a logout is; resolves with how many. During an outage, those this
	 * instance holds at once, and the others when Redis returns, before anything else.
	 */
	destroySessionsOf(
		userId: string,
		options?: DestroySessionsOfOptions | Callback<number>,
		callback?: Callback<number>,
	): Promise<number | undefined> {
		const [given, done] = typeof options === 'function' ? [undefined, options] : [options, callback];
		return settle(Promise.resolve().then(() => (this.#assertOpen('destroySessionsOf'), this.#users.end(userId, given))), done);
	}

	/** Every session, each with its `id`. During an outage: those held by this instance. */
	override all(callback?: Callback<SessionWithId[]>): Promise<SessionWithId[] | undefined> {
		return settle(this.#bulk('all', () => this.#allRedis(), () => this.#memory.all()), callback) as Promise<
			SessionWithId[] | undefined
		>;
	}

	/** Every session id. During an outage: those held by this instance. */
	ids(callback?: Callback<string[]>): Promise<string[] | undefined> {
		const ids = async () => (await this.#sessions!.entries()).map(([id]) => id);
		return settle(this.#bulk('ids', ids, async () => this.#memory.ids()), callback);
	}

	/** How many sessions there are. During an outage: those held by this instance. */
	override length(callback?: Callback<number>): Promise<number | undefined> {
		const length = async () => (await this.#sessions!.entries()).length;
		return settle(this.#bulk('length', length, async () => this.#memory.ids().length), callback);
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
		this.#assertOpen('get');
		// Right after a recovery, what the outage changed may not be in Redis yet.
		if (this.#journal.isDestroyed(sid) || this.#memory.isDestroyed(sid)) return null;
		if (this.#journal.hasPendingWrite(sid) || !this.#sessions) return this.#memory.get(sid);
		const watch = { stale: false };
		const reads = this.#reads.get(sid) ?? new Set();
		this.#reads.set(sid, reads.add(watch));
		let read: Attempt<SessionRead | null>;
		try {
			read = await this.#attempt('get', this.#sessions.renewOnRead ? 'GET+EXPIRE' : 'GET', () =>
				this.#sessions!.read(sid),
			);
		} finally {
			reads.delete(watch);
			if (reads.size === 0) this.#reads.delete(sid);
		}

		if (!read.served) return this.#memory.get(sid);
		// Never let the memory side serve a session Redis no longer has.
		if (!read.value) {
			this.#memory.forget(sid);
			return null;
		}

		const { text, renewed } = read.value;
		if (text === TOMBSTONE) {
			this.#memory.bury(sid);
			return null;
		}

		// Parsed outside the failover: a session the serializer rejects is not a Redis failure.
		const session = await this.#parse(sid, text);
		if (!session) {
			this.#memory.forget(sid);
			return null;
		}

		const ttl = read.value.ttl ?? renewedTtlMs(this.#config, session);
		// Keep the memory side warm, for as long as Redis keeps the session, unless another
		// instance changed it while the reply was on its way.
		if (watch.stale) this.#memory.forget(sid);
		else this.#memory.keepWarm(sid, text, ttl);
		if (renewed) {
			renewedUntil.set(session, Date.now() + ttl);
			this.#users.extended(sid, session, ttl);
		}

		return session;
	}

	/**
	 * Redis says another connection changed, destroyed or expired `key` (`null`: every
	 * key): the copy held here is no longer current. A session still waiting to be written
	 * back is kept: it is the newest this instance knows of.
	 */
	#invalidated(key: string | null): void {
		if (key === null) {
			for (const reads of this.#reads.values()) for (const read of reads) read.stale = true;
			this.#memory.forgetAll((sid) => this.#journal.isPending(sid));
			return;
		}

		if (!key.startsWith(this.#config.prefix)) return;
		const sid = key.slice(this.#config.prefix.length);
		for (const read of this.#reads.get(sid) ?? []) read.stale = true;
		if (!this.#journal.isPending(sid)) this.#memory.forget(sid);
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

	/** Whether `sid` was destroyed within `tombstoneTtlMs`, as far as this instance knows. */
	#isDestroyed(sid: string): boolean {
		return this.#journal.isDestroyed(sid) || this.#memory.isDestroyed(sid);
	}

	async #set(sid: string, session: SessionData): Promise<void> {
		this.#assertOpen('set');
		// A request still in flight when its session was destroyed (a logout on another
		// tab) must not bring it back.
		if (this.#isDestroyed(sid)) return;
		const ttl = ttlMs(this.#config, session);
		// Already expired: destroyed, as connect-redis does.
		if (!this.#config.disableTTL && ttl <= 0) return this.#destroy(sid);
		// The same text goes to Redis and to the warm copy. A session the serializer cannot
		// encode rejects, in every mode (memorystore would keep the previous version and
		// report nothing).
		const text = this.#serializer.stringify(session);
		const previous = this.#users.enabled ? this.#memory.peek(sid) : undefined;
		this.#memory.keepWarm(sid, text, ttl);
		if (!this.#sessions) return;
		const result = await this.#attempt('set', 'SET', () =>
			this.#users.withWrite(this.#sessions!.write(sid, text, ttl), sid, session, ttl, previous),
		);
		if (!result.served) return this.#journal.written(sid);
		this.#journal.settled(sid);
		// Destroyed in Redis, by this instance or another: the destroy wins.
		if (result.value === 'refused') this.#memory.bury(sid);
	}

	async #touch(sid: string, session: SessionData): Promise<void> {
		this.#assertOpen('touch');
		// The read renewed it already, in its own round trip.
		const until = renewedUntil.get(session);
		if (until !== undefined && Math.abs(Date.now() + ttlMs(this.#config, session) - until) < RENEWAL_TOLERANCE_MS) {
			return;
		}

		if (this.#isDestroyed(sid)) return;
		this.#memory.touch(sid, session);
		if (this.#config.disableTouch || this.#config.disableTTL || !this.#sessions) return;
		const ttl = ttlMs(this.#config, session);
		const result = await this.#attempt('touch', 'PEXPIRE', () => this.#sessions!.renew(sid, ttl));
		if (!result.served) this.#journal.touched(sid);
		else if (result.value === 'refused') this.#memory.bury(sid);
		else if (result.value === 'written') this.#users.extended(sid, session, ttl);
	}

	async #destroy(sid: string): Promise<void> {
		this.#assertOpen('destroy');
		const previous = this.#users.enabled ? this.#memory.peek(sid) : undefined;
		this.#memory.bury(sid);
		if (!this.#sessions) return;
		const result = await this.#attempt('destroy', 'SET', () =>
			this.#users.withDestroy(this.#sessions!.bury(sid), sid, previous),
		);
		if (result.served) this.#journal.settled(sid);
		else this.#journal.destroyed(sid);
	}

	/**
	 * Clears memory and Redis. During an outage, Redis is cleared when it returns. When
	 * Redis fails during the clear itself, the promise rejects: the caller may try again.
	 */
	async #clear(): Promise<void> {
		this.#assertOpen('clear');
		this.#memory.forgetAll();
		if (!this.#sessions) return;
		if (this.#failover!.backend === 'memory') {
			this.#journal.clearedAll();
			return;
		}

		await this.#failover!.runWhenReady('SCAN+DEL', () => this.#sessions!.clear(), this.#config.timeoutMs * BULK_DEADLINES);
	}

	/** Every session with its id; what Redis holds that is not a session is left out. */
	async #allRedis(): Promise<SessionWithId[]> {
		const entries = await this.#sessions!.entries();
		const sessions = await Promise.all(
			entries.map(async ([id, text]) => {
				const session = await this.#parse(id, text);
				return session && ({ ...session, id } as SessionWithId);
			}),
		);
		return sessions.filter((session): session is SessionWithId => session !== null);
	}

	/**
	 * Bulk reads (`all`, `ids`, `length`) scan every key, which can take long: they get a
	 * longer deadline, and missing it trips nothing (a big keyspace is not an outage).
	 * They answer from memory when Redis is away or fails.
	 */
	async #bulk<T>(method: string, redis: () => Promise<T>, memory: () => Promise<T>): Promise<T> {
		this.#assertOpen(method);
		if (!this.#sessions || this.#failover!.backend === 'memory') return memory();
		try {
			return await this.#failover!.runWhenReady('SCAN', redis, this.#config.timeoutMs * BULK_DEADLINES);
		} catch (error) {
			if (!isRedisFailure(error)) throw error;
			return memory();
		}
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

	/**
	 * Brings Redis up to date after an outage, in the order that keeps logouts done:
	 * end the users ended during the outage, restore what Redis lost, destroy, write,
	 * touch, then check what was written back against the ends of users. Rejects when
	 * Redis fails meanwhile; the failover then stays on memory and tries again later.
	 * Every step is idempotent, since a write that failed on a dropped socket may have
	 * reached Redis anyway.
	 */
	async #writeBack(): Promise<void> {
		const failover = this.#failover!;
		const sessions = this.#sessions!;
		const journal = this.#journal;
		const counts = { destroyed: 0, written: 0, touched: 0, restored: 0, lost: 0, failed: 0 };
		// Users whose sessions were all ended during the outage: first of all.
		counts.destroyed += await this.#users.replayEnds();

		if (await this.#epoch!.lostData()) counts.restored = await this.#restore(counts);

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
				const text = this.#serializer.stringify(session);
				const ttl = Math.max(ttlMs(this.#config, session), 1);
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
		if (Object.values(counts).some((count) => count > 0)) this.emit('writeback', counts);
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
		const heldSince = this.#failover!.since.getTime();
		let restored = 0;
		const held = await this.#memory.all();
		const sessions = held.filter(({ id }) => !journal.hasPendingWrite(id) && (this.#tracked || journal.isPending(id)));
		await this.#inBatches(sessions, async (session) => {
			const { id, ...data } = session;
			if (journal.isDestroyed(id)) return;
			// A copy holds the session as last written, with the cookie of then: it lives on
			// as long as a touch would have kept it.
			const ttl = renewedTtlMs(this.#config, data);
			if (!disableTTL && ttl <= 0) return;
			const text = serializer.stringify(data);
			const written = await this.#writeOne(
				counts,
				'SET NX',
				async () =>
					(await this.#users.withWrite(this.#sessions!.write(id, text, ttl, 'NX'), id, data, ttl, undefined, heldSince)) ===
					'written',
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
