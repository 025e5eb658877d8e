import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { type Counted, CountingEngine } from '../counting/engine.js';
import { addressKey, requestAddressKey } from '../counting/client-address.js';
import { checkString, invalidOption } from '../options/checks.js';
import { observersOf } from '../operations/observers.js';
import { type CheckSide, addressSet, type LoginKeySet, type Settlement, usernameSet } from './key-sets.js';
import { loginKeys, type LoginKeys, normalizeUsername } from './keys.js';
import {
	type LockoutInfo,
	type LoginGuardConfig,
	type LoginGuardOptions,
	type LoginOutcome,
	resolveLoginGuardOptions,
} from './options.js';

export type { LoginKeys } from './keys.js';
export { loginKeys, normalizeUsername } from './keys.js';
export { loginGuardDefaults } from './options.js';
export type {
	LockoutInfo,
	LockoutScope,
	LoginGuardMemoryOptions,
	LoginGuardOptions,
	LoginOutcome,
} from './options.js';

/** `req.loginGuard`: the attempt in progress, for the login handler. */
export interface LoginAttempt {
	/** The username as counted (see {@link normalizeUsername}). */
	readonly username: string;
	/** The client address as counted (an IPv6 address as its subnet). */
	readonly ip: string;
	/** Counts this attempt as a failed login, whatever the response status. */
	fail(): void;
	/** Counts this attempt as a successful login, whatever the response status. */
	succeed(): void;
}

declare global {
	// Express's own types are augmented through this global namespace.
	// eslint-disable-next-line @typescript-eslint/no-namespace
	namespace Express {
		interface Request {
			/** Set by `loginGuard()` on requests it lets through to the login handler; absent elsewhere. */
			loginGuard?: LoginAttempt;
		}
	}
}


/** The middleware that {@link loginGuard} returns. */
export interface LoginGuard extends RequestHandler {
	/**
	 * Unlocks `username` (an administrator's action). Without `ip`: its username-wide
	 * count and its counts from every address. With `ip`: its username-wide count, its
	 * count from `ip`, and `ip`'s own count across usernames, so that it can log in
	 * from there at once. During a Redis outage the reset is applied in memory and
	 * carried to Redis on recovery.
	 */
	reset(username: string, ip?: string): Promise<void>;
}


/** An attempt let through, waiting for its outcome: what each set counted. */
interface Reservation {
	readonly keys: LoginKeys;
	readonly sides: ReadonlyArray<readonly [LoginKeySet, Counted<CheckSide>]>;
}

type CheckResult =
	| { readonly admitted: true; readonly reservation: Reservation }
	| { readonly admitted: false; readonly waitMs: number };

/** The counts of one guard: its two key sets, run by the counting engine. */
class LoginCounts {
	readonly #engine: CountingEngine;
	readonly #sets: readonly LoginKeySet[];
	readonly #username: LoginKeySet;
	readonly #address: LoginKeySet;
	readonly #config: LoginGuardConfig;

