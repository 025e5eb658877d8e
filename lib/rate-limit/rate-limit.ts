import { isIP } from 'node:net';
import type { NextFunction, Request, Response } from 'express';
import {
	type ClientRateLimitInfo,
	type DraftHeadersVersion,
	type EnabledValidations,
	rateLimit as expressRateLimit,
	type IncrementResponse,
	MemoryStore,
	type Options as ExpressRateLimitOptions,
	type RateLimitInfo,
	type RateLimitRequestHandler,
	type Store as CounterStore,
	type ValueDeterminingMiddleware,
} from 'express-rate-limit';
import { RedisStore, type RedisReply, type SendCommandClusterDetails } from 'rate-limit-redis';
import type { Attempt, Failover } from '../redis/failover.js';
import { type Logger, OnceLogger } from '../logger.js';
import {
	checkBoolean,
	checkFunction,
	checkInteger,
	checkIntegerIn,
	checkIpv6Subnet,
	checkLogger,
	checkObject,
	checkString,
	invalidOption,
	rejectUnknownOptions,
} from '../options/checks.js';
import { isResilientStore } from '../session/options.js';
import { isCluster, isReplyError, type RedisClient } from '../redis/client.js';
import { LUA_DECREMENT_LIVE, RedisScript } from '../redis/script.js';
import { requestAddressKey } from '../counting/client-address.js';
import { storedSessionId } from '../session/request-session.js';
import type { ResilientStore } from '../session/store.js';

/** What a limited client gets in the body: a string, or an object sent as JSON. */
export type RateLimitMessage = string | object;

/**
 * Answers a limited request. `Retry-After` and the rate limit headers are already set;
 * the default sends `statusCode` and `message`.
 */
export type RateLimitHandler = (
	request: Request,
	response: Response,
	next: NextFunction,
	options: RateLimitConfig,
) => void | Promise<void>;

