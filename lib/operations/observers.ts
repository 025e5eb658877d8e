import type { LockoutScope } from '../login-guard/options.js';
import type { CommandObserver } from '../redis/failover.js';
import { redisLinkOf } from '../redis/link.js';

/** What a rate limit decided about a request: let through (skipped ones included), or refused. */
export type RateLimitOutcome = 'allowed' | 'limited';

/**
 * What a login attempt turned out to be: `locked` was refused before the login handler
 * ran; `neutral` got an answer that is neither a success nor a failure (400, 5xx, …).
 */
export type LoginAttemptOutcome = 'success' | 'failure' | 'locked' | 'neutral';

/**
 * What the package tells whoever watches a store (its metrics): how long each Redis
 * command of the store took (sessions, counts, probes, write-back; told by the failover),
 * and what its rate limits and login guards decided. Every method is called on the
 * request path, so an observer only counts: it does no I/O and never throws.
 */
export interface StoreObserver extends CommandObserver {
	/** A rate limit on the store decided about a request. */
	rateLimit(outcome: RateLimitOutcome): void;
	/** A login guard on the store settled an attempt. */
	loginAttempt(outcome: LoginAttemptOutcome): void;
	/** A failed login started a lockout on `scope`. */
	lockout(scope: LockoutScope): void;
}

/**
 * The observers of one store, told as one. Without any, each call is a loop over
 * nothing: features report unconditionally.
 */
export class Observers implements StoreObserver {
	#list: readonly StoreObserver[] = [];

	/** Adds `observer`; returns the function that removes it. */
	add(observer: StoreObserver): () => void {
		this.#list = [...this.#list, observer];
		return () => {
			this.#list = this.#list.filter((other) => other !== observer);
		};
	}

	redisCommand(operation: string, seconds: number): void {
		for (const observer of this.#list) observer.redisCommand(operation, seconds);
	}

	rateLimit(outcome: RateLimitOutcome): void {
		for (const observer of this.#list) observer.rateLimit(outcome);
	}

	loginAttempt(outcome: LoginAttemptOutcome): void {
		for (const observer of this.#list) observer.loginAttempt(outcome);
	}

	lockout(scope: LockoutScope): void {
		for (const observer of this.#list) observer.lockout(scope);
	}
}

/**
 * The observers of every store, by store. Like the stores' links (see `redis/link.ts`),
 * they live on `globalThis` under a registered symbol, so that a rate limit made by the
 * CommonJS build and metrics made by the ES module build share them.
 */
const OBSERVERS = Symbol.for('resilient-session.observers');

const byStore: WeakMap<object, Observers> = ((globalThis as Record<symbol, unknown>)[OBSERVERS] ??= new WeakMap<
	object,
	Observers
>()) as WeakMap<object, Observers>;

/**
 * The observers of `store`, created on first use and handed to its failover, which
 * times every Redis command. Middlewares take them when they are built; metrics added
 * later report what they see from then on.
 */
export const observersOf = (store: object): Observers => {
	let observers = byStore.get(store);
	if (!observers) {
		observers = new Observers();
		byStore.set(store, observers);
		const failover = redisLinkOf(store)?.failover;
		if (failover) failover.observer = observers;
	}

	return observers;
};
