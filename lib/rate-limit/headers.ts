import { createHash } from 'node:crypto';
import type { Request, Response } from 'express';
import type { ValueDeterminingMiddleware } from 'express-rate-limit';
import type { RateLimitConfig, WindowConfig } from './options.js';
import { closestWindow, type Shown, type Ticket } from './counter-store.js';
import { allKnown, type MaybePromise, whenKnown } from '../maybe-async.js';

/** What `req.rateLimit.charge(amount)` resolves with. */
export interface ChargeResult {
	/** What is left in the window closest to its limit (0 once spent). */
	readonly remaining: number;
	/** The budget is spent: the next request is refused. */
	readonly limited: boolean;
}

/**
 * `req.rateLimit` (or the `requestPropertyName`): express-rate-limit's fields, of the
 * window closest to its limit, and `charge`.
 */
export interface BudgetInfo {
	/** The limit of the window closest to it. */
	limit: number;
	/** What was used of it, this request included (when it was let through). */
	used: number;
	/** What is left of it. */
	remaining: number;
	/** When it resets. */
	resetTime: Date;
	/** The key the request was counted under. */
	key: string;
	/**
	 * Adds `amount` after the fact to the request's windows (and its address's ceiling),
	 * for example the tokens a model generated: atomic, shared by every instance, and
	 * counted in memory during an outage like every count. It is never refused (it
	 * counts what was already spent) and may take a window past its limit, so that the
	 * next request is refused. A negative `amount` gives back, never below 0. Updates
	 * `used` and `remaining` here too, and the rate limit headers when the response has
	 * not started yet.
	 * @throws TypeError when `amount` is not a finite number
	 */
	charge(amount: number): Promise<ChargeResult>;
}

/** express-rate-limit's draft-8 partition key (it does not export it): 12 hex digits of the key's SHA-256, in base64. */
const hashPartitionKey = (key: string): string =>
	Buffer.from(createHash('sha256').update(key).digest('hex').slice(0, 12)).toString('base64');

/** Partition keys remembered, for the clients seen last (a session's requests come one after another). */
const PARTITION_KEYS_KEPT = 1_024;
const partitionKeys = new Map<string, string>();

/**
 * {@link hashPartitionKey}, remembered: a SHA-256 costs a request more than every other
 * header of the rate limit together. Forgotten all at once when full, which costs less
 * than keeping an order of use on every request.
 */
const partitionKey = (key: string): string => {
	let pk = partitionKeys.get(key);
	if (pk === undefined) {
		if (partitionKeys.size >= PARTITION_KEYS_KEPT) partitionKeys.clear();
		pk = hashPartitionKey(key);
		partitionKeys.set(key, pk);
	}

	return pk;
};

/** express-rate-limit's default policy name, `${limit}-in-${window}` ('100-in-1min'). */
const defaultName = (limit: number, windowMs: number): string => {
	const seconds = windowMs / 1000;
	const minutes = seconds / 60;
	const hours = minutes / 60;
	const days = hours / 24;
	const duration =
		seconds < 60
			? `${seconds}sec`
			: minutes < 60
				? `${minutes}min`
				: hours < 24
					? `${hours}hr${hours > 1 ? 's' : ''}`
					: `${days}day${days > 1 ? 's' : ''}`;
	return `${limit}-in-${duration}`;
};

const secondsUntil = (at: number): number => Math.max(0, Math.ceil((at - Date.now()) / 1000));

/** A draft-8 name is a quoted string: its quotes and backslashes escaped. */
const quoted = (name: string): string =>
	name.includes('"') || name.includes('\\') ? `"${name.replace(/[\\"]/g, '\\$&')}"` : `"${name}"`;

/** The last default name made, per window: its limit rarely changes from one request to the next. */
const lastDefaultNames = new WeakMap<WindowConfig, { readonly limit: number; readonly name: string }>();

const defaultNameOf = (window: WindowConfig, limit: number): string => {
	const last = lastDefaultNames.get(window);
	if (last?.limit === limit) return last.name;
	const name = defaultName(limit, window.windowMs);
	lastDefaultNames.set(window, { limit, name });
	return name;
};

const nameOf = (window: WindowConfig, limit: number, request: Request, response: Response): MaybePromise<string> => {
	const { identifier } = window;
	if (identifier === undefined) return defaultNameOf(window, limit);
	return typeof identifier === 'function' ? (identifier as ValueDeterminingMiddleware<string>)(request, response) : identifier;
};

/**
 * Sets the rate limit headers of `config.standardHeaders` and `legacyHeaders` for
 * `shown`, the window closest to its limit. Written here rather than left to
 * express-rate-limit, whose headers describe one window and one count of hits: draft-8
 * lists each window as a policy of its own in `RateLimit-Policy` (a structured list) and
 * `RateLimit` gives the closest one; draft-6, draft-7 and the legacy headers describe
 * the closest one. Draft-8 quotas are integers: a fractional limit or remaining is
 * rounded down. The same formats as express-rate-limit's otherwise.
 */