	constructor(config: LoginGuardConfig) {
		this.#config = config;
		this.#username = usernameSet(config);
		this.#address = addressSet(config);
		this.#sets = [this.#username, this.#address];
		this.#engine = new CountingEngine({
			store: config.store,
			subject: 'login',
			sets: this.#sets,
			memory: {
				max: config.memory.max,
				whenFull: 'refuse',
				fullMessage:
					`resilient-session: loginGuard holds ${config.memory.max} counts in memory while Redis is unreachable; ` +
					'new usernames and addresses are refused until some expire (raise `memory.max`)',
				journalFullMessage:
					`resilient-session: loginGuard recorded ${config.memory.max} changes while Redis was unreachable; ` +
					'the oldest are dropped and will not reach Redis (raise `memory.max`)',
			},
			logger: config.logger,
		});
	}

	/** Checks both sets; the two tags live on different slots, so both go out together, in one round trip. */
	async check(username: string, ip: string): Promise<CheckResult> {
		const keys = loginKeys(this.#config.prefix, username, ip);
		const sides = await Promise.all(
			this.#sets.map(async (set) => [set, await this.#engine.run(set.check, keys)] as const),
		);
		if (sides.every(([, side]) => side.value.admitted)) return { admitted: true, reservation: { keys, sides } };
		// Refused by one set: take back what the other ones counted.
		await this.#settle(
			keys,
			sides.filter(([, side]) => side.value.admitted),
			'neutral',
		);
		return { admitted: false, waitMs: Math.max(...sides.map(([, side]) => side.value.waitMs)) };
	}

	/** Records the outcome. A failure was counted by the check already: nothing to send. */
	async settle(reservation: Reservation, outcome: LoginOutcome | 'neutral'): Promise<void> {
		if (outcome !== 'failure') await this.#settle(reservation.keys, reservation.sides, outcome);
	}

	/** The lockouts a failure of `reservation` started. */
	lockouts(reservation: Reservation): Array<Omit<LockoutInfo, 'username' | 'ip'>> {
		return reservation.sides.flatMap(([, side]) =>
			side.value.lockouts.map((lockout) => ({ ...lockout, backend: side.where })),
		);
	}

	/** Applied on Redis, or in memory (journaled during an outage, for Redis to learn on recovery). */
	async reset(username: string, ip: string | undefined): Promise<void> {
		const input = { keys: loginKeys(this.#config.prefix, username, ip ?? ''), withIp: ip !== undefined };
		const sets = input.withIp ? this.#sets : [this.#username];
		await Promise.all(sets.map((set) => this.#engine.run(set.reset, input)));
	}

	/**
	 * Settles what each set counted where it was counted: in memory for a count made
	 * there (journaled if it was, for Redis to learn on recovery), else on Redis.
	 */
	async #settle(
		keys: LoginKeys,
		sides: Reservation['sides'],
		settlement: Settlement,
	): Promise<void> {
		await Promise.all(
			sides.map(([set, side]) => {
				const input = { keys, settlement };
				return side.where === 'memory'
					? this.#engine.inMemory(set.settle, input, side.journaled)
					: this.#engine.run(set.settle, input);
			}),
		);
	}
}


/** 401 and 403 are failures, 2xx and 3xx successes; anything else (400, 5xx, …) was no attempt. */
const outcomeOf = (status: number): LoginOutcome | 'neutral' => {
	if (status === 401 || status === 403) return 'failure';
	if (status >= 200 && status < 400) return 'success';
	return 'neutral';
};

/**
 * Failed-login tracking and brute-force protection, shared by every instance through
 * the store's Redis. Place it before the login handler:
 *
 * ```ts
 * app.post('/login', express.json(), loginGuard({ store }), loginHandler);
 * ```
 *
 * Each attempt is counted per username+address (consecutive failures, growing
 * lockouts), per username across addresses and per address across usernames. Locked
 * attempts get `429` with `Retry-After` and a JSON body before the handler runs. The
 * outcome comes from the response status, or from `req.loginGuard.fail()` /
 * `req.loginGuard.succeed()`. When Redis is unreachable the counts go on in memory,
 * per instance, and go back to Redis on recovery.
 */
export const loginGuard = (options: LoginGuardOptions): LoginGuard => {
	const config = resolveLoginGuardOptions(options);
	const counts = new LoginCounts(config);
	const observers = observersOf(config.store);

	const readUsername = (req: Request): string | undefined => {
		const source = config.username;
		let raw: unknown;
		if (typeof source === 'function') raw = source(req);
		else if (req.body !== null && typeof req.body === 'object') {
			raw = (req.body as Record<string, unknown>)[source];
		}

		if (typeof raw !== 'string') return undefined;
		const username = normalizeUsername(raw);
		return username === '' ? undefined : username;
	};

	const notify = (reservation: Reservation, attempt: LoginAttempt, req: Request): void => {
		const { onLockout } = config;
		if (!onLockout) return;
		for (const lockout of counts.lockouts(reservation)) {
			const report = (error: unknown) =>
				config.logger.error(
					`resilient-session: loginGuard onLockout failed: ${(error as Error)?.message ?? error}`,
					error,
				);
			try {
				const returned = onLockout({ ...lockout, username: attempt.username, ip: attempt.ip }, req);
				if (returned && typeof returned.then === 'function') returned.then(undefined, report);
			} catch (error) {
				report(error);
			}
		}
	};

	/** Records the outcome when the handler ends the response, before the response goes out. */
	const track = (
		req: Request,
		res: Response,
		next: NextFunction,
		username: string,
		ip: string,
		reservation: Reservation,
	): void => {
		let decided: LoginOutcome | undefined;
		let settling: Promise<void> | undefined;
		const attempt: LoginAttempt = Object.freeze({
			username,
			ip,
			fail: () => {
				decided = 'failure';
			},
			succeed: () => {
				decided = 'success';
			},
		});
		req.loginGuard = attempt;

		const settle = (outcome: LoginOutcome | 'neutral'): Promise<void> => {
			observers.loginAttempt(outcome);
			if (outcome === 'failure') {
				for (const { scope } of counts.lockouts(reservation)) observers.lockout(scope);
				notify(reservation, attempt, req);
			}

			return counts.settle(reservation, outcome).catch((error: unknown) => {
				config.logger.error('resilient-session: loginGuard could not record an attempt', error);
			});
		};

		// Held back like express-session holds back its save: once the client has the
		// answer, the next attempt sees this one's outcome, on every instance.
		const end = res.end;
		res.end = function (this: Response, ...args: any[]) {
			settling ??= settle(decided ?? outcomeOf(res.statusCode));
			// What `end` throws (a chunk it cannot send, say) goes to Express, as it would have.
			settling.then(() => end.apply(res, args as Parameters<Response['end']>)).catch(next);
			return res;
		} as Response['end'];

		// A client that hangs up first: the attempt stays counted as a failure (it was
		// reserved as one) unless the handler said it succeeded.
		res.once('close', () => {
			if (!settling && decided === 'success') settling = settle('success');
		});
	};

	const guard = async (req: Request, res: Response, next: NextFunction): Promise<void> => {
		const username = readUsername(req);
		if (username === undefined) {
			res.status(400).json({ error: 'A username is required.' });
			return;
		}

		const ip = await requestAddressKey(req, config.ipv6Subnet);
		const checked = await counts.check(username, ip);
		if (!checked.admitted) {
			observers.loginAttempt('locked');
			const seconds = Math.max(1, Math.ceil(checked.waitMs / 1000));
			res
				.status(429)
				.set({ 'Retry-After': String(seconds), 'Cache-Control': 'no-store' })
				.json({ error: config.message, retryAfter: seconds });
			return;
		}

		track(req, res, next, username, ip, checked.reservation);
		next();
	};

	const middleware = (req: Request, res: Response, next: NextFunction): void => {
		guard(req, res, next).catch(next);
	};

	return Object.assign(middleware, {
		reset: async (username: string, ip?: string): Promise<void> => {
			if (typeof username !== 'string' || normalizeUsername(username) === '') {
				invalidOption('username', 'a non-empty string', username);
			}

			if (ip !== undefined) checkString('ip', ip);
			await counts.reset(
				normalizeUsername(username),
				ip === undefined ? undefined : addressKey(ip, config.ipv6Subnet),
			);
		},
	});
};
