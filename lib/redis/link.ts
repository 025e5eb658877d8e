import type { RedisClient } from './client.js';
import type { Failover } from './failover.js';

/** What a feature built on a store needs to reach its Redis. */
export interface RedisLink {
	readonly failover: Failover;
	readonly client: RedisClient;
}

/**
 * The link of every store, by store, kept out of the store's public surface. It lives on
 * `globalThis` under a registered symbol so that a store made by one copy of the package
 * (the CommonJS build, say) is linked for the other copy (the ES module build) too.
 * `null`: a store without Redis.
 */
const LINKS = Symbol.for('resilient-session.redis-links');

const links: WeakMap<object, RedisLink | null> = ((globalThis as Record<symbol, unknown>)[LINKS] ??= new WeakMap<
	object,
	RedisLink | null
>()) as WeakMap<object, RedisLink | null>;

/** Registers `store`'s Redis (`undefined`: a store without Redis). Called once, by the store. */
export const linkStore = (store: object, link: RedisLink | undefined): void => {
	links.set(store, link ?? null);
};

/** Whether `store` registered itself (is a store of this package, from any copy of it). */
export const isLinkedStore = (store: object): boolean => links.has(store);

/** The Redis of `store`, or `undefined` on a store without Redis. */
export const redisLinkOf = (store: object): RedisLink | undefined => links.get(store) ?? undefined;
