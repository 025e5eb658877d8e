import type {
	ClientRateLimitInfo,
	IncrementResponse,
	Options as ExpressRateLimitOptions,
	Store as CounterStore,
} from 'express-rate-limit';
import type { Request, Response } from 'express';
import { CountingEngine } from '../counting/engine.js';
import { isPromiseLike, type MaybePromise } from '../maybe-async.js';
import type { RateLimitConfig } from './options.js';
import { type Counter, type Counters, fits, type WindowCount, type WindowSet, windowSet } from './window-set.js';

/** What one request is counted as, from its key to its take-back. */
export interface Ticket {
	/** The request and its response (none for a count made outside the middleware). */
	readonly request: Request | undefined;
	readonly response: Response | undefined;
	/** Its key, once the key generator gave it (see `EngineCounterStore.expect`). */
	key: string | undefined;
	/** What the request uses of the limit before it runs. */
	cost: number;
	/** The limit in force of each window, in the order of `config.windows`. */
	limits: readonly number[];
	/** The request's address key and its ceiling in each window: none with a custom `keyGenerator`. */
	address: { readonly key: string; readonly ceilings: readonly number[] } | undefined;
	/** The request's counters once its key is known: its windows, then its address's. */
	counters: Counters;
	/** The counts after the request (or after its last charge), as `counters`. */
	counts: readonly (readonly WindowCount[])[];
	/** Whether the request was let through (`undefined`: not counted, for instance skipped). */
	admitted: boolean | undefined;
	/** The cost the request took, to give back when express-rate-limit takes it back. */
	taken: number;
	/** The draft-8 header values set for the request, to replace them after a charge. */
	draft8: { readonly policies: readonly string[]; readonly limit: string } | undefined;
}

export const newTicket = (request?: Request, response?: Response): Ticket => ({
	request,
	response,
	key: undefined,
	cost: 1,
	limits: [],
	address: undefined,
	counters: [],
	counts: [],
	admitted: undefined,
	taken: 0,
	draft8: undefined,
});

/** express-rate-limit's answer for a request that is let through, and one that is refused (its `limit` is 1). */
const ADMITTED = 1;
const REFUSED = 2;

/**
 * express-rate-limit's store interface on the counting engine: express-rate-limit keeps
 * the middleware (skip, key, counting each request once, taking failed requests back,
 * calling the handler), the engine counts, in Redis through the store's failover or in
 * memory.
 *
 * express-rate-limit hands a store the key alone, and counts one hit per request, judged
 * by `hits > limit`: it can neither weigh a request, nor check several windows, nor give
 * back the cost of one request in particular. So each request carries a {@link Ticket}
 * (its cost, the limits of its windows, its address's ceilings), handed over by
 * {@link expect} once its key is known; `increment` takes the ticket waiting under the key
 * it is given. This store does the judging (in Redis's script), and tells
 * express-rate-limit the verdict as 1 hit (admitted) or 2 (refused) against a limit of 1.
 *
 * Not an `AsyncLocalStorage` around the middleware: on Node 20 the first one entered turns
 * on async hooks for every promise of the process, which cost every request of the
 * server, rate-limited or not, about a tenth of its CPU in the benchmark.
 */
export class EngineCounterStore implements CounterStore {
	/** Counts are shared by every instance (express-rate-limit's double-count check uses it). */
	readonly localKeys = false;
	readonly prefix: string;
	/** Tickets of requests whose key is known, by key, until they are counted (see {@link expect}). */
	readonly #waiting = new Map<string, Ticket[]>();
	readonly #engine: CountingEngine;
	readonly #set: WindowSet;
	readonly #config: RateLimitConfig;
	readonly #prepare: (ticket: Ticket) => MaybePromise<void>;

