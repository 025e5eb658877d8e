/**
 * The rate-limited scenario's middleware for each store, as its users would set it up:
 * ResilientStore's own `rateLimit()` (lib/rate-limit/rate-limit.ts) for the ResilientStore kinds,
 * express-rate-limit with rate-limit-redis next to connect-redis, and express-rate-limit
 * with its in-memory store next to the memory stores. Every limiter counts per session
 * id, with a limit no benchmark reaches.
 *
 * lib/rate-limit/rate-limit.ts may not exist yet: then the scenario is skipped, with a note.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { RequestHandler } from 'express';
import { rateLimit as expressRateLimit } from 'express-rate-limit';
import { RedisStore as RateLimitRedisStore } from 'rate-limit-redis';
import { compiledLibrary } from './revisions.js';
import type { BuiltStore } from './stores.js';

/** In the package the server under test loads (see revisions.ts). */
const rateLimitModule = (): string => path.join(compiledLibrary(), 'rate-limit', 'rate-limit.js');

export const WINDOW_MS = 60_000;

/** High enough that no run is ever limited: this measures the cost of counting. */
export const LIMIT = 1e9;

/** Why the rate-limited scenario cannot run, or `undefined` when it can. */
export const rateLimitUnavailable = (): string | undefined =>
	existsSync(rateLimitModule()) ? undefined : 'lib/rate-limit/rate-limit.ts does not exist yet';

/**
 * The rate limit middleware for `built`, or the reason there is none. The module is
 * imported by path at run time so that the benchmark also runs before it exists.
 */
export const buildRateLimit = async (built: BuiltStore): Promise<RequestHandler | string> => {
	if (built.resilient) {
		const missing = rateLimitUnavailable();
		if (missing) return missing;
		const module = (await import(pathToFileURL(rateLimitModule()).href)) as Record<string, unknown>;
		const factory = (module.rateLimit ?? (module.default as Record<string, unknown> | undefined)?.rateLimit) as
			((options: object) => RequestHandler) | undefined;
		if (typeof factory !== 'function') return 'lib/rate-limit/rate-limit.ts exports no rateLimit()';
		return factory({ store: built.resilient, windowMs: WINDOW_MS, limit: LIMIT });
	}

	const client = built.client;
	return expressRateLimit({
		windowMs: WINDOW_MS,
		limit: LIMIT,
		standardHeaders: 'draft-8',
		legacyHeaders: false,
		keyGenerator: (req) => req.sessionID,
		...(client
			? { store: new RateLimitRedisStore({ sendCommand: (...args: string[]) => client.sendCommand(args) as never }) }
			: {}),
	});
};