/** Options of {@link rateLimit}. Those of express-rate-limit keep its names and meanings. */
export interface RateLimitOptions {
	/**
	 * The store that keeps the sessions: counts go to its Redis, and to memory while
	 * it is on memory. Required.
	 */
	readonly store: ResilientStore;
	/**
	 * How long each window lasts, in milliseconds. Counts start at the first request
	 * of a client and reset `windowMs` later (a fixed window, as in express-rate-limit).
	 * At most 2 147 483 647 (24.8 days).
	 * @default 60_000
	 */
	readonly windowMs?: number;
	/**
	 * The most requests a client may make in a window, or a function of the request
	 * that returns it. The same as express-rate-limit.
	 * @default 5
	 */
	readonly limit?: number | ValueDeterminingMiddleware<number>;
	/**
	 * The limit while the store is on memory because Redis failed. Counts are then kept
	 * by each instance on its own, so a client spread over `n` instances could make up
	 * to `n` times the limit: set this lower (for example `limit / n`) to keep the total
	 * in check. Not applied on a store without Redis, which is never in an outage.
	 * @default limit
	 */
	readonly limitDuringOutage?: number | ValueDeterminingMiddleware<number>;
	/**
	 * The body sent to a limited client (an object is sent as JSON), or a function of
	 * the request that returns it.
	 * @default 'Too many requests, please try again later.'
	 */
	readonly message?: RateLimitMessage | ValueDeterminingMiddleware<RateLimitMessage>;
	/**
	 * The HTTP status of a limited request.
	 * @default 429
	 */
	readonly statusCode?: number;
	/**
	 * Answers a limited request instead of sending `statusCode` and `message`.
	 * `Retry-After` is set before it runs.
	 * @default sends `statusCode` and `message`
	 */
	readonly handler?: RateLimitHandler;
	/**
	 * Returns `true` for a request that must not be counted nor limited.
	 * @default counts every request
	 */
	readonly skip?: ValueDeterminingMiddleware<boolean>;
	/**
	 * Returns the key a request is counted under, instead of the session or the IP.
	 * If it falls back to `req.ip`, pass it through `ipKeyGenerator` (from
	 * express-rate-limit) so that an IPv6 client cannot rotate addresses in its subnet.
	 * @default the session id of a session loaded from the store, else the client IP
	 */
	readonly keyGenerator?: ValueDeterminingMiddleware<string>;
	/**
	 * The IPv6 prefix length that counts as one client when counting by IP (an IPv6
	 * client usually owns a whole /56 or /64), `false` for whole addresses, or a function
	 * of the request. Ignored with a custom `keyGenerator`.
	 * @default 56
	 */
	readonly ipv6Subnet?: number | false | ValueDeterminingMiddleware<number>;
	/**
	 * Which IETF draft of the `RateLimit` headers to send: `'draft-8'` sends
	 * `RateLimit-Policy` and `RateLimit`; `'draft-7'` and `'draft-6'` the older forms
	 * (`true` is `'draft-6'`, as in express-rate-limit); `false` none.
	 * @default 'draft-8'
	 */
	readonly standardHeaders?: boolean | DraftHeadersVersion;
	/**
	 * Also send the legacy `X-RateLimit-Limit`, `X-RateLimit-Remaining` and
	 * `X-RateLimit-Reset` headers.
	 * @default false
	 */
	readonly legacyHeaders?: boolean;
	/**
	 * The name of the policy in the draft-8 headers, or a function of the request.
	 * @default `${limit}-in-${window}`, for example `'100-in-1min'`
	 */
	readonly identifier?: string | ValueDeterminingMiddleware<string>;
	/**
	 * The `Retry-After` of a limited request in seconds, or a function of the request
	 * that returns it. It only changes what the header says, not how long the client
	 * is limited.
	 * @default the seconds until the window resets
	 */
	readonly retryAfter?: number | ValueDeterminingMiddleware<number>;
	/**
	 * The property of `req` that holds `{ limit, used, remaining, resetTime, key }`.
	 * @default 'rateLimit'
	 */
	readonly requestPropertyName?: string;
	/**
	 * Do not count requests that fail (status 400 or more, or aborted).
	 * @default false
	 */
	readonly skipFailedRequests?: boolean;
	/**
	 * Do not count requests that succeed (status below 400).
	 * @default false
	 */
	readonly skipSuccessfulRequests?: boolean;
	/**
	 * Tells `skipFailedRequests` and `skipSuccessfulRequests` whether a request succeeded.
	 * @default status below 400
	 */
	readonly requestWasSuccessful?: ValueDeterminingMiddleware<boolean>;
	/**
	 * Prefix of the count keys in Redis. Every instance of one limit must use the same
	 * one, and two different limits on one Redis different ones.
	 * @default 'rl:'
	 */
	readonly prefix?: string;
	/**
	 * The most clients counted in memory at a time (during an outage, or always on a
	 * store without Redis). About 270 bytes each with session-id keys, so the default
	 * holds at most about 14 MB. Past it, the count of the client least recently seen
	 * is dropped for each new one (a warning is logged once).
	 * @default 50_000
	 */
	readonly maxMemoryKeys?: number;
	/**
	 * express-rate-limit's configuration checks, `false` to turn them all off, or
	 * `{ name: false }` to turn off one (`trustProxy`, `xForwardedForHeader`, `ip`, …).
	 * @default true
	 */
	readonly validate?: boolean | EnabledValidations;
	/**
	 * Where warnings and errors go.
	 * @default console
	 */
	readonly logger?: Logger;
}

/** Defaults of every {@link RateLimitOptions} that has a fixed one. */
export const rateLimitDefaults = Object.freeze({
	windowMs: 60_000,
	limit: 5,
	message: 'Too many requests, please try again later.',
	statusCode: 429,
	ipv6Subnet: 56,
	standardHeaders: 'draft-8',
	legacyHeaders: false,
	requestPropertyName: 'rateLimit',
	skipFailedRequests: false,
	skipSuccessfulRequests: false,
	prefix: 'rl:',
	maxMemoryKeys: 50_000,
	validate: true,
} as const);