export const setHeaders = (
	request: Request,
	response: Response,
	config: RateLimitConfig,
	ticket: Ticket,
	key: string,
	shown: Shown,
): MaybePromise<void> => {
	if (response.headersSent) return;
	const { windows, standardHeaders } = config;
	const window = windows[shown.window]!;
	// Every format's fields are whole numbers: a fractional limit or remaining is rounded down.
	const [whole, left] = [Math.floor(shown.limit), Math.floor(shown.remaining)];
	if (config.legacyHeaders) {
		response.setHeader('X-RateLimit-Limit', String(whole));
		response.setHeader('X-RateLimit-Remaining', String(left));
		response.setHeader('Date', new Date().toUTCString());
		response.setHeader('X-RateLimit-Reset', String(Math.ceil(shown.resetAt / 1000)));
	}

	const windowSeconds = Math.ceil(window.windowMs / 1000);
	const reset = secondsUntil(shown.resetAt);
	if (standardHeaders === 'draft-6') {
		response.setHeader('RateLimit-Policy', `${whole};w=${windowSeconds}`);
		response.setHeader('RateLimit-Limit', String(whole));
		response.setHeader('RateLimit-Remaining', String(left));
		response.setHeader('RateLimit-Reset', String(reset));
	} else if (standardHeaders === 'draft-7') {
		response.setHeader('RateLimit-Policy', `${whole};w=${windowSeconds}`);
		response.setHeader('RateLimit', `limit=${whole}, remaining=${left}, reset=${reset}`);
	} else if (standardHeaders === 'draft-8') {
		const names = allKnown(windows.map((each, i) => nameOf(each, ticket.limits[i]!, request, response)));
		return whenKnown(names, (known) => setDraft8(response, config, ticket, key, shown, known));
	}
};

/** The draft-8 headers of {@link setHeaders}, once the windows' names are known. */
const setDraft8 = (
	response: Response,
	config: RateLimitConfig,
	ticket: Ticket,
	key: string,
	shown: Shown,
	names: readonly string[],
): void => {
	if (response.headersSent) return;
	const { windows } = config;
	const left = Math.floor(shown.remaining);
	const reset = secondsUntil(shown.resetAt);
	const pk = partitionKey(key);
	const policies = windows.map(
		(each, i) =>
			`${quoted(names[i]!)}; q=${Math.floor(ticket.limits[i]!)}; w=${Math.ceil(each.windowMs / 1000)}; pk=:${pk}:`,
	);
	const limit = `${quoted(names[shown.window]!)}; r=${left}; t=${reset}`;
	// Set again after a charge: this limit's values replace its earlier ones, and
	// those of other limits on the same response stay.
	const earlier = ticket.draft8;
	if (earlier) {
		withoutValues(response, 'RateLimit-Policy', earlier.policies);
		withoutValues(response, 'RateLimit', [earlier.limit]);
	}

	// A single policy as a string: Node writes a header given as an array value by value.
	response.append('RateLimit-Policy', policies.length === 1 ? policies[0]! : policies);
	response.append('RateLimit', limit);
	ticket.draft8 = { policies, limit };
};

/** Removes `values` from the header `name` of `response`, keeping any other. */
const withoutValues = (response: Response, name: string, values: readonly string[]): void => {
	const current = response.getHeader(name);
	const kept = (Array.isArray(current) ? current : current === undefined ? [] : [String(current)]).filter(
		(value) => !values.includes(value),
	);
	if (kept.length === 0) response.removeHeader(name);
	else response.setHeader(name, kept);
};

/** `Retry-After` of a refused request: `retryAfter`, else the seconds until the refusing window resets. */
export const setRetryAfter = async (
	request: Request,
	response: Response,
	config: RateLimitConfig,
	shown: Shown,
): Promise<void> => {
	if (response.headersSent) return;
	const { retryAfter } = config;
	const seconds =
		retryAfter === undefined
			? secondsUntil(shown.resetAt)
			: typeof retryAfter === 'function'
				? await retryAfter(request, response)
				: retryAfter;
	response.setHeader('Retry-After', String(seconds));
};

/** Sets `info`'s fields to `shown`. */
const show = (info: Omit<BudgetInfo, 'charge'>, shown: Shown) => {
	info.limit = shown.limit;
	info.used = shown.used;
	info.remaining = shown.remaining;
	info.resetTime = new Date(shown.resetAt);
};

/**
 * The `req.rateLimit` of a request counted with `ticket` under `key`. `charge` runs
 * through `charger`, keeps the fields up to date and tells `charged` (which sets the
 * headers again, if the response has not started yet).
 */
export const budgetInfo = (
	ticket: Ticket,
	key: string,
	shown: Shown,
	charger: (ticket: Ticket, amount: number) => Promise<void>,
	charged: (shown: Shown) => MaybePromise<void>,
): BudgetInfo => {
	const info = { key } as BudgetInfo;
	show(info, shown);
	info.charge = async (amount: number) => {
		if (typeof amount !== 'number' || !Number.isFinite(amount)) {
			throw new TypeError(`resilient-session: charge(amount): \`amount\` must be a finite number; got ${String(amount)}`);
		}

		if (amount !== 0) await charger(ticket, amount);
		// `limited`: spent, so that the next request, even of cost 0, is refused.
		const now = closestWindow(ticket, 0);
		show(info, now);
		await charged(now);
		return { remaining: now.remaining, limited: now.limited };
	};

	return info;
};
