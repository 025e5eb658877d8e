import { createClient, ErrorReply } from 'redis';
import { withDeadline } from './deadline.js';

/**
 * The part of a node-redis client (`createClient`, `createCluster`, `createSentinel`;
 * redis v5 or v6) that the store relies on. Typed structurally so that a client of
 * either major version is accepted.
 */
export interface RedisClient {
	readonly isOpen: boolean;
	readonly isReady?: boolean;
	on(event: string, listener: (...args: any[]) => void): unknown;
	off?(event: string, listener: (...args: any[]) => void): unknown;
	[command: string]: any;
}

const COMMANDS_USED = ['get', 'set', 'expire', 'pExpire', 'del', 'mGet', 'ping', 'on'] as const;

/** Whether `value` looks like a node-redis client, cluster or sentinel. */
export const isRedisClient = (value: unknown): value is RedisClient =>
	value !== null &&
	typeof value === 'object' &&
	'isOpen' in value &&
	COMMANDS_USED.every((name) => typeof (value as Record<string, unknown>)[name] === 'function');

/** Whether `client` is a cluster, which has no single connection to watch. */
export const isCluster = (client: RedisClient): boolean => 'masters' in client;

/**
 * Whether `client` is a plain client (`createClient`), neither a cluster nor a sentinel:
 * the one kind whose `sendCommand(args)` takes the command alone, and sends it on one
 * connection as it is.
 */
export const isStandalone = (client: RedisClient): boolean =>
	!isCluster(client) && typeof client.getMasterNode !== 'function';

/** The parts of a cluster client's slot map (redis v5 and v6) that {@link refreshTopology} uses. */
interface ClusterNode {
	readonly client?: { readonly isReady?: boolean };
}

/**
 * Asks a cluster client to read the cluster's slots again, from a node it is connected to.
 * node-redis does so by itself on `MOVED`, which a dead master never answers: a replica
 * promoted in its place stays unknown (redis v5: for good; v6: until some seconds after the
 * dead node's connection started retrying) and every command for its slots fails meanwhile.
 * Does nothing on a client or a sentinel (which follow their master themselves), nor while
 * no node is connected. Never rejects.
 */
export const refreshTopology = (client: RedisClient): void => {
	if (!isCluster(client)) return;
	const slots = client._slots as { rediscover?: (startWith: unknown) => Promise<unknown> } | undefined;
	const nodes: ClusterNode[] = [...(client.masters ?? []), ...(client.replicas ?? [])];
	const connected = nodes.find((node) => node.client?.isReady)?.client;
	if (typeof slots?.rediscover !== 'function' || !connected) return;
	slots.rediscover(connected).catch(() => {});
};

/**
 * Whether commands sent now can be answered. `isReady` is the honest bit on a client
 * and a sentinel (`isOpen` stays true while reconnecting). A cluster does not clear it
 * when one node dies, so there only deadlines tell.
 */
export const canSend = (client: RedisClient): boolean =>
	isCluster(client) ? client.isOpen : client.isReady ?? client.isOpen;

/**
 * Reply errors that mean "this server cannot serve now", unlike `WRONGTYPE` and the like:
 * loading or busy, a cluster or replica that is not ready, out of memory, a failed disk
 * (`MISCONF`), and credentials that stopped working. Serving from memory beats answering
 * 500 to every request meanwhile. `NOPERM` is not one of them: an ACL refusing one key or
 * command is a refusal of that command, and must never hold the store on memory.
 */
const UNAVAILABLE_REPLY =
	/^(LOADING|BUSY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|READONLY|NOREPLICAS|OOM|MISCONF|NOAUTH|WRONGPASS)\b/;

/** The names node-redis v5 and v6 give their reply error classes. */
const REPLY_CLASSES = new Set(['ErrorReply', 'SimpleError', 'BlobError', 'MultiErrorReply']);

/**
 * Whether `error` is an answer from a working Redis (`WRONGTYPE`, `NOSCRIPT`, …) rather
 * than a sign that Redis cannot be reached. Only the latter trips the fallback.
 * Checked by class name too: a client from another copy of `redis` has its own classes.
 */
export const isReplyError = (error: unknown): boolean =>
	(error instanceof ErrorReply || REPLY_CLASSES.has((error as Error)?.constructor?.name)) &&
	!UNAVAILABLE_REPLY.test((error as Error).message);

