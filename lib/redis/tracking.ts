import * as redis from 'redis';

/** What the store learns from Redis's invalidation messages. */
export interface TrackingListener {
	/** Another connection changed, destroyed or expired `key` (`null`: every key, as after `FLUSHALL`). */
	invalidated(key: string | null): void;
}

type CacheBase = new () => {
	trackingOn(): string[];
	handleCache(...args: unknown[]): Promise<unknown>;
	invalidate(key: unknown): void;
	onError(): void;
	onClose(): void;
	clear(resetStats?: boolean): void;
};

/** node-redis 5.1+ exports the client-side cache; 5.0 has none. */
const BasicClientSideCache = (redis as unknown as { BasicClientSideCache?: CacheBase }).BasicClientSideCache;

/**
 * Server-assisted invalidation (RESP3 `CLIENT TRACKING`) for the warm copies the store
 * keeps in memory: Redis tells this connection when a key it read was changed by any
 * other connection, and the store drops its copy.
 *
 * Built on node-redis's client-side cache hook rather than its `emitInvalidate` option
 * for two reasons that option cannot meet:
 * - tracking must be `NOLOOP`: the store's own writes would otherwise invalidate the copy
 *   it has just written;
 * - the `CLIENT TRACKING` command must be part of the connection's handshake, so that it
 *   is on again after every reconnection before any command runs.
 * node-redis's own cache (replies kept by command) is not used: every command goes to
 * Redis, and the store's warm copies are the only cache.
 *
 * @returns the value for `createClient`'s `clientSideCache`, or `undefined` when the
 * installed node-redis has no client-side cache (before 5.1): the store then works
 * without coherent warm copies.
 */
export const createTracking = (listener: TrackingListener): object | undefined => {
	if (!BasicClientSideCache) return undefined;
	class WarmCopyTracking extends BasicClientSideCache {
		override trackingOn(): string[] {
			return ['CLIENT', 'TRACKING', 'ON', 'NOLOOP'];
		}

		/** Every command goes to Redis; its reply is not kept. */
		override async handleCache(
			_client: unknown,
			parser: { preserve?: unknown },
			send: () => Promise<unknown>,
			transformReply?: (reply: unknown, preserve: unknown, typeMapping: unknown) => unknown,
			typeMapping?: unknown,
		): Promise<unknown> {
			const reply = await send();
			return transformReply ? transformReply(reply, parser.preserve, typeMapping) : reply;
		}

		override invalidate(key: unknown): void {
			listener.invalidated(key === null ? null : String(key));
		}

		// Nothing cached, nothing to clear: the store learns of a dropped connection through
		// its failover, and drops its copies on recovery.
		override onError(): void {}
		override onClose(): void {}
		override clear(): void {}
	}

	return new WarmCopyTracking();
};