	/** `prepare`: sets a request's cost and limits on its ticket, before it is counted. */
	constructor(config: RateLimitConfig, prepare: (ticket: Ticket) => MaybePromise<void>) {
		this.#prepare = prepare;
		const { store, prefix, maxMemoryKeys } = config;
		this.prefix = prefix;
		this.#config = config;
		this.#set = windowSet(config.windows.map((window) => window.windowMs));
		this.#engine = new CountingEngine({
			store,
			subject: 'rate limit',
			sets: [this.#set],
			memory: {
				max: maxMemoryKeys,
				whenFull: 'drop-oldest',
				fullMessage:
					`resilient-session: rateLimit() counts ${maxMemoryKeys} clients in memory (\`maxMemoryKeys\`); ` +
					'the counts of the least recently seen are dropped',
				journalFullMessage:
					`resilient-session: rateLimit() recorded ${maxMemoryKeys} changes while Redis was unreachable ` +
					'(`maxMemoryKeys`); the oldest are dropped and will not reach Redis',
			},
			logger: config.logger,
		});
	}

	/** Whether Redis is out (never, on a store without Redis). */
	get inOutage(): boolean {
		return this.#engine.inOutage;
	}

	init(_options: ExpressRateLimitOptions): void {}

	/**
	 * Hands over the ticket of a request whose key express-rate-limit has just computed: it
	 * counts that key next. Called as the key generator returns; express-rate-limit calls
	 * `increment` a fixed number of microtask turns later, with nothing in between that
	 * could stop it, so the tickets of requests with the same key are counted in the order
	 * in which their keys were known, each by its own request.
	 */
	expect(key: string, ticket: Ticket): void {
		ticket.key = key;
		const queue = this.#waiting.get(key);
		if (queue) queue.push(ticket);
		else this.#waiting.set(key, [ticket]);
	}

	async increment(key: string): Promise<IncrementResponse> {
		const ticket = this.#next(key) ?? this.#ticketOf();
		// Here rather than in the key generator, so that a custom one reaches
		// express-rate-limit as given (its checks read it), and only counted requests are
		// weighed. A cost function that throws fails the request (express-rate-limit
		// passes a store's error to `next`).
		if (ticket.request && ticket.response) {
			const prepared = this.#prepare(ticket);
			if (isPromiseLike(prepared)) await prepared;
		}

		ticket.key = key;
		ticket.counters = this.#countersOf(key, ticket);
		const { cost, counters } = ticket;
		const { admitted, counts, takenBy } = (await this.#engine.run(this.#set.take, { counters, cost })).value;
		// On a cluster, the counters of another hash tag may have taken the cost of a
		// request that one tag refused: given back at once (a refused request uses nothing).
		if (takenBy.length > 0) await this.#engine.run(this.#set.add, { counters: takenBy, amount: -cost });
		ticket.counts = counts;
		ticket.admitted = admitted;
		ticket.taken = admitted ? cost : 0;
		// No resetTime: express-rate-limit would skip a take-back after it; `decrement`
		// skips the windows that ended, each on its own.
		return { totalHits: admitted ? ADMITTED : REFUSED, resetTime: undefined };
	}

	/**
	 * express-rate-limit's take-back, which hands the store the key alone: not used (its
	 * `skipFailedRequests` and `skipSuccessfulRequests` are off; rateLimit() takes a
	 * request back itself, by its ticket, with {@link takeBack}).
	 */
	async decrement(_key: string): Promise<void> {}

	/** Gives back the cost `ticket`'s request took, in the windows that have not ended since. */
	async takeBack(ticket: Ticket): Promise<void> {
		if (ticket.taken === 0) return;
		const amount = ticket.taken;
		ticket.taken = 0;
		const now = Date.now();
		const counters = ticket.counters.map((group, g) => group.filter((_counter, i) => ticket.counts[g]![i]!.resetAt > now));
		await this.#engine.run(this.#set.add, { counters, amount: -amount });
	}

	/**
	 * Adds `amount` after the fact to every counter of `ticket`'s request, whatever the
	 * limits: what it counts was already spent. A refund (negative, never below 0) goes
	 * only to the windows that have not ended since the request was counted: it must not
	 * come out of a later window's budget.
	 */
	async charge(ticket: Ticket, amount: number): Promise<void> {
		let { counters } = ticket;
		if (amount < 0) {
			const now = Date.now();
			counters = counters.map((group, g) => group.filter((_counter, i) => ticket.counts[g]![i]!.resetAt > now));
			if (counters.every((group) => group.length === 0)) return;
		}

		const counts = (await this.#engine.run(this.#set.add, { counters, amount })).value;
		// The counts of the counters left out (their window ended) stay as they were.
		ticket.counts = ticket.counters.map((group, g) => {
			const fresh = [...counts[g]!];
			return group.map((counter, i) => (counters[g]!.includes(counter) ? fresh.shift()! : ticket.counts[g]![i]!));
		});
	}

	async resetKey(key: string): Promise<void> {
		await this.#engine.run(this.#set.reset, this.#ownCounters(key, []));
	}

	/** The count of `key` in its first window (see `windows`). */
	async get(key: string): Promise<ClientRateLimitInfo | undefined> {
		const [[counted]] = (await this.#engine.run(this.#set.read, [this.#ownCounters(key, [])])).value as [[WindowCount]];
		return counted.count > 0 ? { totalHits: counted.count, resetTime: new Date(counted.resetAt) } : undefined;
	}

	/** Leaves the store's recovery (express-rate-limit's `shutdown`). */
	shutdown(): void {
		this.#engine.close();
	}

	/** Takes `ticket` off the queue of its key if it still waits there (its request was not counted). */
	withdraw(ticket: Ticket): void {
		const queue = ticket.key === undefined ? undefined : this.#waiting.get(ticket.key);
		const index = queue?.indexOf(ticket) ?? -1;
		if (index === -1) return;
		queue!.splice(index, 1);
		if (queue!.length === 0) this.#waiting.delete(ticket.key!);
	}

	/** The ticket waiting under `key`, taken off the queue. */
	#next(key: string): Ticket | undefined {
		const queue = this.#waiting.get(key);
		if (!queue) return undefined;
		const ticket = queue.shift();
		if (queue.length === 0) this.#waiting.delete(key);
		return ticket;
	}

	/** A ticket for a request counted outside the middleware: cost 1, the limits as numbers. */
	#ticketOf(): Ticket {
		const ticket = newTicket();
		ticket.limits = this.#config.windows.map((window) => (typeof window.limit === 'number' ? window.limit : 0));
		return ticket;
	}

	/**
	 * The counters of `key`: one key per window, `<prefix><key>` for a single window (as
	 * ever), `<prefix>{<key>}:<windowMs>` for several, whose hash tag keeps them in one slot
	 * (one script on a cluster).
	 */
	#ownCounters(key: string, limits: readonly number[]): Counter[] {
		const { windows } = this.#config;
		return windows.map((window, i) => ({
			key: windows.length === 1 ? this.prefix + key : `${this.prefix}{${key}}:${window.windowMs}`,
			windowMs: window.windowMs,
			limit: limits[i] ?? 0,
		}));
	}

	#countersOf(key: string, ticket: Ticket): Counters {
		const own = this.#ownCounters(key, ticket.limits);
		const { address } = ticket;
		if (!address) return [own];
		const { windows } = this.#config;
		const ceilings = windows.map((window, i) => ({
			key:
				windows.length === 1
					? `${this.prefix}addr:${address.key}`
					: `${this.prefix}addr:{${address.key}}:${window.windowMs}`,
			windowMs: window.windowMs,
			limit: address.ceilings[i]!,
		}));
		return [own, ceilings];
	}
}

