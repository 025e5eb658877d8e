import { isIP } from 'node:net';
import type { Request, Response } from 'express';
import {
	rateLimit as expressRateLimit,
	type Options as ExpressRateLimitOptions,
	type RateLimitInfo,
	type RateLimitRequestHandler,
	type ValueDeterminingMiddleware,
} from 'express-rate-limit';
import { type Logger, OnceLogger } from '../logger.js';
import { type Observers, observersOf } from '../operations/observers.js';
import { isResilientStore } from '../session/options.js';
import { requestAddressKey } from '../counting/client-address.js';
import { storedSessionId } from '../session/request-session.js';
import type { ResilientStore } from '../session/store.js';
import {
	ADDRESS_LIMIT_PER_LIMIT,
	type RateLimitConfig,
	type RateLimitOptions,
	resolveRateLimitOptions,
} from './options.js';
import { EngineCounterStore } from './counter-store.js';

export { rateLimitDefaults } from './options.js';
export type { RateLimitConfig, RateLimitHandler, RateLimitMessage, RateLimitOptions } from './options.js';

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
 * that dropping or forging the cookie never escapes the limit. Every request also
 * counts against its address's ceiling (`addressLimit`), so that minting new sessions
 * never escapes it either.
 */
const sessionOrIpKey =
	(
		config: RateLimitConfig,
		log: OnceLogger,
		counts: EngineCounterStore,
		limit: number | ValueDeterminingMiddleware<number>,
	): ValueDeterminingMiddleware<string> =>
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
		if (sid === undefined) checkClientIp(request, config, log);
		const { ipv6Subnet, addressLimit } = config;
		const address = await requestAddressKey(
			request,
			typeof ipv6Subnet === 'function' ? () => ipv6Subnet(request, response) : ipv6Subnet,
		);
		const key = sid === undefined ? `ip:${address}` : `sid:${sid}`;
		const inForce = await valueOf(limit, request, response);
		const ceiling =
			addressLimit === undefined ? inForce * ADDRESS_LIMIT_PER_LIMIT : await valueOf(addressLimit, request, response);
		// Last, with nothing awaited after it: see EngineCounterStore.
		counts.expectAddress(key, { address, limit: inForce, ceiling });
		return key;
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
const limitInForce = (
	config: RateLimitConfig,
	counts: EngineCounterStore,
): number | ValueDeterminingMiddleware<number> => {
	const { limit, limitDuringOutage } = config;
	if (limitDuringOutage === limit) return limit;
	return (request, response) => valueOf(counts.inOutage ? limitDuringOutage : limit, request, response);
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
const limitedHandler = (config: RateLimitConfig, observers: Observers): ExpressRateLimitOptions['handler'] => {
	if (config.standardHeaders !== false || config.legacyHeaders) {
		return (request, response, next) => {
			observers.rateLimit('limited');
			return config.handler(request, response, next, config);
		};
	}

	return async (request, response, next) => {
		observers.rateLimit('limited');
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

/**
 * Reports the requests `limiter` lets through to the store's observers (the limited
 * ones are reported by the handler): a request it passes on without an error, unless
 * it was over the limit (a handler that calls `next()` after all).
 */
const reportingAllowed = (
	limiter: RateLimitRequestHandler,
	observers: Observers,
	requestPropertyName: string,
): RateLimitRequestHandler =>
	Object.assign(
		(request: Request, response: Response, next: (error?: unknown) => void) =>
			limiter(request, response, (error?: unknown) => {
				const info = (request as unknown as Record<string, RateLimitInfo | undefined>)[requestPropertyName];
				if (error === undefined && !(info && info.used > info.limit)) observers.rateLimit('allowed');
				next(error);
			}),
		{ resetKey: limiter.resetKey, getKey: limiter.getKey },
	) as RateLimitRequestHandler;

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

	const counts = new EngineCounterStore(config);
	const limit = limitInForce(config, counts);
	const observers = observersOf(config.store);
	const limiter = expressRateLimit({
		windowMs: config.windowMs,
		limit,
		message: config.message,
		statusCode: config.statusCode,
		handler: limitedHandler(config, observers),
		skip: config.skip,
		keyGenerator: config.keyGenerator ?? sessionOrIpKey(config, log, counts, limit),
		standardHeaders: config.standardHeaders,
		legacyHeaders: config.legacyHeaders,
		...(config.identifier === undefined ? {} : { identifier: config.identifier }),
		...(config.retryAfter === undefined ? {} : { retryAfter: config.retryAfter }),
		requestPropertyName: config.requestPropertyName,
		skipFailedRequests: config.skipFailedRequests,
		skipSuccessfulRequests: config.skipSuccessfulRequests,
		requestWasSuccessful: config.requestWasSuccessful,
		store: counts,
		validate: config.validate,
		logger: asExpressRateLimitLogger(config.logger),
	});
	return reportingAllowed(limiter, observers, config.requestPropertyName);
};
