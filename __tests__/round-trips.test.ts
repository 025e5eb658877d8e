import { createRequire } from 'node:module';
import type { SessionData } from 'express-session';
import request from 'supertest';
import {
	type BudgetInfo,
	rateLimit,
	type RateLimitOptions,
	ResilientStore,
	type ResilientStoreOptions,
	silentLogger,
} from '../lib/index.js';
import { createApp } from './helpers/app.js';
import { RedisServer } from './helpers/redis-server.js';
import { TcpProxy } from './helpers/tcp-proxy.js';

/** express-session's cookie signing (cookie-signature, one of its dependencies). */
const { sign } = createRequire(require.resolve('express-session'))('cookie-signature') as {
	sign(value: string, secret: string): string;
};

let redis: RedisServer;
let proxy: TcpProxy;
const stores: ResilientStore[] = [];

beforeAll(async () => {
	redis = await RedisServer.start();
	proxy = await TcpProxy.start(redis.port);
});

afterEach(async () => {
	await Promise.all(stores.splice(0).map((store) => store.close()));
});

afterAll(async () => {
	await proxy.close();
	await redis.kill();
});

const HOUR_MS = 3_600_000;

/** An app on a store that reaches Redis through the counting proxy, with a logged-in user. */
const loggedIn = async (options: ResilientStoreOptions = {}) => {
	const store = new ResilientStore({ url: proxy.url, logger: silentLogger, ...options });
	stores.push(store);
	const app = createApp(store, { cookie: { maxAge: HOUR_MS } });
	const agent = request.agent(app);
	const { id } = (await agent.post('/login?user=ann').expect(200)).body;
	// Pretend the session was last renewed long ago. A change made outside the store, so
	// the store's copy is dropped and the next read goes to Redis (once Redis's word of it
	// arrived: any round trip of the store's after it); the first read on a server also
	// loads the read script into it.
	const renewedLongAgo = async () => {
		await redis.command('EXPIRE', `sess:${id}`, '60');
		await store.length();
	};
	await renewedLongAgo();
	await agent.get('/whoami').expect(200);
	await renewedLongAgo();
	return { agent, id, store };
};

/** Round trips to Redis that `step` causes. */
const roundTrips = async (step: () => Promise<unknown>) => {
	const before = proxy.chunksToServer;
	await step();
	return proxy.chunksToServer - before;
};

