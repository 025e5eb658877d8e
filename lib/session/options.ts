import type { SessionData } from 'express-session';
import type { Logger } from '../logger.js';
import {
	checkBoolean,
	checkFunction,
	checkInteger,
	checkLogger,
	checkObject,
	checkString,
	invalidOption,
	rejectUnknownOptions,
} from '../options/checks.js';
import { isRedisClient, markCallerError, type RedisClient } from '../redis/client.js';
import { isLinkedStore } from '../redis/link.js';
import type { ResilientStore } from './store.js';

/** How sessions are turned into strings for Redis. `JSON` by default, as in connect-redis. */
export interface Serializer {
	parse(text: string): SessionData | Promise<SessionData>;
	stringify(session: SessionData): string;
}

/** Options of the in-process memory side. */
export interface MemoryOptions {
	/**
	 * The most sessions held in memory: warm copies of sessions in use while Redis is
	 * healthy, and every session during an outage. The least recently used are dropped
	 * first. About 560 bytes a session of 260 bytes, so the default costs under 6 MB.
	 * @default 10_000
	 */
	readonly max?: number;
	/**
	 * How often expired sessions are swept out of memory, in milliseconds (they are
	 * never served after they expire, sweep or not).
	 * @default 600_000
	 */
	readonly checkPeriodMs?: number;
}

