import request from 'supertest';
import { rateLimit } from '../lib/rate-limit/rate-limit.js';
import { silentLogger } from '../lib/logger.js';
import type { ResilientStore } from '../lib/session/store.js';
import { nextEvent, recordingLogger } from './helpers/common.js';
import { attempt, createLoginApp, KNOWN_USER } from './helpers/login-guard-app.js';
import { createLimitedApp } from './helpers/rate-limit-app.js';
import { useStoreFactory } from './helpers/stores.js';
import { TcpProxy } from './helpers/tcp-proxy.js';

// Counts and lockouts that memory knew of survive a Redis that restarts empty: memory
// keeps copies of what Redis answered, and merges them back, never below what it saw.

const fixture = useStoreFactory();
const proxies: TcpProxy[] = [];

afterEach(async () => {
	await Promise.all(proxies.splice(0).map((proxy) => proxy.close()));
});

/** A store on the file's redis-server (or on `url`), whose first connection is made. */
const redisStore = async (url?: string) => {
	const store = await fixture.stores.create('redis', { timeoutMs: 1_000, ...(url ? { url } : {}) });
	// The store learns the marker that tells a Redis restarted empty once it first connects.
	await store.get('warm-up');
	return store;
};

/** Kills the file's redis-server and starts it again, empty, waiting for the store to fall back and recover. */
const restartEmpty = async (store: ResilientStore) => {
	await Promise.all([nextEvent(store, 'fallback'), fixture.redis.kill()]);
	await Promise.all([nextEvent(store, 'recover'), fixture.redis.restart()]);
};

describe('counts when Redis restarts empty', () => {
	it('keeps a login lockout set on Redis before the outage', async () => {
		const store = await redisStore();
		const { app, handled } = createLoginApp(store, { maxFailures: 3, lockoutMs: 30_000 });
		for (let i = 0; i < 3; i++) await attempt(app, KNOWN_USER).expect(401);
		await attempt(app, KNOWN_USER).expect(429);

		await restartEmpty(store);

		// Deep inside the 30 s lockout: still locked, and the handler never ran.
		const locked = await attempt(app, KNOWN_USER).expect(429);
		expect(Number(locked.headers['retry-after'])).toBeGreaterThan(20);
		expect(handled.count).toBe(3);
		expect(store.backend).toBe('redis');
	});

	it('keeps a login lockout set during the outage, on top of the failures Redis had counted', async () => {
		const store = await redisStore();
		const { app, handled } = createLoginApp(store, { maxFailures: 3, lockoutMs: 30_000 });
		await attempt(app, KNOWN_USER).expect(401);
		await attempt(app, KNOWN_USER).expect(401);
		await Promise.all([nextEvent(store, 'fallback'), fixture.redis.kill()]);
		await attempt(app, KNOWN_USER).expect(401);
		await attempt(app, KNOWN_USER).expect(429);

		await Promise.all([nextEvent(store, 'recover'), fixture.redis.restart()]);

		await attempt(app, KNOWN_USER).expect(429);
		expect(handled.count).toBe(3);
	});

	it('keeps a rate limit count read from Redis before the outage', async () => {
		const store = await redisStore();
		const limiter = rateLimit({ store, logger: silentLogger, limit: 3, keyGenerator: () => 'client' });
		const app = createLimitedApp(store, limiter, false);
		const statuses: number[] = [];
		for (let i = 0; i < 4; i++) statuses.push((await request(app).get('/api')).status);
		expect(statuses).toEqual([200, 200, 200, 429]);

		await restartEmpty(store);

		// The window is not over: no fresh allowance (and a refused request uses nothing).
		await request(app).get('/api').expect(429);
		expect(Number(await fixture.redis.command('GET', 'rl:client'))).toBe(3);
	});

	it('does not bring back a count reset elsewhere when Redis kept its data', async () => {
		const proxy = await TcpProxy.start(fixture.redis.port);
		proxies.push(proxy);
		const store = await redisStore(proxy.url);
		const one = createLoginApp(store, { maxFailures: 3 });
		const other = createLoginApp(await redisStore());
		await attempt(one.app, KNOWN_USER).expect(401);
		await attempt(one.app, KNOWN_USER).expect(401);
		// A success on another instance resets the username+address count in Redis.
		await attempt(other.app, KNOWN_USER, 'correct horse battery staple').expect(200);

		proxy.cut();
		await store.get('trip');
		expect(store.backend).toBe('memory');
		await Promise.all([nextEvent(store, 'recover'), proxy.pass()]);

		// The copy of two failures memory held is not merged back: Redis lost nothing.
		await attempt(one.app, KNOWN_USER).expect(401);
		await attempt(one.app, KNOWN_USER).expect(401);
		await attempt(one.app, KNOWN_USER).expect(401);
		await attempt(one.app, KNOWN_USER).expect(429);
	});

	it('warns once, and counts on, when an ACL refuses the marker key', async () => {
		await fixture.redis.command('ACL', 'SETUSER', 'counts', 'on', '>pw', '~sess:*', '~rl:*', '+@all');
		try {
			const url = fixture.redis.url.replace('redis://', 'redis://counts:pw@');
			const store = await fixture.stores.create('redis', { url, timeoutMs: 1_000 });
			const logger = recordingLogger();
			const limiter = rateLimit({ store, logger, limit: 1, keyGenerator: () => 'acl' });
			const app = createLimitedApp(store, limiter, false);
			await request(app).get('/api').expect(200);
			await request(app).get('/api').expect(429);
			expect(Number(await fixture.redis.command('GET', 'rl:acl'))).toBe(1);
			expect(logger.warnings).toEqual([expect.stringMatching(/refused the marker key .*NOPERM/)]);
			expect(store.backend).toBe('redis');
		} finally {
			await fixture.redis.command('ACL', 'DELUSER', 'counts');
		}
	});
});
