/**
 * The stores the benchmark compares, built the way their users build them, and the
 * session every scenario logs in with (about 260 bytes once serialized).
 *
 * - `resilient`: ResilientStore on Redis (it creates its own client from the URL).
 * - `connect-redis`: connect-redis 9 `RedisStore` on a node-redis 6 client.
 * - `memorystore`: memorystore, the in-process store ResilientStore falls back to.
 * - `express-memory`: express-session's own MemoryStore.
 * - `resilient-fallback`: ResilientStore pointed at a Redis that is down, so it serves
 *   from memory (its state during an outage).
 */
import { randomBytes } from 'node:crypto';
import { RedisStore } from 'connect-redis';
import session, { type SessionData, type Store } from 'express-session';
import memorystore from 'memorystore';
import type { ResilientStore } from '../lib/index.js';
import { type BenchClient, connectClient } from './redis-server.js';
import { library } from './revisions.js';

declare module 'express-session' {
	interface SessionData {
		user?: string;
		roles?: string[];
		csrf?: string;
		prefs?: { theme: string; lang: string; tz: string };
		loginAt?: number;
		views?: number;
	}
}

export const STORE_KINDS = [
	'resilient',
	'connect-redis',
	'memorystore',
	'express-memory',
	'resilient-fallback',
] as const;

/**
 * Kinds measured only where asked for (`server-cpu.ts`), not in the throughput part:
 * `connect-redis-resp3` is connect-redis 9 on a node-redis 6 client speaking RESP3, the
 * protocol ResilientStore's near cache needs, to tell what the protocol alone costs.
 */
export const VARIANT_KINDS = ['connect-redis-resp3'] as const;

export type StoreKind = (typeof STORE_KINDS)[number] | (typeof VARIANT_KINDS)[number];

export const STORE_LABELS: Readonly<Record<StoreKind, string>> = Object.freeze({
	resilient: 'ResilientStore (Redis)',
	'connect-redis': 'connect-redis 9',
	memorystore: 'memorystore',
	'express-memory': 'express-session MemoryStore',
	'resilient-fallback': 'ResilientStore (fallen back)',
	'connect-redis-resp3': 'connect-redis 9 (RESP3 client)',
});

/** The store everything is compared with. */
export const BASELINE: StoreKind = 'connect-redis';

export const isStoreKind = (value: unknown): value is StoreKind =>
	[...STORE_KINDS, ...VARIANT_KINDS].includes(value as StoreKind);

/** Session lifetime of every scenario: a day, as a cookie `maxAge`. */
export const COOKIE_MAX_AGE_MS = 86_400_000;

/** What a login puts in the session. With its cookie, about 260 bytes of JSON. */
export const loginFields = (user: string): Partial<SessionData> => ({
	user,
	roles: ['reader', 'editor'],
	csrf: randomBytes(16).toString('hex'),
	prefs: { theme: 'dark', lang: 'en-GB', tz: 'UTC' },
	loginAt: Date.now(),
});

/** A whole session as express-session hands it to a store after a login. */
export const loggedInSession = (user: string): SessionData =>
	({
		cookie: {
			originalMaxAge: COOKIE_MAX_AGE_MS,
			expires: new Date(Date.now() + COOKIE_MAX_AGE_MS),
			httpOnly: true,
			path: '/',
		},
		...loginFields(user),
	}) as SessionData;

/** A session id shaped like express-session's (24 random bytes, base64url). */
export const newSessionId = (): string => randomBytes(24).toString('base64url');

export interface BuiltStore {
	readonly kind: StoreKind;
	readonly store: Store;
	/** Set for the ResilientStore kinds. */
	readonly resilient?: ResilientStore;
	/** The node-redis client of connect-redis (other Redis users of the baseline share it). */
	readonly client?: BenchClient;
	close(): Promise<void>;
}

export interface StoreUrls {
	/** The benchmark's redis-server. */
	readonly redisUrl: string;
	/** A loopback port nobody listens on: Redis is down there. */
	readonly downUrl: string;
}

const MemoryStore = memorystore(session);

/** Builds a store of `kind`, connected and ready to serve. */
export const buildStore = async (kind: StoreKind, urls: StoreUrls): Promise<BuiltStore> => {
	switch (kind) {
		case 'resilient':
		case 'resilient-fallback': {
			const { ResilientStore, silentLogger } = await library();
			const store = new ResilientStore({
				url: kind === 'resilient' ? urls.redisUrl : urls.downUrl,
				logger: silentLogger,
			});
			// The first operation waits for the first connection (or its deadline), so that
			// the store is on its steady backend before any load arrives.
			await store.get('warm-up');
			const expected = kind === 'resilient' ? 'redis' : 'memory';
			if (store.backend !== expected) {
				await store.close();
				throw new Error(`${STORE_LABELS[kind]} is on ${store.backend}, expected ${expected}`);
			}

			return { kind, store, resilient: store, close: () => store.close() };
		}

		case 'connect-redis':
		case 'connect-redis-resp3': {
			const client = await connectClient(urls.redisUrl, kind === 'connect-redis-resp3' ? 3 : 2);
			const store = new RedisStore({ client });
			return { kind, store, client, close: async () => void (await client.close()) };
		}

		case 'memorystore': {
			const store = new MemoryStore({ checkPeriod: COOKIE_MAX_AGE_MS });
			return { kind, store, close: async () => store.stopInterval() };
		}

		case 'express-memory': {
			const store = new session.MemoryStore();
			return { kind, store, close: async () => {} };
		}
	}
};