/** Options of {@link ResilientStore}. */
export interface ResilientStoreOptions {
	/**
	 * An existing node-redis client (`createClient`, `createCluster` or `createSentinel`,
	 * redis v5 or v6). The caller owns it: connect it (there is no need to await that),
	 * and close it after `store.close()`. Give it `disableOfflineQueue: true`: otherwise
	 * commands sent while it reconnects wait in its queue (the store never waits for them
	 * longer than `timeoutMs`).
	 */
	readonly client?: RedisClient;
	/**
	 * A Redis URL (`redis://` or `rediss://`, with user and password if needed). The store
	 * creates the client, connects it in the background and closes it in `close()`.
	 * Without `client` or `url`, `process.env.REDIS_URL` is used; without that, the store
	 * keeps sessions in memory only.
	 */
	readonly url?: string;
	/**
	 * Prefix of every session key in Redis. The same as connect-redis.
	 * @default 'sess:'
	 */
	readonly prefix?: string;
	/**
	 * Time to live of a session in seconds, or a function of the session that returns it.
	 * A session whose cookie has an expiry date lives until that date instead. The same
	 * as connect-redis.
	 * @default 86_400
	 */
	readonly ttl?: number | ((session: SessionData) => number);
	/**
	 * Store sessions without a time to live (they live until destroyed). The same as
	 * connect-redis.
	 * @default false
	 */
	readonly disableTTL?: boolean;
	/**
	 * Do not extend a session's time to live when express-session touches it. The same
	 * as connect-redis.
	 * @default false
	 */
	readonly disableTouch?: boolean;
	/**
	 * How sessions are written to Redis. The same as connect-redis.
	 * @default JSON
	 */
	readonly serializer?: Serializer;
	/**
	 * `COUNT` of each `SCAN` that `all()`, `ids()`, `length()` and `clear()` send. The
	 * same as connect-redis.
	 * @default 100
	 */
	readonly scanCount?: number;
	/** Options of the memory side. */
	readonly memory?: MemoryOptions;
	/**
	 * The longest a Redis operation may take, in milliseconds. Past it, the operation
	 * is served from memory and the store falls back. Healthy Redis answers in a
	 * millisecond or two on the same network, so 250 ms never trips on a healthy link
	 * yet keeps the worst request well under a second.
	 * @default 250
	 */
	readonly timeoutMs?: number;
	/**
	 * While on memory, how often Redis is probed with `PING`, in milliseconds.
	 * @default 250
	 */
	readonly probeIntervalMs?: number;
	/**
	 * Consecutive successful probes needed before the store returns to Redis, so that
	 * a flapping link does not make the store flap.
	 * @default 3
	 */
	readonly recoverAfterProbes?: number;
	/**
	 * The shortest stay on memory after a fallback, in milliseconds.
	 * @default 1_000
	 */
	readonly minFallbackMs?: number;
	/**
	 * The most sessions destroyed during an outage that are remembered, to be destroyed
	 * in Redis on recovery. About 100 bytes each. Past it, the oldest is forgotten and
	 * an error is logged: that session could come back after the outage.
	 * @default 100_000
	 */
	readonly maxTombstones?: number;
	/**
	 * How long a destroyed session's id stays marked as destroyed, in milliseconds. A
	 * destroy (logout, `regenerate`) leaves JSON `null` under the session's key for this
	 * long, which connect-redis reads as "no session" too; a `set` or `touch` of that id
	 * meanwhile is ignored, so a request that loaded the session before the logout and
	 * saves it after cannot bring it back, on any instance. Make it longer than your
	 * slowest request (streamed responses included), and than the time instances may
	 * take to recover from an outage one after another.
	 * @default 600_000 (10 minutes)
	 */
	readonly tombstoneTtlMs?: number;
	/**
	 * Lazy renewal: a request that leaves its session unchanged extends the session's
	 * expiry in Redis only when that would move it by at least this many milliseconds (or
	 * a tenth of the session's lifetime, if shorter). Most read-only requests then send
	 * nothing to Redis. The session may end up to that much before its cookie says, if it
	 * is left idle right after a request that did not renew it. `0` renews on every request.
	 * @default 60_000
	 */
	readonly touchAfterMs?: number;
	/**
	 * An absolute lifetime beside the idle one, in milliseconds: a session ends this long
	 * after it was first stored (express-session stores a new one at each login, through
	 * `regenerate`), however active it is. Its end is kept in the session's own text (a
	 * field `__resilientSessionEndsAt` that reads take off), and every write and renewal
	 * caps the session's time to live at it. Needs the JSON `serializer`.
	 * @default undefined (no absolute lifetime: only the idle expiry)
	 */
	readonly absoluteLifetimeMs?: number;
	/**
	 * Serve reads of sessions this instance holds a current copy of from memory, with no
	 * round trip. Only on a client the store creates (`url`), where Redis tells the store
	 * of every change made elsewhere (RESP3 client tracking); a `client` passed in always
	 * reads from Redis.
	 * @default true
	 */
	readonly nearCache?: boolean;
	/**
	 * The near cache serves a read only while Redis answered, within this many
	 * milliseconds, a command this store sent: on a link that died without a word, no copy
	 * is served for longer than this after the last proof that Redis's invalidations were
	 * still arriving. Under traffic, a read served from memory past half this period sends
	 * one `PING` in the background, whose answer renews the proof, so that no read waits
	 * for it; an instance that was idle for longer pays one round trip on its next read.
	 * @default 1_000
	 */
	readonly nearCacheMaxLagMs?: number;
	/**
	 * The longest wait between two reconnection attempts of a client the store created,
	 * in milliseconds (the wait grows from 50 ms, with up to 100 ms of jitter).
	 * @default 500
	 */
	readonly reconnectMaxDelayMs?: number;
	/**
	 * Which user a session belongs to, for {@link ResilientStore.sessionsOf} and
	 * {@link ResilientStore.destroySessionsOf}: for example `(session) => session.user?.id`.
	 * A session for which it returns `undefined` (or an empty string) belongs to nobody.
	 * With it, every write of a session also updates its user's index in Redis, sent
	 * with the session itself (no extra round trip); without it, nothing is indexed.
	 * @default undefined
	 */
	readonly userId?: (session: SessionData) => string | undefined;
	/**
	 * The most sessions one user may have. Past it, a write of a new session of that
	 * user destroys (as a logout) the user's sessions that expire first, so that
	 * `destroySessionsOf` always reaches every session of the user and no index grows
	 * without bound. Used only with `userId`.
	 * @default 100
	 */
	readonly maxSessionsPerUser?: number;
	/**
	 * Where warnings and errors go.
	 * @default console
	 */
	readonly logger?: Logger;
}

/** Defaults of every {@link ResilientStoreOptions} that has one. */
export const storeDefaults = Object.freeze({
	prefix: 'sess:',
	ttl: 86_400,
	disableTTL: false,
	disableTouch: false,
	serializer: JSON as Serializer,
	scanCount: 100,
	memory: Object.freeze({ max: 10_000, checkPeriodMs: 600_000 }),
	timeoutMs: 250,
	probeIntervalMs: 250,
	recoverAfterProbes: 3,
	minFallbackMs: 1_000,
	maxTombstones: 100_000,
	tombstoneTtlMs: 600_000,
	touchAfterMs: 60_000,
	nearCache: true,
	nearCacheMaxLagMs: 1_000,
	reconnectMaxDelayMs: 500,
	maxSessionsPerUser: 100,
});

