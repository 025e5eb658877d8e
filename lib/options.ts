import type { SessionData } from 'express-session';
import type { Logger } from './logger.js';
import { isRedisClient, type RedisClient } from './redis-client.js';
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
	 * The longest wait between two reconnection attempts of a client the store created,
	 * in milliseconds (the wait grows from 50 ms, with up to 100 ms of jitter).
	 * @default 500
	 */
	readonly reconnectMaxDelayMs?: number;
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
	reconnectMaxDelayMs: 500,
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
	readonly reconnectMaxDelayMs: number;
	readonly logger: Logger;
}

/** How a value appears in the message of an option's `TypeError`. */
export const describe = (value: unknown): string => {
	if (typeof value === 'string') return JSON.stringify(value);
	if (typeof value === 'function') return 'a function';
	if (value === null) return 'null';
	if (Array.isArray(value)) return 'an array';
	if (typeof value === 'object') return 'an object';
	return String(value);
};

/** Throws the `TypeError` of a bad option: what `option` must be, and what it got. */
export const invalidOption = (option: string, expected: string, value: unknown): never => {
	throw new TypeError(`resilient-session: \`${option}\` must be ${expected}; got ${describe(value)}`);
};

/** Throws a `TypeError` naming `option` unless `value` is a whole number ≥ `min`. */
export const checkInteger = (option: string, value: unknown, min: number): number => {
	if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
		invalidOption(option, `a whole number of at least ${min}`, value);
	}

	return value as number;
};

/** Throws a `TypeError` naming `option` unless `value` is a whole number from `min` to `max`. */
export const checkIntegerIn = (option: string, value: unknown, min: number, max: number): number =>
	typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max
		? value
		: invalidOption(option, `a whole number from ${min} to ${max}`, value);

export const checkBoolean = (option: string, value: unknown): boolean =>
	typeof value === 'boolean' ? value : invalidOption(option, 'true or false', value);

/** Throws a `TypeError` naming `option` unless `value` is a plain object (not null, not an array). */
export const checkObject = (option: string, value: unknown, expected = 'an object'): Record<string, unknown> =>
	value !== null && typeof value === 'object' && !Array.isArray(value)
		? (value as Record<string, unknown>)
		: invalidOption(option, expected, value);

/** Throws a `TypeError` naming `option` unless `value` is a string (a non-empty one with `nonEmpty`). */
export const checkString = (option: string, value: unknown, nonEmpty = false): string =>
	typeof value === 'string' && (!nonEmpty || value !== '')
		? value
		: invalidOption(option, nonEmpty ? 'a non-empty string' : 'a string', value);

/** Throws a `TypeError` naming `option` unless `value` is a function. */
export const checkFunction = <T>(option: string, value: T): T =>
	typeof value === 'function' ? value : invalidOption(option, 'a function', value);

/**
 * Checks the IPv6 prefix length that counts as one client: a whole number from 32 to
 * 64, or `false` for whole addresses. The same rule as express-rate-limit's: a longer
 * prefix lets one client rotate through the addresses it owns, a shorter one lumps
 * many clients together.
 */
export const checkIpv6Subnet = (value: unknown): number | false =>
	value === false ? false : checkIntegerIn('ipv6Subnet', value, 32, 64);

export const checkLogger = (value: unknown): Logger => {
	const logger = checkObject('logger', value);
	if (typeof logger.warn !== 'function' || typeof logger.error !== 'function') {
		invalidOption('logger', 'an object with warn() and error() methods', value);
	}

	return logger as unknown as Logger;
};

const checkUrl = (option: string, value: unknown): string => {
	if (typeof value !== 'string' || !/^rediss?:\/\/./.test(value)) {
		invalidOption(option, 'a redis:// or rediss:// URL', value);
	}

	return value as string;
};

/**
 * Whether `value` is a {@link ResilientStore}, told by its shape rather than by
 * `instanceof`: when an app loads both the CommonJS and the ES module build of this
 * package (one through a dependency, say), a store made by one is no instance of the
 * other's class, yet works with it all the same.
 */
export const isResilientStore = (value: unknown): value is ResilientStore => {
	if (value === null || typeof value !== 'object') return false;
	const store = value as Partial<Record<keyof ResilientStore, unknown>>;
	return (
		'failover' in store &&
		'backend' in store &&
		typeof store.stats === 'function' &&
		typeof store.get === 'function' &&
		typeof store.set === 'function' &&
		typeof store.destroy === 'function'
	);
};

/** Resolves the options once into a fully required, checked config. */
export const resolveStoreOptions = (options: ResilientStoreOptions = {}): StoreConfig => {
	const given = checkObject('options', options) as ResilientStoreOptions;
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

	const memory = checkObject('memory', given.memory ?? {}) as MemoryOptions;

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
		reconnectMaxDelayMs: checkInteger('reconnectMaxDelayMs', pick('reconnectMaxDelayMs'), 0),
		logger: checkLogger(given.logger ?? console),
	});
};

/**
 * The time to live, in seconds, that express-session's touch will give a session it
 * loaded and leaves unchanged: touching resets the cookie to its full `originalMaxAge`.
 */
export const renewedTtlSeconds = (config: Pick<StoreConfig, 'ttl'>, session: SessionData): number => {
	if (typeof config.ttl === 'function') return config.ttl(session);
	const maxAge = session?.cookie?.originalMaxAge;
	return typeof maxAge === 'number' ? Math.ceil(maxAge / 1000) : config.ttl;
};

/**
 * A session's time to live in seconds, exactly as connect-redis computes it: the
 * `ttl` function if there is one, else until the cookie expires, else `ttl`.
 * Zero or less means the session has already expired.
 */
export const ttlSeconds = (config: Pick<StoreConfig, 'ttl'>, session: SessionData): number => {
	if (typeof config.ttl === 'function') return config.ttl(session);
	const expires = session?.cookie?.expires;
	if (expires) return Math.ceil((Number(new Date(expires)) - Date.now()) / 1000);
	return config.ttl;
};
