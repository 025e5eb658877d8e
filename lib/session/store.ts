import { RedisStore } from 'connect-redis';
import { Store, type SessionData } from 'express-session';
import { type Callback, inCheckPhase, settle, settleInCheckPhase } from '../callback.js';
import { isPromiseLike } from '../maybe-async.js';
import { StoreClosedError } from '../errors.js';
import { type Attempt, type Backend, Failover } from '../redis/failover.js';
import type { SessionWithId, StoreStats } from './store-types.js';
import { OnceLogger } from '../logger.js';
import { MemorySide } from './memory-side.js';
import {
	guardSerializer,
	renewedTtlMs,
	resolveStoreOptions,
	type ResilientStoreOptions,
	type Serializer,
	type StoreConfig,
	ttlMs,
} from './options.js';
import { OutageJournal } from './outage-journal.js';
import { BulkOperations } from './bulk.js';
import { NearCache } from './near-cache.js';
import { RedisSessions, TOMBSTONE } from './redis-sessions.js';
import { WriteBack, type WriteBackResult } from './write-back.js';
import { corkedWhile, markLoaded, regenerateNeverStored } from './request-session.js';
import { capTtl, KnownEnds, withEndsAt } from './lifetime.js';
import { parseSessionText } from './session-text.js';
import { type DestroySessionsOfOptions, UserIndex, type UserSession } from './user-index.js';
import { closeOwnedClient, createOwnedClient, type RedisClient, resetConnection } from '../redis/client.js';
import { linkStore } from '../redis/link.js';
import { createTracking } from '../redis/tracking.js';

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
	/** With an absolute lifetime, the ends of sessions seen lately. */
	readonly #ends: KnownEnds | undefined;
	readonly #journal: OutageJournal;
	readonly #client: RedisClient | undefined;
	readonly #ownsClient: boolean;
	readonly #sessions: RedisSessions | undefined;
	readonly #failover: Failover | undefined;
	/** The caller's serializer, its errors marked as the caller's. */
	readonly #serializer: Serializer;
	/**
	 * Whether Redis tells this store when another instance changes a session it holds a
	 * copy of (`CLIENT TRACKING`, on clients the store creates): its warm copies are then
	 * current up to the moment the link was lost, and can be restored to a Redis that
	 * came back empty.
	 */
	readonly #tracked: boolean;
	readonly #nearCache: NearCache;
	readonly #bulk: BulkOperations;
	/** Each user's sessions (the `userId` option). */
	readonly #users: UserIndex;
	#closed = false;

	constructor(options: ResilientStoreOptions = {}) {
		super();
		const config = resolveStoreOptions(options);
		this.#config = config;
		this.#log = new OnceLogger(config.logger);
		this.#memory = new MemorySide(config);
		this.#ends = config.absoluteLifetimeMs === undefined ? undefined : new KnownEnds(config.memory.max);
		this.#journal = new OutageJournal(
			{ maxTombstones: config.maxTombstones, maxPending: config.memory.max },
			this.#log,
		);

		this.#serializer = guardSerializer(config.serializer);
		this.#ownsClient = config.client === undefined && config.url !== undefined;
		const nearCache = new NearCache(this.#memory, this.#journal, config, this.#log);
		this.#nearCache = nearCache;
		const tracking = this.#ownsClient ? createTracking(nearCache) : undefined;
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
			linkStore(this, undefined);
			if (process.env.NODE_ENV === 'production') {
				config.logger.warn(
					'resilient-session: no Redis configured (no `client`, `url` or REDIS_URL): sessions are kept ' +
						'in this process only and are not shared between instances',
				);
			}

			this.#users = this.#userIndex();
			this.#bulk = new BulkOperations(config, this.#log, this.#memory, this.#journal);
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
			// A stalled connection keeps TCP open and answers nothing: dropped, and made anew.
			resetConnection: this.#ownsClient ? () => void (this.#closed || resetConnection(client)) : undefined,
		});
		nearCache.attach(this.#failover, this.#tracked);
		linkStore(this, { failover: this.#failover, client });
		this.#failover.on('fallback', (error) => {
			this.#journal.forgetWarnings();
			this.emit('fallback', error);
		});
		this.#failover.on('recover', () => this.emit('recover'));
		this.#users = this.#userIndex();
		this.#bulk = new BulkOperations(config, this.#log, this.#memory, this.#journal, {
			sessions: this.#sessions,
			failover: this.#failover,
		});
		const writeBack = new WriteBack({
			config,
			client,
			failover: this.#failover,
			sessions: this.#sessions,
			memory: this.#memory,
			journal: this.#journal,
			log: this.#log,
			serializer: this.#serializer,
			tracked: this.#tracked,
			users: this.#users,
			emit: (result) => this.emit('writeback', result),
		});
		this.#failover.addRecoveryStep({
			flush: () => writeBack.run(),
			pending: () => !this.#journal.isEmpty || this.#users.pending,
		});
		writeBack.learnEpoch(() => this.#closed);
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
	 * Called by express-session when a request's session was found in the store; marks
	 * the session so that the rate limit can tell a stored session from a new one.
	 */
	override createSession(...args: Parameters<Store['createSession']>): ReturnType<Store['createSession']> {
		const session = super.createSession(...args);
		if (args[0].sessionID) markLoaded(session);
		return session;
	}

	/**
	 * Called by `req.session.regenerate()`: destroys the request's session and gives the
	 * request a new one, with no round trip for an id no store has ever held
	 * (`regenerateNeverStored`).
	 */
	override regenerate(...args: Parameters<Store['regenerate']>): ReturnType<Store['regenerate']> {
		const [req, callback] = args;
		const held = (sid: string) => this.#memory.peek(sid) !== undefined || this.#journal.isPending(sid);
		if (this.#closed || !regenerateNeverStored(this, req, callback, held)) super.regenerate(...args);
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

	/**
	 * Reads a session: `null` if there is none. The callback is called in the check phase,
	 * as express-session's own MemoryStore calls it (see `settleInCheckPhase`).
	 */
	get(sid: string, callback?: Callback<SessionData | null>): Promise<SessionData | null | undefined> {
		let session;
		try {
			session = this.#closed ? undefined : this.#nearCache.session(sid);
		} catch (error) {
			return settleInCheckPhase(Promise.reject(error), callback);
		}

		if (session === undefined) return settleInCheckPhase(this.#get(sid), callback);
		// Served by the near cache: no promise is needed on the way, but the one returned.
		if (isPromiseLike(session)) return settleInCheckPhase(Promise.resolve(session), callback);
		if (callback) inCheckPhase(() => callback(null, session));
		return Promise.resolve(session);
	}

	/**
	 * Creates or replaces a session. Saving the session of a request, express-session
	 * writes the start of the response at once and its last byte when the save calls back;
	 * the request's connection is held corked meanwhile (one `cork()`, undone once the
	 * callback has run), so that the whole response leaves in one write when the save is
	 * done rather than in two: the client can do nothing with the start alone.
	 */
	set(sid: string, session: SessionData, callback?: Callback<void>): Promise<void> {
		return corkedWhile(session, () => settle(this.#set(sid, session), callback));
	}

	/**
	 * Extends a session's time to live. A touch with nothing to send (lazy renewal: not due
	 * yet; or Redis is away) calls back in a `process.nextTick`: before Node flushes the
	 * start of the response that express-session writes right after calling touch, so that
	 * the whole response leaves in one write rather than two (bench/README.md,
	 * "Throughput").
	 */
	override touch(sid: string, session: SessionData, callback?: Callback<void>): Promise<void> {
		let renewal: Promise<void> | undefined;
		try {
			renewal = this.#touch(sid, session);
		} catch (error) {
			return settle(Promise.reject(error), callback);
		}

		if (renewal) return settle(renewal, callback);
		if (callback) process.nextTick(callback, null);
		return Promise.resolve();
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
		return settle(this.#whenOpen('all', () => this.#bulk.all()), callback);
	}

	/** Every session id. During an outage: those held by this instance. */
	ids(callback?: Callback<string[]>): Promise<string[] | undefined> {
		return settle(this.#whenOpen('ids', () => this.#bulk.ids()), callback);
	}

	/** How many sessions there are. During an outage: those held by this instance. */
	override length(callback?: Callback<number>): Promise<number | undefined> {
		return settle(this.#whenOpen('length', () => this.#bulk.length()), callback);
	}

	/** Destroys every session. During an outage, Redis is cleared when it returns. */
	override clear(callback?: Callback<void>): Promise<void> {
		return settle(this.#whenOpen('clear', () => this.#bulk.clear()), callback);
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
		if (this.#ownsClient && this.#client) await closeOwnedClient(this.#client, this.#config.timeoutMs);
	}

	/** A read that no current copy serves (see {@link get}). */
	async #get(sid: string): Promise<SessionData | null> {
		this.#assertOpen('get');
		// Right after a recovery, what the outage changed may not be in Redis yet.
		if (this.#isDestroyed(sid)) return null;
		if (this.#journal.hasPendingWrite(sid) || !this.#sessions) return this.#memory.get(sid);
		const sessions = this.#sessions;
		const operation = sessions.renewOnRead ? 'GET+EXPIRE' : 'GET';
		const { value: read, stale } = await this.#nearCache.read(sid, () =>
			this.#attempt('get', operation, () => sessions.read(sid)),
		);

		if (!read.served) return this.#memory.get(sid);
		// Never let the memory side serve a session Redis no longer has.
		if (!read.value) {
			this.#memory.forget(sid);
			return null;
		}

		const { text, ttl: fullTtl, left } = read.value;
		if (text === TOMBSTONE) {
			this.#memory.bury(sid);
			return null;
		}

		// Parsed outside the failover: a session the serializer rejects is not a Redis failure.
		const session = await parseSessionText(this.#config, this.#log, sid, text);
		if (!session) {
			this.#memory.forget(sid);
			return null;
		}

		// A session's end never changes: known even if the copy is not kept.
		this.#ends?.learn(sid, text);
		// Keep a copy, for as long as Redis keeps the session, unless another instance
		// changed it while the reply was on its way.
		if (stale) {
			this.#memory.forget(sid);
		} else {
			const ttl = left ?? capTtl(renewedTtlMs(this.#config, session), this.#endsAt(sid, text));
			const expiresAt = left === undefined ? 0 : Date.now() + left;
			const renewedByReadAt = left !== undefined && left === fullTtl ? Date.now() : undefined;
			this.#memory.keepWarm(sid, text, ttl, { expiresAt, generation: this.#nearCache.generation, renewedByReadAt });
		}

		// The read renewed the expiry itself (lazy renewal leaves it alone when not due).
		if (left !== undefined && left === fullTtl) this.#users.extended(sid, session, left);

		return session;
	}

	/** When session `sid` ends, with an absolute lifetime (see lifetime.ts): `text` is its copy's. */
	#endsAt(sid: string, text: string | undefined): number | undefined {
		return this.#ends?.of(sid, text);
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
		// The same text goes to Redis and to the copy kept here. A session the serializer
		// cannot encode rejects, in every mode (memorystore would keep the previous version
		// and report nothing).
		let text = this.#serializer.stringify(session);
		let ttl = ttlMs(this.#config, session);
		if (this.#config.absoluteLifetimeMs !== undefined) {
			// A session stored before keeps its end; a new one starts its lifetime now.
			const endsAt = this.#endsAt(sid, this.#memory.peek(sid)) ?? Date.now() + this.#config.absoluteLifetimeMs;
			text = withEndsAt(text, endsAt);
			this.#ends!.learn(sid, text);
			ttl = capTtl(ttl, endsAt);
		}

		// Already expired, or at the end of its lifetime: destroyed, as connect-redis does.
		if (!this.#config.disableTTL && ttl <= 0) return this.#destroy(sid);
		const previous = this.#users.enabled ? this.#memory.peek(sid) : undefined;
		this.#memory.keepWarm(sid, text, ttl);
		if (!this.#sessions) return;
		const generation = this.#nearCache.generation;
		// Sent now, this version must not be overtaken by an older one the write-back holds.
		this.#journal.superseded(sid);
		const result = await this.#attempt('set', 'SET', () =>
			this.#users.withWrite(this.#sessions!.write(sid, text, ttl), sid, session, ttl, previous),
		);
		if (!result.served) return this.#journal.written(sid);
		this.#journal.settled(sid);
		// Destroyed in Redis, by this instance or another: the destroy wins.
		if (result.value === 'refused') this.#memory.bury(sid);
		// Redis holds what this copy holds, and tracks the key for this connection again.
		else if (this.#memory.text(sid) === text) this.#memory.describe(sid, { expiresAt: Date.now() + ttl, generation });
	}

	/**
	 * Extends a session's expiry, lazily: on Redis, only when that moves the expiry by at
	 * least `touchAfterMs` (or a tenth of its lifetime); during an outage, always, so that
	 * the session counts as used here. Returns the renewal in Redis when one is due;
	 * `undefined` when nothing is left to do.
	 */
	#touch(sid: string, session: SessionData): Promise<void> | undefined {
		this.#assertOpen('touch');
		if (this.#isDestroyed(sid)) return undefined;
		const ttl = capTtl(ttlMs(this.#config, session), this.#endsAt(sid, this.#memory.peek(sid)));
		if (ttl <= 0) return undefined;
		if (this.#sessions && this.#failover!.backend === 'redis' && !this.#memory.renewalDue(sid, ttl)) return undefined;
		this.#memory.touch(sid, session);
		if (this.#config.disableTouch || this.#config.disableTTL || !this.#sessions) return undefined;
		// On memory, nothing is sent: the write-back renews it when Redis is back.
		if (this.#failover!.backend === 'memory') return void this.#journal.touched(sid);
		return this.#renew(sid, session, ttl);
	}

	/** Extends the expiry of `sid` in Redis to `ttl` ms. */
	async #renew(sid: string, session: SessionData, ttl: number): Promise<void> {
		const generation = this.#nearCache.generation;
		const result = await this.#attempt('touch', 'PEXPIRE', () => this.#sessions!.renew(sid, ttl));
		if (!result.served) this.#journal.touched(sid);
		else if (result.value === 'refused') this.#memory.bury(sid);
		else if (result.value === 'written') {
			this.#memory.describe(sid, { expiresAt: Date.now() + ttl, generation });
			this.#users.extended(sid, session, ttl);
		}
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

	/** Runs `command` on Redis through the failover; `served: false` means "use memory". */
	#attempt<T>(method: string, operation: string, command: () => Promise<T>, timeoutMs?: number): Promise<Attempt<T>> {
		this.#assertOpen(method);
		if (!this.#failover) return Promise.resolve({ served: false });
		return this.#failover.attempt(operation, command, timeoutMs);
	}

	/** Runs `operation` if the store is open; rejects with `ERR_RESILIENT_CLOSED` if not. */
	async #whenOpen<T>(method: string, operation: () => Promise<T>): Promise<T> {
		this.#assertOpen(method);
		return operation();
	}

	#assertOpen(method: string): void {
		if (this.#closed) throw new StoreClosedError(method);
	}
}