/** {@link ResilientStoreOptions} with every default applied and every value checked. */
export interface StoreConfig {
	readonly client: RedisClient | undefined;
	readonly url: string | undefined;
	readonly prefix: string;
	readonly ttl: number | ((session: SessionData) => number);
	readonly disableTTL: boolean;
	readonly disableTouch: boolean;
	readonly serializer: Serializer;
	readonly scanCount: number;
	readonly memory: Required<MemoryOptions>;
	readonly timeoutMs: number;
	readonly probeIntervalMs: number;
	readonly recoverAfterProbes: number;
	readonly minFallbackMs: number;
	readonly maxTombstones: number;
	readonly tombstoneTtlMs: number;
	readonly touchAfterMs: number;
	readonly absoluteLifetimeMs: number | undefined;
	readonly nearCache: boolean;
	readonly nearCacheMaxLagMs: number;
	readonly reconnectMaxDelayMs: number;
	readonly userId: ((session: SessionData) => string | undefined) | undefined;
	readonly maxSessionsPerUser: number;
	readonly logger: Logger;
}

const checkUrl = (option: string, value: unknown): string => {
	if (typeof value !== 'string' || !/^rediss?:\/\/./.test(value)) {
		invalidOption(option, 'a redis:// or rediss:// URL', value);
	}

	return value as string;
};

/**
 * Whether `value` is a {@link ResilientStore}, told by its registration (see
 * `redis/link.ts`) and its shape rather than by `instanceof`: when an app loads both
 * the CommonJS and the ES module build of this package (one through a dependency, say),
 * a store made by one is no instance of the other's class, yet works with it all the same.
 */
export const isResilientStore = (value: unknown): value is ResilientStore => {
	if (value === null || typeof value !== 'object') return false;
	const store = value as Partial<Record<keyof ResilientStore, unknown>>;
	return (
		isLinkedStore(store) &&
		'backend' in store &&
		typeof store.stats === 'function' &&
		typeof store.get === 'function' &&
		typeof store.set === 'function' &&
		typeof store.destroy === 'function'
	);
};

/** Every option name, so that a misspelt one is an error rather than silently ignored. */
const KNOWN_OPTIONS = Object.freeze({
	client: true,
	url: true,
	prefix: true,
	ttl: true,
	disableTTL: true,
	disableTouch: true,
	serializer: true,
	scanCount: true,
	memory: true,
	timeoutMs: true,
	probeIntervalMs: true,
	recoverAfterProbes: true,
	minFallbackMs: true,
	maxTombstones: true,
	tombstoneTtlMs: true,
	touchAfterMs: true,
	absoluteLifetimeMs: true,
	nearCache: true,
	nearCacheMaxLagMs: true,
	reconnectMaxDelayMs: true,
	userId: true,
	maxSessionsPerUser: true,
	logger: true,
} satisfies Record<keyof ResilientStoreOptions, true>);

const KNOWN_MEMORY_OPTIONS = Object.freeze({ max: true, checkPeriodMs: true } satisfies Record<keyof MemoryOptions, true>);

