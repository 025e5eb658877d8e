/**
 * Puts `ResilientStore` where express-session's test suite expects its `MemoryStore`,
 * without touching the suite: the suite's `require('../')` (and its support stores'
 * `require('../../')`) get a wrapper of express-session whose `MemoryStore` is
 * `ResilientStore`, and whose `session()` uses one when given no `store`. Every
 * `require('express-session')` (this project's, connect-redis's) gets the checkout's
 * express-session, so that the process holds one express-session: the one under test.
 */
import Module, { createRequire } from 'node:module';
import path from 'node:path';
import type { SessionOptions } from 'express-session';
import type * as ResilientSession from '../../lib/index.js';

export type Mode = 'memorystore' | 'memory-only' | 'redis' | 'redis-touch-always';

/** Whether `mode` runs on a Redis server. */
export const onRedis = (mode: Mode): boolean => mode === 'redis' || mode === 'redis-touch-always';

/** The stores the suite created, to be inspected and closed once it ends. */
export interface SuiteStores {
	readonly created: ResilientSession.ResilientStore[];
	/** What the stores logged (`logger.warn`/`logger.error`). */
	readonly warnings: string[];
	closeAll(): Promise<void>;
}

type ResolveFilename = (request: string, parent: { filename?: string | null } | undefined, ...rest: unknown[]) => string;

/** The wrapper's module id: no such file exists; it lives in the require cache only. */
const shimId = (checkout: string): string => path.join(checkout, '.resilient-store-shim.js');

/**
 * Installs the swap for `mode` (`memory-only`: `new ResilientStore()` with `REDIS_URL`
 * unset; `redis`: `new ResilientStore({ url })`; `redis-touch-always`: the same with
 * `touchAfterMs: 0`, renewing on every touch as MemoryStore does rather than lazily).
 * Call it before the suite is loaded.
 */
export const installStore = (checkout: string, mode: Exclude<Mode, 'memorystore'>, url?: string): SuiteStores => {
	const index = path.join(checkout, 'index.js');
	const tests = path.join(checkout, 'test') + path.sep;
	const shim = shimId(checkout);
	const moduleInternals = Module as unknown as { _resolveFilename: ResolveFilename };
	const resolve = moduleInternals._resolveFilename;
	moduleInternals._resolveFilename = function (request, parent, ...rest) {
		if (request === 'express-session') return index;
		const resolved = resolve.call(this, request, parent, ...rest);
		return resolved === index && parent?.filename?.startsWith(tests) ? shim : resolved;
	};

	if (mode === 'memory-only') delete process.env.REDIS_URL;
	const requireHere = createRequire(__filename);
	const session = requireHere(index) as typeof import('express-session');
	const { ResilientStore } = requireHere('../../lib/index.js') as typeof ResilientSession;

	const created: ResilientSession.ResilientStore[] = [];
	const warnings: string[] = [];
	const record = (level: string) => (message: string) => {
		warnings.push(`${level}: ${message}`);
		console.error(`  [store ${level}] ${message}`);
	};

	const logger = { warn: record('warn'), error: record('error') };

	/**
	 * What the suite gets for `session.MemoryStore`. On Redis, each store has a key prefix
	 * of its own, as each MemoryStore has a map of its own: a store the suite creates
	 * starts empty, and `length()`, `all()` and `clear()` see its sessions only. (Emptying
	 * Redis before each test instead would wipe the sessions a `before` hook created for
	 * the tests after it.)
	 */
	class SuiteStore extends ResilientStore {
		constructor() {
			const touchAfterMs = mode === 'redis-touch-always' ? 0 : undefined;
			if (onRedis(mode)) super({ url, prefix: `sess:${created.length + 1}:`, logger, touchAfterMs });
			else super();
			created.push(this);
		}
	}

	const wrapped = Object.assign(
		(options?: SessionOptions) => session({ ...options, store: options?.store ?? new SuiteStore() } as SessionOptions),
		session,
		{ MemoryStore: SuiteStore },
	);

	const cached = new Module(shim);
	cached.filename = shim;
	cached.loaded = true;
	cached.exports = wrapped;
	requireHere.cache[shim] = cached;

	return {
		created,
		warnings,
		async closeAll() {
			await Promise.all(created.map((store) => store.close()));
		},
	};
};
