import { isIP } from 'node:net';
import type { NextFunction, Request, Response } from 'express';
import {
	rateLimit as expressRateLimit,
	type Options as ExpressRateLimitOptions,
	type RateLimitRequestHandler,
	type ValueDeterminingMiddleware,
} from 'express-rate-limit';
import { type Logger, OnceLogger } from '../logger.js';
import { observersOf } from '../operations/observers.js';
import { isResilientStore } from '../session/options.js';
import { requestAddressKey } from '../counting/client-address.js';
import { storedSessionId } from '../session/request-session.js';
import type { ResilientStore } from '../session/store.js';
import { describe } from '../options/checks.js';
import { allKnown, isPromiseLike, type MaybePromise, whenKnown } from '../maybe-async.js';
import {
	ADDRESS_LIMIT_PER_LIMIT,
	type RateLimitConfig,
	type RateLimitOptions,
	resolveRateLimitOptions,
} from './options.js';
import { closestWindow, EngineCounterStore, newTicket, type Shown, type Ticket } from './counter-store.js';
import { type BudgetInfo, budgetInfo, setHeaders, setRetryAfter } from './headers.js';
import { Tickets } from './tickets.js';

export { rateLimitDefaults } from './options.js';
export type {
	RateLimitConfig,
	RateLimitCost,
	RateLimitHandler,
	RateLimitMessage,
	RateLimitOptions,
	RateLimitWindow,
} from './options.js';
export type { BudgetInfo, ChargeResult } from './headers.js';

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
 * never escapes it either (see {@link addressOf}).
 */
const sessionOrIpKey =
	(config: RateLimitConfig, log: OnceLogger): ValueDeterminingMiddleware<string> =>
	(request, response) => {
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
		return whenKnown(clientAddress(config, request, response), (address) => `ip:${address}`);
	};

/** The key of the request's client address (its IPv6 subnet of `ipv6Subnet`). */
const clientAddress = (config: RateLimitConfig, request: Request, response: Response): MaybePromise<string> => {
	const { ipv6Subnet } = config;
	return requestAddressKey(request, typeof ipv6Subnet === 'function' ? () => ipv6Subnet(request, response) : ipv6Subnet);
};

/**
 * The request's address and its ceiling in each window (`addressLimit`, by default
 * {@link ADDRESS_LIMIT_PER_LIMIT} times the window's limit in force), with the default key.
 */
const addressOf = (
	config: RateLimitConfig,
	limits: readonly number[],
	request: Request,
	response: Response,
): MaybePromise<NonNullable<Ticket['address']>> => {
	const ceilings = allKnown(
		config.windows.map((window, i) =>
			window.addressLimit === undefined
				? limits[i]! * ADDRESS_LIMIT_PER_LIMIT
				: valueOf(window.addressLimit, request, response),
		),
	);
	return whenKnown(ceilings, (known) => whenKnown(clientAddress(config, request, response), (key) => ({ key, ceilings: known })));
};

// ---------------------------------------------------------------------------------------
// Middleware

const valueOf = <T>(value: T | ValueDeterminingMiddleware<T>, request: Request, response: Response): MaybePromise<T> =>
	typeof value === 'function' ? (value as ValueDeterminingMiddleware<T>)(request, response) : value;

/**
 * `value`, checked to be a finite number of at least 0 (a function's answer is only known
 * per request); `requirement` says what the TypeError names: "`cost` must return".
 */
const atLeastZero = (value: unknown, requirement: string): number => {
	if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
		throw new TypeError(`resilient-session: rateLimit() ${requirement} a finite number of at least 0; got ${describe(value)}`);
	}

	return value;
};

const checkedCost = (value: unknown): number => atLeastZero(value, '`cost` must return');
const checkedLimit = (value: unknown): number => atLeastZero(value, '`limit` must be');

/** The cost of a request, checked. */
const costOf = (config: RateLimitConfig, request: Request, response: Response): MaybePromise<number> => {
	const { cost } = config;
	return typeof cost === 'number' ? cost : whenKnown(cost(request, response), checkedCost);
};

/**
 * The limits in force of each window: `limitDuringOutage` while the store's failover is
 * on memory. Read before the count, so a request counted at the very moment the store
 * switches may be judged by the other limit.
 */
const limitsOf = (
	config: RateLimitConfig,
	counts: EngineCounterStore,
	request: Request,
	response: Response,
): MaybePromise<number[]> =>
	allKnown(
		config.windows.map((window) =>
			whenKnown(valueOf(counts.inOutage ? window.limitDuringOutage : window.limit, request, response), checkedLimit),
		),
	);