/** Resolves the options once into a fully required, checked config. */
export const resolveStoreOptions = (options: ResilientStoreOptions = {}): StoreConfig => {
	const given = checkObject('options', options) as ResilientStoreOptions;
	rejectUnknownOptions('ResilientStore', given, KNOWN_OPTIONS);
	const pick = <K extends keyof typeof storeDefaults>(key: K) => given[key] ?? storeDefaults[key];

	if (given.client !== undefined && given.url !== undefined) {
		throw new TypeError('resilient-session: pass `client` or `url`, not both');
	}

	if (given.client !== undefined && !isRedisClient(given.client)) {
		invalidOption('client', 'a node-redis client (createClient, createCluster or createSentinel)', given.client);
	}

	const url =
		given.url === undefined
			? given.client === undefined && process.env.REDIS_URL
				? checkUrl('REDIS_URL', process.env.REDIS_URL)
				: undefined
			: checkUrl('url', given.url);

	const ttl = pick('ttl');
	if (typeof ttl !== 'function' && (typeof ttl !== 'number' || !Number.isFinite(ttl) || ttl <= 0)) {
		invalidOption('ttl', 'a positive number of seconds or a function returning one', ttl);
	}

	const serializer = pick('serializer');
	if (
		serializer === null ||
		typeof serializer !== 'object' ||
		typeof serializer.parse !== 'function' ||
		typeof serializer.stringify !== 'function'
	) {
		invalidOption('serializer', 'an object with parse() and stringify() methods', serializer);
	}

	const prefix = checkString('prefix', pick('prefix'));

	const absoluteLifetimeMs =
		given.absoluteLifetimeMs === undefined
			? undefined
			: checkInteger('absoluteLifetimeMs', given.absoluteLifetimeMs, 1);
	if (absoluteLifetimeMs !== undefined && given.disableTTL === true) {
		throw new TypeError(
			'resilient-session: `absoluteLifetimeMs` cannot be combined with `disableTTL`: sessions with an end must expire',
		);
	}

	if (absoluteLifetimeMs !== undefined && serializer !== JSON) {
		throw new TypeError(
			'resilient-session: `absoluteLifetimeMs` needs the JSON `serializer`: the end of each session is kept as a field of its JSON text',
		);
	}

	const memory = checkObject('memory', given.memory ?? {}) as MemoryOptions;
	rejectUnknownOptions('ResilientStore `memory`', memory, KNOWN_MEMORY_OPTIONS);

	return Object.freeze({
		client: given.client,
		url,
		prefix,
		ttl,
		disableTTL: checkBoolean('disableTTL', pick('disableTTL')),
		disableTouch: checkBoolean('disableTouch', pick('disableTouch')),
		serializer,
		scanCount: checkInteger('scanCount', pick('scanCount'), 1),
		memory: Object.freeze({
			max: checkInteger('memory.max', memory.max ?? storeDefaults.memory.max, 1),
			checkPeriodMs: checkInteger(
				'memory.checkPeriodMs',
				memory.checkPeriodMs ?? storeDefaults.memory.checkPeriodMs,
				1,
			),
		}),
		timeoutMs: checkInteger('timeoutMs', pick('timeoutMs'), 1),
		probeIntervalMs: checkInteger('probeIntervalMs', pick('probeIntervalMs'), 1),
		recoverAfterProbes: checkInteger('recoverAfterProbes', pick('recoverAfterProbes'), 1),
		minFallbackMs: checkInteger('minFallbackMs', pick('minFallbackMs'), 0),
		maxTombstones: checkInteger('maxTombstones', pick('maxTombstones'), 1),
		tombstoneTtlMs: checkInteger('tombstoneTtlMs', pick('tombstoneTtlMs'), 1),
		touchAfterMs: checkInteger('touchAfterMs', pick('touchAfterMs'), 0),
		absoluteLifetimeMs,
		nearCache: checkBoolean('nearCache', pick('nearCache')),
		nearCacheMaxLagMs: checkInteger('nearCacheMaxLagMs', pick('nearCacheMaxLagMs'), 1),
		reconnectMaxDelayMs: checkInteger('reconnectMaxDelayMs', pick('reconnectMaxDelayMs'), 0),
		userId: given.userId === undefined ? undefined : checkFunction('userId', given.userId),
		maxSessionsPerUser: checkInteger('maxSessionsPerUser', pick('maxSessionsPerUser'), 1),
		logger: checkLogger(given.logger ?? console),
	});
};

/**
 * The time to live, in milliseconds, that express-session's touch will give a session it
 * loaded and leaves unchanged: touching resets the cookie to its full `originalMaxAge`.
 */
export const renewedTtlMs = (config: Pick<StoreConfig, 'ttl'>, session: SessionData): number => {
	if (typeof config.ttl === 'function') return finiteOrExpired(config.ttl(session) * 1000);
	const maxAge = session?.cookie?.originalMaxAge;
	return typeof maxAge === 'number' ? finiteOrExpired(maxAge) : config.ttl * 1000;
};

/**
 * A session's time to live in milliseconds, as connect-redis computes it in seconds: the
 * `ttl` function if there is one (seconds), else until the cookie expires, else `ttl`
 * (seconds). Kept in milliseconds so that a cookie that lives less than a second does not
 * live a whole second in Redis. Zero or less means the session has already expired.
 */
export const ttlMs = (config: Pick<StoreConfig, 'ttl'>, session: SessionData): number => {
	if (typeof config.ttl === 'function') return finiteOrExpired(config.ttl(session) * 1000);
	const expires = session?.cookie?.expires;
	if (expires) return finiteOrExpired(Number(new Date(expires)) - Date.now());
	return config.ttl * 1000;
};

/**
 * A time to live that is not a finite number (an invalid `cookie.expires`, a `ttl`
 * function returning `NaN`) counts as expired, as in connect-redis: Redis would refuse
 * `PX NaN` and fail the request. Whole milliseconds, as Redis takes them.
 */
const finiteOrExpired = (ms: number): number => (Number.isFinite(ms) ? Math.ceil(ms) : 0);

/**
 * How far a renewal must move a session's expiry to be sent to Redis (lazy renewal):
 * `touchAfterMs`, or a tenth of the session's lifetime (`fullTtlMs`) if that is shorter.
 */
export const renewalThresholdMs = (config: Pick<StoreConfig, 'touchAfterMs'>, fullTtlMs: number): number =>
	Math.min(config.touchAfterMs, fullTtlMs / 10);

/** The caller's serializer, with its errors marked as the caller's (they trip no fallback). */
export const guardSerializer = (serializer: Serializer): Serializer => ({
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