/**
 * {@link RateLimitOptions} with every default applied and every value checked, as
 * given to a custom `handler`. `keyGenerator`, `identifier` and `retryAfter` are
 * `undefined` when they are computed per request.
 */
export interface RateLimitConfig {
	readonly store: ResilientStore;
	readonly windowMs: number;
	readonly limit: number | ValueDeterminingMiddleware<number>;
	readonly limitDuringOutage: number | ValueDeterminingMiddleware<number>;
	readonly message: RateLimitMessage | ValueDeterminingMiddleware<RateLimitMessage>;
	readonly statusCode: number;
	readonly handler: RateLimitHandler;
	readonly skip: ValueDeterminingMiddleware<boolean>;
	readonly keyGenerator: ValueDeterminingMiddleware<string> | undefined;
	readonly ipv6Subnet: number | false | ValueDeterminingMiddleware<number>;
	readonly standardHeaders: false | DraftHeadersVersion;
	readonly legacyHeaders: boolean;
	readonly identifier: string | ValueDeterminingMiddleware<string> | undefined;
	readonly retryAfter: number | ValueDeterminingMiddleware<number> | undefined;
	readonly requestPropertyName: string;
	readonly skipFailedRequests: boolean;
	readonly skipSuccessfulRequests: boolean;
	readonly requestWasSuccessful: ValueDeterminingMiddleware<boolean>;
	readonly prefix: string;
	readonly maxMemoryKeys: number;
	readonly validate: boolean | EnabledValidations;
	readonly logger: Logger;
}

// ---------------------------------------------------------------------------------------
// Options

/**
 * Every option name, so that a misspelt one is an error rather than silently ignored.
 * express-rate-limit's own check of unknown options never sees them (it is given the
 * resolved config), and would only log. Every other check here throws a `TypeError` at
 * construction where express-rate-limit logs at best (`windowMs`, `ipv6Subnet`), or
 * only once a request comes (`standardHeaders`).
 */
const KNOWN_OPTIONS = Object.freeze({
	store: true,
	windowMs: true,
	limit: true,
	limitDuringOutage: true,
	message: true,
	statusCode: true,
	handler: true,
	skip: true,
	keyGenerator: true,
	ipv6Subnet: true,
	standardHeaders: true,
	legacyHeaders: true,
	identifier: true,
	retryAfter: true,
	requestPropertyName: true,
	skipFailedRequests: true,
	skipSuccessfulRequests: true,
	requestWasSuccessful: true,
	prefix: true,
	maxMemoryKeys: true,
	validate: true,
	logger: true,
} satisfies Record<keyof RateLimitOptions, true>);

/** express-rate-limit options that do not apply here, and why. */
const NOT_HERE: Readonly<Record<string, string>> = Object.freeze({
	max: 'use `limit`',
	headers: 'use `legacyHeaders`',
	passOnStoreError: 'counting never fails: it goes to memory when Redis does',
});

/** The longest `windowMs`: the memory side's sweep is a `setInterval` of one window. */
const MAX_WINDOW_MS = 2 ** 31 - 1;

const DRAFTS: readonly unknown[] = ['draft-6', 'draft-7', 'draft-8'];

const checkIntegerOrFunction = <T>(option: string, value: T, min: number): T => {
	if (typeof value !== 'function' && (typeof value !== 'number' || !Number.isInteger(value) || value < min)) {
		invalidOption(option, `a whole number of at least ${min} or a function returning one`, value);
	}

	return value;
};

/** express-rate-limit's default handler, which it does not export: status, then message. */
const sendMessage: RateLimitHandler = async (request, response, _next, options) => {
	response.status(options.statusCode);
	const message = typeof options.message === 'function' ? await options.message(request, response) : options.message;
	if (!response.writableEnded) response.send(message);
};