/** What the headers and `req.rateLimit` describe: the window closest to its limit. */
export interface Shown {
	/** Index of the window in `config.windows`. */
	readonly window: number;
	readonly limit: number;
	readonly used: number;
	readonly remaining: number;
	readonly resetAt: number;
	/** No request can be let through until `resetAt` (for `charge`: the budget is spent). */
	readonly limited: boolean;
}

/**
 * The window of `ticket`'s request that is closest to its limit: the one with the least
 * left (of two as close, the one that resets later). For a refused request, the window
 * that refused it (of several, the one that resets last: the client may retry only
 * then). A refusal by the address's ceiling shows nothing left until the ceiling resets.
 * `cost`: what the next request would take, to tell which windows refuse it.
 */
export const closestWindow = (ticket: Ticket, cost: number): Shown => {
	const [own = [], address = []] = ticket.counters;
	const [ownCounts = [], addressCounts = []] = ticket.counts;
	// Plain loops: this runs on every counted request, and most have one window.
	let shown = -1;
	let refusing = false;
	for (let i = 0; i < own.length; i++) {
		const { limit } = own[i]!;
		const { count, resetAt } = ownCounts[i]!;
		const refuses = !fits(count, cost, limit);
		if (shown === -1) {
			shown = i;
			refusing = refuses;
			continue;
		}

		const current = ownCounts[shown]!;
		if (refusing || refuses) {
			// The refusing window that resets last.
			if (refuses && (!refusing || resetAt > current.resetAt)) {
				shown = i;
				refusing = true;
			}

			continue;
		}

		// The window with the least left; of two as close, the one that resets later.
		const remaining = Math.max(0, limit - count);
		const shownRemaining = Math.max(0, own[shown]!.limit - current.count);
		if (remaining < shownRemaining || (remaining === shownRemaining && resetAt > current.resetAt)) shown = i;
	}

	const { limit } = own[shown]!;
	const { count: used, resetAt } = ownCounts[shown]!;
	let ceilingResetAt = 0;
	for (let i = 0; i < address.length; i++) {
		const counted = addressCounts[i]!;
		if (!fits(counted.count, cost, address[i]!.limit)) ceilingResetAt = Math.max(ceilingResetAt, counted.resetAt);
	}

	// A refusal by the address's ceiling shows nothing left until the ceiling resets.
	if (ceilingResetAt > 0) {
		return {
			window: shown,
			limit,
			used,
			remaining: 0,
			resetAt: Math.max(ceilingResetAt, refusing ? resetAt : 0),
			limited: true,
		};
	}

	return { window: shown, limit, used, remaining: Math.max(0, limit - used), resetAt, limited: refusing };
};
