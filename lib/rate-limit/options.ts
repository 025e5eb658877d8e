import type { NextFunction, Request, Response } from 'express';
import type { DraftHeadersVersion, EnabledValidations, ValueDeterminingMiddleware } from 'express-rate-limit';
import type { Logger } from '../logger.js';
import {
	checkCount,
	checkCountOrFunction,
	MAX_WINDOW_MS,
	PER_WINDOW,
	resolveWindows,
} from './window-options.js';
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

/** What a request uses of the limit before it runs: a number, or a function of the request. */
export type RateLimitCost = number | ((request: Request, response: Response) => number | Promise<number>);

/** One window of a limit with several (`windows`). */
export interface RateLimitWindow {
	/** How long the window lasts, in milliseconds (at most 2 147 483 647). */
	readonly windowMs: number;
	/** The most a client may use in the window (more than 0; may be fractional). */
	readonly limit: number;
	/**
	 * The window's limit while the store is on memory because Redis failed (see the
	 * option of that name).
	 * @default limit
	 */
	readonly limitDuringOutage?: number;
	/**
	 * The most one client address may use in the window (see the option of that name).
	 * @default 10 × the limit in force
	 */
	readonly addressLimit?: number;
	/**
	 * The window's name in the draft-8 headers.
	 * @default `${limit}-in-${window}`, for example `'5000-in-1day'`
	 */
	readonly identifier?: string;
}

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
	 * The most requests a client may make in a window (with `cost`: the most it may
	 * use), or a function of the request that returns it. The same as express-rate-limit;
	 * it may be fractional (a budget in dollars, say).
	 * @default 5
	 */
	readonly limit?: number | ValueDeterminingMiddleware<number>;
	/**
	 * Several windows for one limit, for example 100 a minute and 5 000 a day: each
	 * request is checked and counted against all of them together, in one round trip,
	 * and refused if any would go over. Replaces `windowMs`, `limit`,
	 * `limitDuringOutage`, `addressLimit` and `identifier`, which each window sets for
	 * itself. The headers and `req.rateLimit` describe the window closest to its limit.
	 * @default one window of `windowMs` and `limit`
	 */
	readonly windows?: readonly RateLimitWindow[];
	/**
	 * What a request uses of the limit before it runs (an expensive route may cost 10),
	 * or a function of the request that returns it (it may be async). A finite number of
	 * 0 or more, fractional if the limit is. A request whose cost does not fit in what is
	 * left is refused and uses nothing. A function that returns anything else fails the
	 * request with a `TypeError` passed to `next`. What is known only after the
	 * response (tokens a model generated) is added with `req.rateLimit.charge(amount)`.
	 * @default 1
	 */
	readonly cost?: RateLimitCost;
	/**
	 * The limit while the store is on memory because Redis failed. Counts are then kept
	 * by each instance on its own, so a client spread over `n` instances could make up
	 * to `n` times the limit: set this lower (for example `limit / n`) to keep the total
	 * in check. Not applied on a store without Redis, which is never in an outage.
	 * @default limit
	 */
	readonly limitDuringOutage?: number | ValueDeterminingMiddleware<number>;
	/**
	 * The most requests one client address may make in a window, over all its sessions
	 * and its requests without one together, or a function of the request that returns
	 * it. Whatever cookies a client sends (a new session minted after each `429`, say),
	 * its address gets no more than this per window. It is counted in the same round
	 * trip as the request's own count. The default leaves room for ten clients behind
	 * one shared address (an office, a carrier NAT), each using its whole limit. Not
	 * applied with a custom `keyGenerator`, whose keys already say what a client is.
	 * @default 10 × the limit in force (`limit`, or `limitDuringOutage` during an outage)
	 */
	readonly addressLimit?: number | ValueDeterminingMiddleware<number>;
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
	 * The property of `req` that holds `{ limit, used, remaining, resetTime, key, charge }`.
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

/**
 * The default `addressLimit` is this many times the limit in force: room for ten
 * clients behind one shared address, each using its whole limit.
 */