const countEveryRequest: ValueDeterminingMiddleware<boolean> = () => false;

const statusBelow400: ValueDeterminingMiddleware<boolean> = (_request, response) => response.statusCode < 400;

/** Resolves the options once into a fully required, checked config. */
export const resolveRateLimitOptions = (options: RateLimitOptions): RateLimitConfig => {
	checkObject('options', options, 'an object with at least `store`');
	rejectUnknownOptions('rateLimit()', options, KNOWN_OPTIONS, NOT_HERE);

	const given = options;
	const pick = <K extends keyof typeof rateLimitDefaults>(key: K) => given[key] ?? rateLimitDefaults[key];

	if (!isResilientStore(given.store)) {
		invalidOption('store', 'the ResilientStore that session() uses', given.store);
	}

	const limit = checkIntegerOrFunction('limit', pick('limit'), 0);
	const message = pick('message');
	if (typeof message !== 'string' && typeof message !== 'function' && (typeof message !== 'object' || message === null)) {
		invalidOption('message', 'a string, an object or a function returning one', message);
	}

	const ipv6Subnet = pick('ipv6Subnet');
	if (typeof ipv6Subnet !== 'function') checkIpv6Subnet(ipv6Subnet);

	let standardHeaders = pick('standardHeaders');
	if (standardHeaders === true) standardHeaders = 'draft-6';
	if (standardHeaders !== false && !DRAFTS.includes(standardHeaders)) {
		invalidOption('standardHeaders', "'draft-8', 'draft-7', 'draft-6', true or false", standardHeaders);
	}

	const identifier = given.identifier;
	if (identifier !== undefined && typeof identifier !== 'function') checkString('identifier', identifier, true);

	const validate = pick('validate');
	if (typeof validate !== 'boolean') {
		checkObject('validate', validate, 'true, false or an object of true/false by check name');
	}

	return Object.freeze({
		store: given.store,
		windowMs: checkIntegerIn('windowMs', pick('windowMs'), 1, MAX_WINDOW_MS),
		limit,
		limitDuringOutage: checkIntegerOrFunction('limitDuringOutage', given.limitDuringOutage ?? limit, 0),
		message,
		statusCode: checkIntegerIn('statusCode', pick('statusCode'), 100, 599),
		handler: checkFunction('handler', given.handler ?? sendMessage),
		skip: checkFunction('skip', given.skip ?? countEveryRequest),
		keyGenerator: given.keyGenerator === undefined ? undefined : checkFunction('keyGenerator', given.keyGenerator),
		ipv6Subnet,
		standardHeaders: standardHeaders as false | DraftHeadersVersion,
		legacyHeaders: checkBoolean('legacyHeaders', pick('legacyHeaders')),
		identifier,
		retryAfter:
			given.retryAfter === undefined ? undefined : checkIntegerOrFunction('retryAfter', given.retryAfter, 0),
		requestPropertyName: checkString('requestPropertyName', pick('requestPropertyName'), true),
		skipFailedRequests: checkBoolean('skipFailedRequests', pick('skipFailedRequests')),
		skipSuccessfulRequests: checkBoolean('skipSuccessfulRequests', pick('skipSuccessfulRequests')),
		requestWasSuccessful: checkFunction('requestWasSuccessful', given.requestWasSuccessful ?? statusBelow400),
		prefix: checkString('prefix', pick('prefix')),
		maxMemoryKeys: checkInteger('maxMemoryKeys', pick('maxMemoryKeys'), 1),
		validate,
		logger: checkLogger(given.logger ?? console),
	});
};

// ---------------------------------------------------------------------------------------
// Counting

/**
 * A SHA1 that names no script. rate-limit-redis keeps the promise of its `SCRIPT LOAD`
 * for good, so a load that failed because Redis was down would fail every later count;
 * a failed load resolves to this instead, and the next `EVALSHA` gets `NOSCRIPT`, on
 * which rate-limit-redis loads the script again.
 */