describe('Redis round trips per request', () => {
	it('reads an unchanged session and renews its expiry in one round trip', async () => {
		const { agent, id } = await loggedIn();
		expect(await roundTrips(() => agent.get('/whoami').expect(200, /"user":"ann"/))).toBe(1);
		expect(Number(await redis.command('TTL', `sess:${id}`))).toBeGreaterThan(HOUR_MS / 1000 - 10);
	});

	it('renews to the cookie lifetime wherever the cookie stands in the stored text', async () => {
		const store = new ResilientStore({ url: proxy.url, logger: silentLogger });
		stores.push(store);
		const cookie = { originalMaxAge: 7_200_000, expires: new Date(Date.now() + 60_000), path: '/' };
		await redis.command('SET', 'sess:cookie-first', JSON.stringify({ cookie, user: 'a' }), 'EX', '60');
		await redis.command('SET', 'sess:cookie-last', JSON.stringify({ user: 'b', cookie }), 'EX', '60');
		await redis.command('SET', 'sess:browser-session', JSON.stringify({ cookie: { ...cookie, originalMaxAge: null } }), 'EX', '60');
		await store.get('cookie-first');
		await store.get('cookie-last');
		await store.get('browser-session');
		expect(Number(await redis.command('TTL', 'sess:cookie-first'))).toBeGreaterThan(7190);
		expect(Number(await redis.command('TTL', 'sess:cookie-last'))).toBeGreaterThan(7190);
		// No lifetime in the cookie: the store's ttl, one day by default.
		expect(Number(await redis.command('TTL', 'sess:browser-session'))).toBeGreaterThan(86_390);
	});

	it('writes a changed session with one SET after the read', async () => {
		const { agent, id } = await loggedIn();
		expect(await roundTrips(() => agent.get('/count').expect(200))).toBe(2);
		expect(JSON.parse((await redis.command('GET', `sess:${id}`)) as string)).toMatchObject({ views: 1 });
	});

	it('sends the touch itself when the handler changed the cookie lifetime', async () => {
		const store = new ResilientStore({ url: proxy.url, logger: silentLogger });
		stores.push(store);
		const app = createApp(store, { cookie: { maxAge: HOUR_MS } });
		app.get('/remember-me', (req, res) => {
			req.session.cookie.maxAge = 24 * HOUR_MS;
			res.json({ ok: true });
		});
		// The first touch on a server also loads the touch script into it.
		const first = request.agent(app);
		await first.post('/login?user=ann').expect(200);
		await first.get('/remember-me').expect(200);
		const agent = request.agent(app);
		const { id } = (await agent.post('/login?user=bea').expect(200)).body;
		// The read is served by the copy the login left; the touch carries the new lifetime.
		expect(await roundTrips(() => agent.get('/remember-me').expect(200))).toBe(1);
		expect(Number(await redis.command('TTL', `sess:${id}`))).toBeGreaterThan((24 * HOUR_MS) / 1000 - 10);
	});

	it('reads and touches in two round trips, as connect-redis does, with a custom serializer', async () => {
		const serializer = { parse: (text: string) => JSON.parse(text) as SessionData, stringify: JSON.stringify };
		const { agent, id } = await loggedIn({ serializer });
		expect(await roundTrips(() => agent.get('/whoami').expect(200, /"user":"ann"/))).toBe(2);
		expect(Number(await redis.command('TTL', `sess:${id}`))).toBeGreaterThan(HOUR_MS / 1000 - 10);
	});

	it('never extends a session on read with disableTouch', async () => {
		const { agent, id } = await loggedIn({ disableTouch: true });
		expect(await roundTrips(() => agent.get('/whoami').expect(200, /"user":"ann"/))).toBe(1);
		expect(Number(await redis.command('TTL', `sess:${id}`))).toBeLessThanOrEqual(60);
	});

	it('reads a session its serializer cannot parse as no session, without falling back', async () => {
		const { agent, id, store } = await loggedIn();
		await redis.command('SET', `sess:${id}`, '{not json', 'EX', '60');
		await agent.get('/whoami').expect(200, /"user":null/);
		expect(store.backend).toBe('redis');
	});
});

describe('Redis round trips of a login', () => {
	it('spends none on destroying the id of a visitor who brought no stored session', async () => {
		const store = new ResilientStore({ url: proxy.url, logger: silentLogger, timeoutMs: 10_000 });
		stores.push(store);
		await store.length();
		const app = createApp(store, { cookie: { maxAge: HOUR_MS } });
		await request(app).post('/login?user=ann').expect(200);
		const before = Number(await redis.command('DBSIZE'));
		// No cookie: one round trip, the new session.
		expect(await roundTrips(() => request(app).post('/login?user=bea').expect(200))).toBe(1);
		// A cookie, validly signed, of a session that does not exist: its read, then the new session.
		const unknown = `s:${sign('no-such-session', 'test secret')}`;
		const withUnknown = () => request(app).post('/login?user=cy').set('Cookie', `connect.sid=${encodeURIComponent(unknown)}`);
		expect(await roundTrips(() => withUnknown().expect(200))).toBe(2);
		// Nothing but the two new sessions was written: no tombstone of an id no store held.
		expect(Number(await redis.command('DBSIZE'))).toBe(before + 2);
	});

	it('still destroys, before the new session is written, a stored session it replaces', async () => {
		const store = new ResilientStore({ url: proxy.url, logger: silentLogger, timeoutMs: 10_000 });
		stores.push(store);
		await store.length();
		const app = createApp(store, { cookie: { maxAge: HOUR_MS } });
		const agent = request.agent(app);
		const { id: old } = (await agent.post('/login?user=dee').expect(200)).body;
		expect(await roundTrips(() => agent.post('/login?user=dee').expect(200))).toBe(2);
		expect(await redis.command('GET', `sess:${old}`)).toBe('null');
		// Another instance reading the old id sees no session.
		const other = new ResilientStore({ url: redis.url, logger: silentLogger });
		stores.push(other);
		expect(await other.get(old)).toBeNull();
	});
});

