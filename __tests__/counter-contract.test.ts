import request from 'supertest';
import type { ResilientStore } from '../lib/index.js';
import { rateLimit, type RateLimitOptions } from '../lib/rate-limit/rate-limit.js';
import { silentLogger } from '../lib/logger.js';
import { attempt, CLIENT_IP, createLoginApp, KNOWN_USER, PASSWORD } from './helpers/login-guard-app.js';
import { callApi, createLimitedApp, login } from './helpers/rate-limit-app.js';
import { type StoreMode, useStoreFactory } from './helpers/stores.js';
import { until } from './helpers/common.js';

// What rateLimit() and loginGuard() promise, whichever backend counts: Redis, memory on
// a store without Redis, or memory on a store that fell back from Redis.

const fixture = useStoreFactory();

const OTHER_IP = '198.51.100.7';

const statuses = async (n: number, call: () => request.Test) => {
	const seen: number[] = [];
	for (let i = 0; i < n; i++) seen.push((await call()).status);
	return seen;
};

describe.each<StoreMode>(['redis', 'memory-only', 'fallen-back'])('the counter contract (%s)', (mode) => {
	let store: ResilientStore;

	beforeEach(async () => {
		// On Redis, a deadline that a loaded test machine never misses: a spurious fallback would split counts.
		store = await fixture.stores.create(mode, mode === 'redis' ? { timeoutMs: 1_000 } : {});
	});

	afterEach(() => {
		expect(store.backend).toBe(mode === 'redis' ? 'redis' : 'memory');
	});

	describe('rateLimit()', () => {
		const limited = (options: Omit<RateLimitOptions, 'store'>) =>
			createLimitedApp(store, rateLimit({ store, logger: silentLogger, ...options }));

		it('lets `limit` requests of a session through in a window, then answers 429 with Retry-After', async () => {
			const app = limited({ limit: 3 });
			const { cookie } = await login(app);
			expect(await statuses(5, () => callApi(app, cookie))).toEqual([200, 200, 200, 429, 429]);
			const refused = await callApi(app, cookie).expect(429);
			expect(Number(refused.headers['retry-after'])).toBeGreaterThan(55);
		});

		it('counts each session on its own, and requests without one by address', async () => {
			const app = limited({ limit: 2 });
			const one = await login(app);
			const two = await login(app);
			expect(await statuses(3, () => callApi(app, one.cookie))).toEqual([200, 200, 429]);
			expect((await callApi(app, two.cookie).expect(200)).body.key).toBe(`sid:${two.id}`);
			const anonymous = await statuses(3, () => callApi(app));
			expect(anonymous).toEqual([200, 200, 429]);
		});

		it('gives an address no more than addressLimit over all its sessions', async () => {
			const app = limited({ limit: 3, addressLimit: 4 });
			const one = await login(app);
			const two = await login(app);
			expect(await statuses(3, () => callApi(app, one.cookie))).toEqual([200, 200, 200]);
			expect(await statuses(2, () => callApi(app, two.cookie))).toEqual([200, 429]);
		});

		it('reads, resets and takes back counts', async () => {
			const limiter = rateLimit({ store, logger: silentLogger, limit: 2, keyGenerator: () => 'shared' });
			const app = createLimitedApp(store, limiter, false);
			expect(await statuses(3, () => callApi(app))).toEqual([200, 200, 429]);
			// The refused request used nothing.
			expect((await limiter.getKey('shared'))?.totalHits).toBe(2);
			await limiter.resetKey('shared');
			expect(await limiter.getKey('shared')).toBeUndefined();

			const skipping = rateLimit({
				store,
				logger: silentLogger,
				limit: 1,
				prefix: 'skip:',
				skipFailedRequests: true,
				keyGenerator: () => 'skipper',
			});
			const failing = createLimitedApp(store, skipping, false);
			// Each failed request is taken back once its response has finished.
			for (let i = 0; i < 3; i++) {
				expect((await request(failing).get('/missing')).status).toBe(404);
				await until(async () => ((await skipping.getKey('skipper'))?.totalHits ?? 0) === 0);
			}

			await callApi(failing).expect(200);
			await callApi(failing).expect(429);
		});
	});

	describe('loginGuard()', () => {
		it('locks a username+address at maxFailures with 429 and Retry-After, before the handler', async () => {
			const { app, handled } = createLoginApp(store, { maxFailures: 3, lockoutMs: 30_000 });
			for (let i = 0; i < 3; i++) await attempt(app, KNOWN_USER).expect(401);
			const locked = await attempt(app, KNOWN_USER, PASSWORD).expect(429);
			expect(Number(locked.headers['retry-after'])).toBeGreaterThan(25);
			expect(locked.body).toEqual({ error: expect.any(String), retryAfter: expect.any(Number) });
			expect(handled.count).toBe(3);
			// Another address may still log in.
			await attempt(app, KNOWN_USER, PASSWORD, OTHER_IP).expect(200);
		});

		it('lets no more than maxFailures of many concurrent wrong passwords through', async () => {
			const { app, handled } = createLoginApp(store, { maxFailures: 3 });
			const responses = await Promise.all(Array.from({ length: 10 }, () => attempt(app, KNOWN_USER)));
			expect(responses.filter((res) => res.status === 401)).toHaveLength(3);
			expect(handled.count).toBe(3);
		});

		it('resets the username+address count on success, never the address count', async () => {
			const { app } = createLoginApp(store, { maxFailures: 3, maxFailuresPerIp: 4 });
			await attempt(app, KNOWN_USER).expect(401);
			await attempt(app, KNOWN_USER).expect(401);
			await attempt(app, KNOWN_USER, PASSWORD).expect(200);
			await attempt(app, KNOWN_USER).expect(401);
			await attempt(app, KNOWN_USER).expect(401);
			// Four failures from this address: refused for any username.
			await attempt(app, 'bob').expect(429);
			await attempt(app, 'bob', 'x', OTHER_IP).expect(401);
		});

		it('counts look-alike usernames as one', async () => {
			const { app } = createLoginApp(store, { maxFailures: 3 });
			await attempt(app, 'Admin').expect(401);
			await attempt(app, 'ａｄｍｉｎ').expect(401);
			await attempt(app, 'adm\u00adin\u200b').expect(401);
			await attempt(app, 'admin').expect(429);
		});

		it('unlocks with reset()', async () => {
			const { app, guard } = createLoginApp(store, { maxFailures: 2 });
			await attempt(app, KNOWN_USER).expect(401);
			await attempt(app, KNOWN_USER).expect(401);
			await attempt(app, KNOWN_USER).expect(429);
			await guard.reset(KNOWN_USER, CLIENT_IP);
			await attempt(app, KNOWN_USER, PASSWORD).expect(200);
		});
	});
});