/** The limits of each window and its address's ceilings, in force normally or during an outage. */
interface LimitsInForce {
	readonly limits: readonly number[];
	readonly ceilings: readonly number[];
}

/**
 * What {@link costOf}, {@link limitsOf} and {@link addressOf} answer for every request,
 * when every option they read is a plain number and the address key comes at once (no
 * `ipv6Subnet` function): worked out once, so that a request does not pay for the
 * functions and arrays that answer it otherwise. `undefined` when any option is a function.
 */
const knownLimits = (
	config: RateLimitConfig,
): { readonly cost: number; readonly normally: LimitsInForce; readonly duringOutage: LimitsInForce } | undefined => {
	const { cost, windows, ipv6Subnet } = config;
	const plain = (value: unknown): value is number => typeof value === 'number';
	if (!plain(cost) || typeof ipv6Subnet === 'function') return undefined;
	if (!windows.every((window) => plain(window.limit) && plain(window.limitDuringOutage))) return undefined;
	if (!windows.every((window) => window.addressLimit === undefined || plain(window.addressLimit))) return undefined;
	const inForce = (limits: number[]): LimitsInForce =>
		Object.freeze({
			limits: Object.freeze(limits),
			ceilings: Object.freeze(
				windows.map((window, i) => (window.addressLimit as number | undefined) ?? limits[i]! * ADDRESS_LIMIT_PER_LIMIT),
			),
		});
	return {
		cost,
		normally: inForce(windows.map((window) => window.limit as number)),
		duringOutage: inForce(windows.map((window) => window.limitDuringOutage as number)),
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

/**
 * The key generator given to express-rate-limit: `keyOf`, which also hands the request's
 * ticket to the counter store under the key, for the `increment` that follows (see
 * `EngineCounterStore.expect`).
 */
const handingOverTickets = (
	keyOf: ValueDeterminingMiddleware<string>,
	tickets: Tickets,
	counts: EngineCounterStore,
): ValueDeterminingMiddleware<string> => {
	const keyGenerator = (request: Request, response: Response): MaybePromise<string> =>
		whenKnown(keyOf(request, response), (key) => {
			const ticket = tickets.of(request);
			if (ticket) counts.expect(key, ticket);
			return key;
		});
	// express-rate-limit checks a custom key generator's source for an unsafe use of
	// `req.ip` (ERR_ERL_KEY_GEN_IPV6): it must read the caller's, not this wrapper's.
	keyGenerator.toString = () => keyOf.toString();
	return keyGenerator;
};

/**
 * How a response ended: `'finish'` (sent whole), `'close'` before the handler ended it,
 * `'error'`, or `'unsent'`: ended by the handler, but the connection closed before it was
 * all sent (express-rate-limit takes such a request back under neither option).
 */
type ResponseEnd = Promise<'finish' | 'close' | 'error' | 'unsent'>;

const responseEnd = (response: Response): ResponseEnd =>
	new Promise((resolve) => {
		response.once('finish', () => resolve('finish'));
		response.once('close', () => resolve(response.writableEnded ? 'unsent' : 'close'));
		response.once('error', () => resolve('error'));
	});

/**
 * `skipFailedRequests` and `skipSuccessfulRequests`, as express-rate-limit applies them:
 * once the response has ended, the request's cost is given back if it failed (by
 * `requestWasSuccessful`, or the client went away before the response was sent, or the
 * response failed), or if it succeeded, respectively. Written here because
 * express-rate-limit's take-back hands the store the key alone, and with weighted costs
 * and several windows the cost to give back is the request's own.
 */
const takeBackWhenSkipped = (
	config: RateLimitConfig,
	counts: EngineCounterStore,
	ticket: Ticket,
	ended: ResponseEnd,
): void => {
	const { request, response } = ticket as { request: Request; response: Response };
	void ended
		.then(async (how) => {
			if (how === 'unsent') return;
			const succeeded = how === 'finish' && (await config.requestWasSuccessful(request, response));
			if (succeeded ? config.skipSuccessfulRequests : config.skipFailedRequests) await counts.takeBack(ticket);
		})
		// Each failure reported, as express-rate-limit reports each of its own.
		.catch((error: unknown) =>
			config.logger.error(`resilient-session: rateLimit() could not take a request back: ${(error as Error)?.message}`, error),
		);
};

/** The prefixes in use on each store, to warn when two limits would share their counts. */
const prefixesInUse = new WeakMap<ResilientStore, Set<string>>();

/**
 * Per-session rate limiting and budgets, shared by every instance through the store's
 * Redis, with the store's memory fallback: express-rate-limit's middleware (skip, keys,
 * its checks, taking failed requests back, the handler), with the counting, the
 * weighing (`cost`, `charge`), several windows and the headers of this package.
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

	// The request's cost and limits go on its ticket right before express-rate-limit counts it.
	const known = knownLimits(config);
	const prepare = (ticket: Ticket): MaybePromise<void> => {
		const { request, response } = ticket as { request: Request; response: Response };
		if (known) {
			const { limits, ceilings } = counts.inOutage ? known.duringOutage : known.normally;
			ticket.cost = known.cost;
			ticket.limits = limits;
			if (!config.keyGenerator) ticket.address = { key: clientAddress(config, request, response) as string, ceilings };
			return;
		}

		return whenKnown(costOf(config, request, response), (cost) => {
			ticket.cost = cost;
			return whenKnown(limitsOf(config, counts, request, response), (limits) => {
				ticket.limits = limits;
				if (config.keyGenerator) return;
				return whenKnown(addressOf(config, limits, request, response), (address) => {
					ticket.address = address;
				});
			});
		});
	};

	const counts = new EngineCounterStore(config, prepare);
	const tickets = new Tickets();
	const observers = observersOf(config.store);

	/** `req.rateLimit` and the headers, once the request was counted; the shown window for a refused one. */
	const describeRequest = (request: Request, response: Response, ticket: Ticket): MaybePromise<Shown | undefined> => {
		const { key } = ticket;
		if (ticket.admitted === undefined || key === undefined) return undefined;
		const shown = closestWindow(ticket, ticket.admitted ? 0 : ticket.cost);
		const info = budgetInfo(
			ticket,
			key,
			shown,
			(charged, amount) => counts.charge(charged, amount),
			(now) => setHeaders(request, response, config, ticket, key, now),
		);
		(request as unknown as Record<string, BudgetInfo>)[config.requestPropertyName] = info;
		return whenKnown(setHeaders(request, response, config, ticket, key, shown), () => shown);
	};

	const limiter = expressRateLimit({
		windowMs: config.windowMs,
		// The store judges each request and answers 1 hit (let through) or 2 (refused): see EngineCounterStore.
		limit: 1,
		message: config.message,
		statusCode: config.statusCode,
		handler: async (request, response, next) => {
			observers.rateLimit('limited');
			const ticket = tickets.takeBack(request);
			const shown = ticket && (await describeRequest(request, response, ticket));
			if (shown) await setRetryAfter(request, response, config, shown);
			await config.handler(request, response, next, config);
		},
		skip: config.skip,
		keyGenerator: handingOverTickets(config.keyGenerator ?? sessionOrIpKey(config, log), tickets, counts),
		// Set by describeRequest: express-rate-limit's describe one window and one count of hits.
		standardHeaders: false,
		legacyHeaders: false,
		requestPropertyName: config.requestPropertyName,
		// Taken back by the middleware below, by the request's ticket: express-rate-limit's
		// own take-back hands the store the key alone.
		skipFailedRequests: false,
		skipSuccessfulRequests: false,
		store: counts,
		validate: config.validate,
		logger: asExpressRateLimitLogger(config.logger),
	});

	const middleware = (request: Request, response: Response, next: NextFunction) => {
		const ticket = newTicket(request, response);
		tickets.give(request, ticket);
		// Watched from the start, as express-rate-limit does: a client may go away before its count.
		const ended = config.skipFailedRequests || config.skipSuccessfulRequests ? responseEnd(response) : undefined;
		limiter(request, response, (error?: unknown) => {
			tickets.takeBack(request);
			// Not counted (skipped, failed, or express-rate-limit went on without counting): a
			// ticket still waiting under its key would be taken by the next request with that key.
			if (ticket.admitted === undefined) counts.withdraw(ticket);
			if (error !== undefined) return next(error);
			if (ticket.admitted) {
				observers.rateLimit('allowed');
				if (ended) takeBackWhenSkipped(config, counts, ticket, ended);
			}

			let described;
			try {
				described = describeRequest(request, response, ticket);
			} catch (describeError) {
				return next(describeError);
			}

			if (isPromiseLike(described)) described.then(() => next(), next);
			else next();
		});
	};

	return Object.assign(middleware, { resetKey: limiter.resetKey, getKey: limiter.getKey }) as RateLimitRequestHandler;
};