const fromCaller = Symbol('resilient-session.from-caller');

/**
 * Marks an error raised by the caller's own code (a serializer that cannot parse a
 * session, say): it reaches the caller, and trips no fallback, as Redis is fine.
 */
export const markCallerError = <E>(error: E): E => {
	if (error !== null && typeof error === 'object') (error as Record<symbol, unknown>)[fromCaller] = true;
	return error;
};

/** Whether `error` means Redis cannot serve: not a reply error, not the caller's own error. */
export const isRedisFailure = (error: unknown): boolean =>
	!isReplyError(error) && !(error as Record<symbol, unknown> | undefined)?.[fromCaller];

export interface OwnedClientOptions {
	readonly url: string;
	readonly connectTimeoutMs: number;
	readonly reconnectMaxDelayMs: number;
	readonly onError: (error: Error) => void;
	/** Invalidation of the store's warm copies (see `createTracking`); needs RESP3. */
	readonly tracking?: object;
}

/**
 * Exponential backoff from 50 ms up to `maxDelayMs`, plus up to 100 ms of jitter so
 * that many instances do not reconnect in step. It never gives up: the store keeps
 * serving from memory meanwhile. node-redis's default strategy gives up on a socket
 * timeout, which would leave the store on memory for good.
 */
export const reconnectDelay = (retries: number, maxDelayMs: number): number =>
	Math.min(50 * 2 ** Math.min(retries, 16), maxDelayMs) + Math.floor(Math.random() * 100);

/**
 * Creates the client a store owns when it is given a URL: no offline queue (a command
 * sent while disconnected fails at once instead of waiting), no per-command timeout of
 * node-redis's own (the store's deadline covers every command), an `'error'` listener (an
 * unhandled one would crash the process), a reconnect strategy that never gives up, and
 * with `tracking`, RESP3 and `CLIENT TRACKING` on every connection. Connecting starts in the background; nothing waits for it.
 */
export const createOwnedClient = (options: OwnedClientOptions): RedisClient => {
	const client = createClient({
		url: options.url,
		disableOfflineQueue: true,
		// node-redis 6 arms a 5 s `AbortSignal.timeout` on every command by default (v5: none).
		// Every command of the store already runs under its own, shorter deadline (see
		// deadline.ts), so that signal never fires first; it only costs each command a timer,
		// an abort signal and two listeners. What it did besides, drop a command still waiting
		// to be written to a socket that stopped draining, the store does by dropping the
		// connection: a deadline missed on the request path trips the fallback, which
		// destroys a stalled connection and its queue with it (`resetConnection`), as node-redis 5 needs anyway.
		commandOptions: { timeout: 0 },
		...(options.tracking && { RESP: 3, clientSideCache: options.tracking as never }),
		socket: {
			connectTimeout: options.connectTimeoutMs,
			reconnectStrategy: (retries: number) => reconnectDelay(retries, options.reconnectMaxDelayMs),
		},
	});
	client.on('error', options.onError);
	connectInBackground(client);
	return client as unknown as RedisClient;
};

/**
 * Starts connecting `client` without waiting: a standalone `connect()` never settles while
 * Redis is down. The client is open when this returns, so a `destroy()` right after stops it.
 */
export const connectInBackground = (client: RedisClient): void => {
	if (client.isOpen) return;
	// Failures are reported through the client's 'error' event and retried by its
	// reconnect strategy; a rejected connect() here only means the client was closed.
	(client.connect() as Promise<unknown>).catch(() => {});
};

/** A stalled connection keeps TCP open and answers nothing: drop it and connect anew (an open client only). */
export const resetConnection = (client: RedisClient): void => {
	if (!client.isOpen) return;
	client.destroy();
	connectInBackground(client);
};

/**
 * Closes a client the store created: gracefully within `timeoutMs` when it is ready, else
 * at once. Even a client that is not open may have a reconnection under way: `destroy()`
 * stops it. Never rejects.
 */
export const closeOwnedClient = async (client: RedisClient, timeoutMs: number): Promise<void> => {
	const destroy = () => {
		try {
			client.destroy();
		} catch {}
	};

	if (client.isReady) await withDeadline(client.close() as Promise<void>, timeoutMs, 'close').catch(destroy);
	else destroy();
};