const NO_SCRIPT = '0'.repeat(40);

/**
 * Decrements a count only while it lives. rate-limit-redis sends a bare `DECR`, which
 * creates a key without expiry, at -1, when the count expired meanwhile (or was made in
 * memory during an outage); such a key would never go away.
 */
const decrementScript = new RedisScript(`${LUA_DECREMENT_LIVE}
return decrement_live(KEYS[1]) or 0
`);

type SendCommand = (details: SendCommandClusterDetails) => Promise<RedisReply>;

/**
 * Sends raw commands the way each kind of node-redis client takes them: a cluster
 * routes on the key, a sentinel sends to the master, a client to its server.
 */
const commandSender = (client: RedisClient): SendCommand => {
	if (isCluster(client)) {
		return ({ key, isReadOnly, command }) => client.sendCommand(key, isReadOnly, command);
	}

	if (typeof client.getSentinelNode === 'function') {
		// Always to the master: a script loaded there is not on the replicas.
		return ({ command }) => client.sendCommand(false, command);
	}

	return ({ command }) => client.sendCommand(command);
};

/**
 * rate-limit-redis's store: its script counts a request in one atomic round trip
 * (`EVALSHA`), and reloads the script on `NOSCRIPT` (Redis restarted or flushed).
 *
 * Each script touches exactly one key, so the keys are safe on a cluster without a
 * hash tag, and spread over every slot.
 */
class RedisCounts extends RedisStore {
	readonly #client: RedisClient;
	readonly #failover: Failover;

	constructor(client: RedisClient, failover: Failover, prefix: string) {
		super({ sendCommandCluster: commandSender(client), prefix });
		this.#client = client;
		this.#failover = failover;
	}

	override loadIncrementScript(key?: string): Promise<string> {
		return this.#load(() => super.loadIncrementScript(key));
	}

	override loadGetScript(key?: string): Promise<string> {
		return this.#load(() => super.loadGetScript(key));
	}

	override async decrement(key: string): Promise<void> {
		await decrementScript.run(this.#client, [this.prefixKey(key)]);
	}

	async #load(load: () => Promise<string>): Promise<string> {
		try {
			// Within the store's deadline, but a failed load trips nothing: the count that
			// needs the script will, through the failover.
			return await this.#failover.run('SCRIPT LOAD', load);
		} catch (error) {
			if (isReplyError(error)) throw error;
			return NO_SCRIPT;
		}
	}
}

/**
 * express-rate-limit's memory store, bounded: when `max` clients are counted, the count
 * of the least recently seen is dropped, so a client that keeps sending is not the one
 * that a flood of new clients pushes out.
 */
class BoundedMemoryCounts extends MemoryStore {
	readonly #max: number;
	readonly #onDrop: () => void;

	constructor(max: number, onDrop: () => void) {
		super();
		this.#max = max;
		this.#onDrop = onDrop;
	}

	override increment(key: string): Promise<ClientRateLimitInfo> {
		const client = this.current.get(key);
		if (client) {
			// Maps keep insertion order: moving the client last keeps `current` least recent first.
			this.current.delete(key);
			this.current.set(key, client);
		} else if (!this.previous.has(key)) {
			this.#makeRoom();
		}

		return super.increment(key);
	}

	/** Does nothing for a client not counted here: MemoryStore would add it. */
	override async decrement(key: string): Promise<void> {
		if (this.current.has(key) || this.previous.has(key)) await super.decrement(key);
	}

	/** Drops the least recently seen: from `previous` (not seen this window) first. */
	#makeRoom(): void {
		while (this.current.size + this.previous.size >= this.#max) {
			const clients = this.previous.size > 0 ? this.previous : this.current;
			clients.delete(clients.keys().next().value!);
			this.#onDrop();
		}
	}
}

