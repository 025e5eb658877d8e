import type { Request } from 'express';
import type { Ticket } from './counter-store.js';

/** How many requests may be in a limit's middleware before `give` first looks for finished ones. */
export const TICKETS_SWEPT_FROM = 1_024;

/**
 * Each request's ticket of one limit, while the request is in the limit's middleware: from
 * its start to the call of its `next` or of the handler of refused requests, whichever
 * comes. In a `Map` of the limit's own (two limits on one route each have theirs), whose
 * entries go at a moment known in advance. Not on the request: Express gives every request
 * a prototype of its application's own, after which V8 makes a new hidden class for each
 * property added to it (see `markLoaded`). Nor in a `WeakMap` keyed by requests, whose
 * entries the garbage collector handles at a cost that showed in the rate-limited benchmark.
 */
export class Tickets {
	readonly #held = new Map<Request, Ticket>();
	#sweepAt = TICKETS_SWEPT_FROM;

	give(request: Request, ticket: Ticket): void {
		this.#held.set(request, ticket);
		if (this.#held.size >= this.#sweepAt) this.#sweep();
	}

	of(request: Request): Ticket | undefined {
		return this.#held.get(request);
	}

	/** The request's ticket, given back: the request is out of the middleware. */
	takeBack(request: Request): Ticket | undefined {
		const ticket = this.#held.get(request);
		this.#held.delete(request);
		return ticket;
	}

	/** How many requests hold a ticket. */
	get size(): number {
		return this.#held.size;
	}

	/**
	 * Drops the tickets of requests whose response is over (ended, or its connection gone)
	 * though they never left the middleware: an option function (`skip`, `keyGenerator`,
	 * `cost`, a limit) that never settles would otherwise keep each such request, with its
	 * response and connection, for good. Runs again once twice as many requests hold a
	 * ticket as were left: a constant cost per request, amortized.
	 */
	#sweep(): void {
		for (const [request, ticket] of this.#held) {
			const response = ticket.response;
			if (!response || response.writableEnded || response.destroyed) this.#held.delete(request);
		}

		this.#sweepAt = Math.max(TICKETS_SWEPT_FROM, 2 * this.#held.size);
	}
}