describe('Redis round trips per request with sessions indexed by user', () => {
	/** Round trips of a login, a read and a write, on a store with `options`, scripts loaded. */
	const figures = async (options: ResilientStoreOptions) => {
		// A deadline no load on the test machine misses: a fallback would count no round trip at all.
		const store = new ResilientStore({ url: proxy.url, logger: silentLogger, timeoutMs: 10_000, ...options });
		stores.push(store);
		await store.length();
		const app = createApp(store, { cookie: { maxAge: HOUR_MS } });
		// A first login and visit load every script into the server.
		const warm = request.agent(app);
		await warm.post('/login?user=ann').expect(200);
		await warm.get('/count').expect(200);
		await warm.post('/login?user=ann').expect(200);
		const agent = request.agent(app);
		const login = await roundTrips(() => agent.post('/login?user=ann').expect(200));
		const read = await roundTrips(() => agent.get('/whoami').expect(200, /"user":"ann"/));
		const write = await roundTrips(() => agent.get('/count').expect(200));
		expect(store.backend).toBe('redis');
		return { login, read, write };
	};

	it('costs a login, a read and a write no more round trips than without userId', async () => {
		const plain = await figures({});
		const indexed = await figures({ userId: (session) => session.user });
		// A login without a session writes the new one only; the read and the write's read
		// are served by the copy the login left.
		expect(plain).toEqual({ login: 1, read: 0, write: 1 });
		expect(indexed).toEqual(plain);
		expect(Number(await redis.command('ZCARD', 'resilient-session:user:{ann}:sess:'))).toBe(2);
	});
});

describe('Redis round trips of a budget (rateLimit() with cost, charge and windows)', () => {
	/**
	 * Round trips of a request let through, one refused and a charge, behind a budget of
	 * `windows`, keyed per session (with the address's ceiling, counted by the same script).
	 */
	const figures = async (windows: RateLimitOptions['windows']) => {
		const store = new ResilientStore({ url: proxy.url, logger: silentLogger, timeoutMs: 10_000 });
		stores.push(store);
		await store.length();
		const app = createApp(store, { cookie: { maxAge: HOUR_MS } });
		const limiter = rateLimit({ store, logger: silentLogger, windows, cost: (req) => Number(req.query.cost ?? 1) });
		app.get('/budget', limiter, (_req, res) => res.json({ ok: true }));
		app.get('/charge', limiter, async (req, res) => {
			res.json(await (req as unknown as { rateLimit: BudgetInfo }).rateLimit.charge(Number(req.query.tokens)));
		});
		const agent = request.agent(app);
		await agent.post('/login?user=ann').expect(200);
		// The first count and charge on a server also load their scripts into it.
		await agent.get('/budget?cost=1').expect(200);
		await agent.get('/charge?cost=0&tokens=1').expect(200);
		const admitted = await roundTrips(() => agent.get('/budget?cost=3').expect(200));
		const charged = await roundTrips(() => agent.get('/charge?cost=0&tokens=5').expect(200));
		const refused = await roundTrips(() => agent.get('/budget?cost=1000').expect(429));
		expect(store.backend).toBe('redis');
		return { admitted, charged, refused };
	};

	it('checks and counts one window or two in one round trip; a charge costs one more', async () => {
		// The session is read from the copy the login left: the count is the only round trip.
		expect(await figures([{ windowMs: 60_000, limit: 100 }])).toEqual({ admitted: 1, charged: 2, refused: 1 });
		expect(
			await figures([
				{ windowMs: 60_000, limit: 100 },
				{ windowMs: 86_400_000, limit: 5_000 },
			]),
		).toEqual({ admitted: 1, charged: 2, refused: 1 });
	});
});