/**
 * The counts of one limit: in Redis while the store's failover says Redis, in memory
 * otherwise. It asks the failover for every count and decides nothing on its own.
 *
 * Nothing is written back to Redis on recovery (no recovery step): counts live one
 * window, Redis still has those made before the outage, and adding each instance's
 * outage counts to them would delay the return to Redis for little gain.
 */
class FailoverCounts implements CounterStore {
	/** Counts are shared by every instance (express-rate-limit's double-count check uses it). */
	readonly localKeys = false;
	readonly prefix: string;
	readonly #failover: Failover | undefined;
	readonly #redis: RedisCounts | undefined;
	readonly #memory: BoundedMemoryCounts;
	readonly #log: OnceLogger;

	constructor(config: RateLimitConfig, log: OnceLogger) {
		const { store, prefix, maxMemoryKeys } = config;
		this.prefix = prefix;
		this.#log = log;
		this.#failover = store.failover;
		this.#redis = store.client && this.#failover ? new RedisCounts(store.client, this.#failover, prefix) : undefined;
		this.#memory = new BoundedMemoryCounts(maxMemoryKeys, () =>
			log.warn(
				'memory-full',
				`resilient-session: rateLimit() counts ${maxMemoryKeys} clients in memory (\`maxMemoryKeys\`); ` +
					'the counts of the least recently seen are dropped',
			),
		);
	}

	init(options: ExpressRateLimitOptions): void {
		this.#memory.init(options);
		this.#redis?.init(options).catch((error: unknown) => this.#refused(error));
	}

	async increment(key: string): Promise<IncrementResponse> {
		const counted = await this.#attempt('EVALSHA', (redis) => redis.increment(key));
		return counted.served ? counted.value : this.#memory.increment(key);
	}

	async decrement(key: string): Promise<void> {
		const counted = await this.#attempt('EVALSHA', (redis) => redis.decrement(key));
		if (!counted.served) await this.#memory.decrement(key);
	}

	async resetKey(key: string): Promise<void> {
		await this.#memory.resetKey(key);
		await this.#attempt('DEL', (redis) => redis.resetKey(key));
	}

	async get(key: string): Promise<ClientRateLimitInfo | undefined> {
		const counted = await this.#attempt('EVALSHA', (redis) => redis.get(key));
		if (!counted.served) return this.#memory.get(key);
		// rate-limit-redis reads a missing key as NaN hits.
		return counted.value && counted.value.totalHits > 0 ? counted.value : undefined;
	}

	shutdown(): void {
		this.#memory.shutdown();
	}

	/**
	 * Runs `command` on Redis through the store's failover. `served: false` (on memory,
	 * or Redis just failed) means "count in memory". A reply error (Redis refused this
	 * command) is logged once and counted in memory too: no request fails because of Redis.
	 */
	async #attempt<T>(operation: string, command: (redis: RedisCounts) => Promise<T>): Promise<Attempt<T>> {
		const redis = this.#redis;
		if (!redis || !this.#failover) return { served: false };
		try {
			return await this.#failover.attempt(operation, () => command(redis));
		} catch (error) {
			this.#refused(error);
			return { served: false };
		}
	}

	#refused(error: unknown): void {
		this.#log.error(
			'reply-error',
			`resilient-session: Redis refused a rate limit command, counting in memory: ${(error as Error)?.message}`,
			error,
		);
	}
}

// ---------------------------------------------------------------------------------------
// Keys

/** The checks of {@link checkClientIp}, by express-rate-limit's names for them. */
type IpCheck = 'ip' | 'trustProxy' | 'xForwardedForHeader' | 'forwardedHeader';

/**
 * express-rate-limit's checks of the proxy setup, which it runs only in its own key
 * generator (and does not export): the IP fallback of the session key needs them too.
 * Each logs once, and `validate` turns them off as in express-rate-limit.
 */