export const ADDRESS_LIMIT_PER_LIMIT = 10;

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
	/** The first window's (see `windows`). */
	readonly windowMs: number;
	/** The first window's (see `windows`). */
	readonly limit: number | ValueDeterminingMiddleware<number>;
	/** The first window's (see `windows`). */
	readonly limitDuringOutage: number | ValueDeterminingMiddleware<number>;
	/** The first window's (see `windows`); `undefined`: {@link ADDRESS_LIMIT_PER_LIMIT} times the limit in force. */
	readonly addressLimit: number | ValueDeterminingMiddleware<number> | undefined;
	/** Every window: the one of `windowMs` and `limit`, or those of `windows`. */
	readonly windows: readonly WindowConfig[];
	readonly cost: RateLimitCost;
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

/** One window, resolved: the options of {@link RateLimitWindow}, or the top-level ones. */
export interface WindowConfig {
	readonly windowMs: number;
	readonly limit: number | ValueDeterminingMiddleware<number>;
	readonly limitDuringOutage: number | ValueDeterminingMiddleware<number>;
	/** `undefined`: {@link ADDRESS_LIMIT_PER_LIMIT} times the limit in force. */
	readonly addressLimit: number | ValueDeterminingMiddleware<number> | undefined;
	/** `undefined`: `${limit}-in-${window}`. */
	readonly identifier: string | ValueDeterminingMiddleware<string> | undefined;
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
	windows: true,
	cost: true,
	limitDuringOutage: true,
	addressLimit: true,
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

const DRAFTS: readonly unknown[] = ['draft-6', 'draft-7', 'draft-8'];

const checkIntegerOrFunction = <T>(option: string, value: T, min: number): T => {
	if (typeof value !== 'function' && (typeof value !== 'number' || !Number.isInteger(value) || value < min)) {
		invalidOption(option, `a whole number of at least ${min} or a function returning one`, value);
	}

	return value;
};

/** express-rate-limit's default handler, which it does not export: status, then message. */
export const sendMessage: RateLimitHandler = async (request, response, _next, options) => {
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

	if (given.windows !== undefined) {
		const both = PER_WINDOW.find((name) => given[name] !== undefined);
		if (both) {
			throw new TypeError(
				`resilient-session: rateLimit() takes \`${both}\` or \`windows\`, not both: give each window its own \`${both}\``,
			);
		}
	}

	const windowMs = checkIntegerIn('windowMs', pick('windowMs'), 1, MAX_WINDOW_MS);
	const limit = checkCountOrFunction('limit', pick('limit'));
	const limitDuringOutage = checkCountOrFunction('limitDuringOutage', given.limitDuringOutage ?? limit);
	const addressLimit = given.addressLimit === undefined ? undefined : checkCountOrFunction('addressLimit', given.addressLimit);
	const cost = given.cost ?? 1;
	if (typeof cost !== 'function') checkCount('cost', cost);
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
	const windows =
		given.windows === undefined
			? [{ windowMs, limit, limitDuringOutage, addressLimit, identifier }]
			: resolveWindows(given.windows);
	const [first] = windows as [WindowConfig];

	const validate = pick('validate');
	if (typeof validate !== 'boolean') {
		checkObject('validate', validate, 'true, false or an object of true/false by check name');
	}

	return Object.freeze({
		store: given.store,
		windowMs: first.windowMs,
		limit: first.limit,
		limitDuringOutage: first.limitDuringOutage,
		addressLimit: first.addressLimit,
		windows: Object.freeze(windows.map((window) => Object.freeze(window))),
		cost,
		message,
		statusCode: checkIntegerIn('statusCode', pick('statusCode'), 100, 599),
		handler: checkFunction('handler', given.handler ?? sendMessage),
		skip: checkFunction('skip', given.skip ?? countEveryRequest),
		keyGenerator: given.keyGenerator === undefined ? undefined : checkFunction('keyGenerator', given.keyGenerator),
		ipv6Subnet,
		standardHeaders: standardHeaders as false | DraftHeadersVersion,
		legacyHeaders: checkBoolean('legacyHeaders', pick('legacyHeaders')),
		identifier: first.identifier,
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