const checkClientIp = (request: Request, config: RateLimitConfig, log: OnceLogger): void => {
	const enabled = (check: IpCheck) =>
		typeof config.validate === 'boolean' ? config.validate : (config.validate[check] ?? config.validate.default ?? true);
	const report = (check: IpCheck, code: string, message: string) => {
		if (enabled(check)) log.error(check, `resilient-session: rateLimit(): ${message} (express-rate-limit's ${code})`);
	};

	const { ip } = request;
	if (ip === undefined) {
		report('ip', 'ERR_ERL_UNDEFINED_IP_ADDRESS', 'req.ip is undefined; such requests share one count');
	} else if (!isIP(ip)) {
		report('ip', 'ERR_ERL_INVALID_IP_ADDRESS', `req.ip (${ip}) is not an IP address; pass a keyGenerator`);
	}

	const trustProxy: unknown = request.app.get('trust proxy');
	if (trustProxy === true) {
		report(
			'trustProxy',
			'ERR_ERL_PERMISSIVE_TRUST_PROXY',
			"the Express 'trust proxy' setting is true, which lets any client choose its IP with X-Forwarded-For",
		);
	}

	if (request.headers['x-forwarded-for'] && trustProxy === false) {
		report(
			'xForwardedForHeader',
			'ERR_ERL_UNEXPECTED_X_FORWARDED_FOR',
			"X-Forwarded-For is set but the Express 'trust proxy' setting is false: every client behind the proxy " +
				'shares its IP',
		);
	}

	if (request.headers.forwarded && ip === request.socket?.remoteAddress) {
		report(
			'forwardedHeader',
			'ERR_ERL_FORWARDED_HEADER',
			'the Forwarded header is set but Express ignores it; pass a keyGenerator that reads it',
		);
	}
};

/**
 * The default key: `sid:<id>` for a request whose session was loaded from the store,
 * `ip:<address>` for any other (no cookie, an unknown or forged id, a new session), so
 * that dropping or forging the cookie never escapes the limit.
 */
const sessionOrIpKey =
	(config: RateLimitConfig, log: OnceLogger): ValueDeterminingMiddleware<string> =>
	async (request, response) => {
		if (!request.session) {
			log.error(
				'no-session',
				'resilient-session: rateLimit() found no req.session: mount it after session() (with a ResilientStore); ' +
					'counting by client IP meanwhile',
			);
		} else if (!isResilientStore(request.sessionStore)) {
			log.error(
				'foreign-store',
				'resilient-session: rateLimit() needs session() to use a ResilientStore to count by session; ' +
					'counting by client IP meanwhile',
			);
		}

		const sid = storedSessionId(request);
		if (sid !== undefined) return `sid:${sid}`;
		checkClientIp(request, config, log);
		const { ipv6Subnet } = config;
		return `ip:${await requestAddressKey(
			request,
			typeof ipv6Subnet === 'function' ? () => ipv6Subnet(request, response) : ipv6Subnet,
		)}`;
	};

// ---------------------------------------------------------------------------------------
// Middleware

const valueOf = <T>(value: T | ValueDeterminingMiddleware<T>, request: Request, response: Response) =>
	typeof value === 'function' ? (value as ValueDeterminingMiddleware<T>)(request, response) : value;

/**
 * The limit in force: `limitDuringOutage` while the store's failover is on memory.
 * Read when express-rate-limit asks, right after the count, so a request counted at
 * the very moment the store switches may be judged by the other limit.
 */
const limitInForce = (config: RateLimitConfig): number | ValueDeterminingMiddleware<number> => {
	const { store, limit, limitDuringOutage } = config;
	if (limitDuringOutage === limit) return limit;
	return (request, response) =>
		valueOf(store.failover?.backend === 'memory' ? limitDuringOutage : limit, request, response);
};

/** Seconds until `resetTime`, as express-rate-limit computes them for its headers. */
const secondsUntil = (resetTime: Date | undefined, windowMs: number): number =>
	resetTime ? Math.max(0, Math.ceil((resetTime.getTime() - Date.now()) / 1000)) : Math.ceil(windowMs / 1000);

/**
 * Runs `handler` with this package's config (express-rate-limit would pass its own).
 * express-rate-limit sets `Retry-After` itself whenever `standardHeaders` or
 * `legacyHeaders` is on; with both off it sends none, and a limited client should
 * still learn when to retry, so it is set here in that case only.
 */
const limitedHandler = (config: RateLimitConfig): ExpressRateLimitOptions['handler'] => {
	if (config.standardHeaders !== false || config.legacyHeaders) {
		return (request, response, next) => config.handler(request, response, next, config);
	}

	return async (request, response, next) => {
		if (!response.headersSent && !response.hasHeader('Retry-After')) {
			const info = (request as unknown as Record<string, RateLimitInfo | undefined>)[config.requestPropertyName];
			const seconds =
				config.retryAfter === undefined
					? secondsUntil(info?.resetTime, config.windowMs)
					: await valueOf(config.retryAfter, request, response);
			response.setHeader('Retry-After', String(seconds));
		}

		await config.handler(request, response, next, config);
	};
};

/** express-rate-limit logs `(error, message?)`; the package's loggers take `(message, ...details)`. */
const asExpressRateLimitLogger = (logger: Logger): ExpressRateLimitOptions['logger'] => {
	const text = (error: unknown, message?: string) => message ?? (error instanceof Error ? error.message : String(error));
	return {
		warn: (error, message) => logger.warn(text(error, message), error),
		error: (error, message) => logger.error(text(error, message), error),
	};
};

/** The prefixes in use on each store, to warn when two limits would share their counts. */
const prefixesInUse = new WeakMap<ResilientStore, Set<string>>();

/**
 * Per-session rate limiting, shared by every instance through the store's Redis, with
 * the store's memory fallback: express-rate-limit's middleware (its options, headers
 * and checks), counting with rate-limit-redis's script.
 *
 * Mount it after `session()`. A request whose session was loaded from the store counts
 * under its session id; any other under its client IP.
 *
 * @example
 * app.use(session({ store, secret, resave: false, saveUninitialized: false }));
 * app.use(rateLimit({ store, windowMs: 60_000, limit: 120 }));
 */
export const rateLimit = (options: RateLimitOptions): RateLimitRequestHandler => {
	const config = resolveRateLimitOptions(options);
	const log = new OnceLogger(config.logger);

	const prefixes = prefixesInUse.get(config.store) ?? new Set<string>();
	prefixesInUse.set(config.store, prefixes);
	if (prefixes.has(config.prefix)) {
		config.logger.warn(
			`resilient-session: two rateLimit() on one store share the prefix ${JSON.stringify(config.prefix)}: ` +
				'their counts add up; give each limit its own `prefix`',
		);
	}

	prefixes.add(config.prefix);
	if (options.ipv6Subnet !== undefined && config.keyGenerator) {
		config.logger.warn('resilient-session: rateLimit() ignores `ipv6Subnet` when `keyGenerator` is given');
	}

	return expressRateLimit({
		windowMs: config.windowMs,
		limit: limitInForce(config),
		message: config.message,
		statusCode: config.statusCode,
		handler: limitedHandler(config),
		skip: config.skip,
		keyGenerator: config.keyGenerator ?? sessionOrIpKey(config, log),
		standardHeaders: config.standardHeaders,
		legacyHeaders: config.legacyHeaders,
		...(config.identifier === undefined ? {} : { identifier: config.identifier }),
		...(config.retryAfter === undefined ? {} : { retryAfter: config.retryAfter }),
		requestPropertyName: config.requestPropertyName,
		skipFailedRequests: config.skipFailedRequests,
		skipSuccessfulRequests: config.skipSuccessfulRequests,
		requestWasSuccessful: config.requestWasSuccessful,
		store: new FailoverCounts(config, log),
		validate: config.validate,
		logger: asExpressRateLimitLogger(config.logger),
	});
};
