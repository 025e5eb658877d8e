import { RedisStore } from 'connect-redis';
import type { Express } from 'express';
import { createClient } from 'redis';
import request from 'supertest';
import { ResilientStore, type ResilientStoreOptions, silentLogger } from '../lib/index.js';
import { createApp, newSid, sessionData } from './helpers/app.js';
import { RedisServer } from './helpers/redis-server.js';
import { connected, fastFailover, nextEvent } from './helpers/common.js';
import { TcpProxy } from './helpers/tcp-proxy.js';

let redis: RedisServer;
const cleanups: Array<() => unknown> = [];

beforeAll(async () => {
	delete process.env.REDIS_URL;
	redis = await RedisServer.start();
});

beforeEach(async () => {
	if (!redis.running) await redis.restart();
	await redis.command('FLUSHALL');
});

afterEach(async () => {
	for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

afterAll(() => redis.kill());

const later = <T>(cleanup: () => T) => cleanups.push(cleanup);

/** A store (an instance of the app) on `url`, closed after the test, once it reached Redis. */
const storeOn = async (url: string, options: ResilientStoreOptions = {}) => {
	const store = new ResilientStore({ url, logger: silentLogger, ...fastFailover, ...options });
	later(() => store.close());
	return connected(store);
};

/** A proxy to the file's Redis, so that one instance's link can be cut alone. */
const proxyToRedis = async () => {
	const proxy = await TcpProxy.start(redis.port);
	later(() => proxy.close());
	return proxy;
};

/** A gate a request waits at, opened by the test. */
const gate = () => {
	let open!: () => void;
	const opened = new Promise<void>((resolve) => (open = resolve));
	let reached!: () => void;
	const arrived = new Promise<void>((resolve) => (reached = resolve));
	return { opened, open, arrived, reached };
};

/**
 * The test app, plus `GET /slow`: it loads the session, waits at the gate, then changes
 * the session, which express-session saves at the end: a request that loaded the session
 * before a logout and saves it after.
 */
const appWithSlowRoute = (store: ResilientStore, wait: ReturnType<typeof gate>) => {
	const app = createApp(store);
	app.get('/slow', async (req, res) => {
		wait.reached();
		await wait.opened;
		req.session.views = (req.session.views ?? 0) + 1;
		res.json({ views: req.session.views });
	});
	return app;
};

const cookieOf = (res: request.Response) => res.headers['set-cookie'] as unknown as string[];
const inRedis = (sid: string) => redis.command('GET', `sess:${sid}`);

describe('a destroy wins over a later save, on a healthy Redis', () => {
	it.each([
		['logout', (app: Express, cookie: string[]) => request(app).post('/logout').set('Cookie', cookie).expect(200)],
		['regenerate', (app: Express, cookie: string[]) => request(app).post('/login?user=al').set('Cookie', cookie).expect(200)],
	])('keeps a session ended by %s on another instance ended when a request that loaded it saves it', async (_name, end) => {
		const wait = gate();
		const appA = appWithSlowRoute(await storeOn(redis.url), wait);
		const appB = createApp(await storeOn(redis.url));
		const login = await request(appA).post('/login?user=ann').expect(200);
		const cookie = cookieOf(login);

		const slow = request(appA).get('/slow').set('Cookie', cookie).expect(200);
		const slowDone = slow.then((res) => res);
		await wait.arrived;
		await end(appB, cookie);
		wait.open();
		expect((await slowDone).body.views).toBe(1);

		// Neither instance, nor connect-redis on the same keys, sees the session.
		expect((await request(appA).get('/whoami').set('Cookie', cookie).expect(200)).body.user).toBeNull();
		expect((await request(appB).get('/whoami').set('Cookie', cookie).expect(200)).body.user).toBeNull();
		const client = createClient({ url: redis.url });
		await client.connect();
		later(() => client.close());
		expect(await new RedisStore({ client }).get(login.body.id)).toBeNull();
		expect(await inRedis(login.body.id)).toBe('null');
	});

	it('keeps a session destroyed on the same instance destroyed when a request that loaded it saves it', async () => {
		const wait = gate();
		const app = appWithSlowRoute(await storeOn(redis.url), wait);
		const cookie = cookieOf(await request(app).post('/login?user=bob').expect(200));
		const slow = request(app).get('/slow').set('Cookie', cookie).expect(200).then((res) => res);
		await wait.arrived;
		await request(app).post('/logout').set('Cookie', cookie).expect(200);
		wait.open();
		await slow;
		expect((await request(app).get('/whoami').set('Cookie', cookie).expect(200)).body.user).toBeNull();
	});

	it('keeps a session destroyed in a memory-only store destroyed when it is saved after', async () => {
		const store = new ResilientStore({ logger: silentLogger });
		later(() => store.close());
		const sid = newSid();
		const loaded = sessionData(60, { user: 'cy' });
		await store.set(sid, loaded as never);
		await store.destroy(sid);
		await store.set(sid, loaded as never);
		await store.touch(sid, loaded as never);
		expect(await store.get(sid)).toBeNull();
		expect(await store.ids()).toEqual([]);
		expect(await store.length()).toBe(0);
		expect(await store.all()).toEqual([]);
	});

	it('neither revives nor prolongs a destroyed session on touch', async () => {
		const store = await storeOn(redis.url, { tombstoneTtlMs: 60_000 });
		const sid = newSid();
		await store.set(sid, sessionData(3600, { user: 'dee' }) as never);
		await store.destroy(sid);
		const ttl = Number(await redis.command('PTTL', `sess:${sid}`));
		expect(ttl).toBeGreaterThan(0);
		expect(ttl).toBeLessThanOrEqual(60_000);
		// Another instance, which did not see the destroy, touches and saves it.
		const other = await storeOn(redis.url);
		await other.touch(sid, sessionData(3600, { user: 'dee' }) as never);
		await other.set(sid, sessionData(3600, { user: 'dee' }) as never);
		expect(Number(await redis.command('PTTL', `sess:${sid}`))).toBeLessThanOrEqual(ttl);
		expect(await inRedis(sid)).toBe('null');
		expect(await other.get(sid)).toBeNull();
	});

	it('counts no tombstone in all(), ids() and length(); connect-redis reads one as no session', async () => {
		const store = await storeOn(redis.url);
		const [kept, ended] = [newSid(), newSid()];
		await store.set(kept, sessionData(60, { user: 'eve' }) as never);
		await store.set(ended, sessionData(60, { user: 'fay' }) as never);
		await store.destroy(ended);
		expect(await store.ids()).toEqual([kept]);
		expect(await store.length()).toBe(1);
		expect((await store.all())?.map(({ id }) => id)).toEqual([kept]);
		const client = createClient({ url: redis.url });
		await client.connect();
		later(() => client.close());
		expect(await new RedisStore({ client }).get(ended)).toBeNull();
	});

	it('answers a request carrying a destroyed session with a fresh one, without a warning', async () => {
		const warn = jest.fn();
		const store = await storeOn(redis.url, { logger: { warn, error: jest.fn() } });
		const app = createApp(store);
		const login = await request(app).post('/login?user=gus').expect(200);
		await store.destroy(login.body.id);
		const res = await request(app).get('/count').set('Cookie', cookieOf(login)).expect(200);
		expect(res.body).toMatchObject({ views: 1 });
		expect(res.body.id).not.toBe(login.body.id);
		expect(warn).not.toHaveBeenCalled();
	});
});

describe('restoring a Redis that came back empty never brings back a destroyed session', () => {
	/** Kills Redis under both stores, then starts it again, empty; resolves once both are back on it. */
	const restartEmpty = async (...stores: ResilientStore[]) => {
		const fellBack = stores.map((store) => nextEvent(store, 'fallback'));
		await redis.kill();
		await Promise.all(fellBack);
		const recovered = stores.map((store) => nextEvent(store, 'recover'));
		await redis.restart();
		await Promise.all(recovered);
	};

	it('does not restore a copy of a session another instance destroyed while Redis was up', async () => {
		const a = await storeOn(redis.url);
		const b = await storeOn(redis.url);
		const [ended, kept] = [newSid(), newSid()];
		await b.set(ended, sessionData(3600, { user: 'hal' }) as never);
		await b.set(kept, sessionData(3600, { user: 'ida' }) as never);
		// A holds current copies of both.
		expect(await a.get(ended)).toMatchObject({ user: 'hal' });
		expect(await a.get(kept)).toMatchObject({ user: 'ida' });
		await b.destroy(ended);
		// A read on A's connection after the destroy: Redis's word of it reached A before.
		await a.get(newSid());
		await restartEmpty(a, b);
		// Both hold a copy of the session kept, and one of them restored it.
		expect(JSON.parse((await inRedis(kept)) as string)).toMatchObject({ user: 'ida' });
		expect(await inRedis(ended)).toBeNull();
		expect(await a.get(ended)).toBeNull();
		expect(await a.get(kept)).toMatchObject({ user: 'ida' });
	});

	it('restores, from a client passed in (no invalidation), only the sessions used during the outage', async () => {
		const client = createClient({ url: redis.url, disableOfflineQueue: true, socket: { reconnectStrategy: () => 50 } });
		client.on('error', () => {});
		await client.connect();
		later(() => client.destroy());
		const a = new ResilientStore({ client, logger: silentLogger, ...fastFailover });
		later(() => a.close());
		const b = await storeOn(redis.url);
		const [ended, used] = [newSid(), newSid()];
		await b.set(ended, sessionData(3600, { user: 'jo' }) as never);
		await b.set(used, sessionData(3600, { user: 'kim' }) as never);
		expect(await a.get(ended)).toMatchObject({ user: 'jo' });
		expect(await a.get(used)).toMatchObject({ user: 'kim' });
		await b.destroy(ended);

		const fellBack = nextEvent(a, 'fallback');
		await redis.kill();
		await a.get(used);
		await fellBack;
		// Used during the outage: served from memory, and touched.
		const during = await a.get(used);
		expect(during).toMatchObject({ user: 'kim' });
		await a.touch(used, during as never);
		const recovered = nextEvent(a, 'recover');
		await redis.restart();
		await recovered;
		expect(await inRedis(ended)).toBeNull();
		expect(await a.get(ended)).toBeNull();
		expect(JSON.parse((await inRedis(used)) as string)).toMatchObject({ user: 'kim' });
	});

	it('does not restore a session another instance destroyed during the outage and wrote back first', async () => {
		const [proxyA, proxyB] = [await proxyToRedis(), await proxyToRedis()];
		const a = await storeOn(proxyA.url);
		const b = await storeOn(proxyB.url);
		const sid = newSid();
		await b.set(sid, sessionData(3600, { user: 'lou' }) as never);
		expect(await a.get(sid)).toMatchObject({ user: 'lou' });

		const fellBack = [nextEvent(a, 'fallback'), nextEvent(b, 'fallback')];
		await redis.kill();
		await Promise.all([a.get(sid), b.get(sid)]);
		await Promise.all(fellBack);
		// The user logs out through B during the outage; A stays cut off for longer.
		await b.destroy(sid);
		proxyA.cut();
		const bBack = nextEvent(b, 'recover');
		await redis.restart();
		await bBack;
		expect(await inRedis(sid)).toBe('null');

		const aBack = nextEvent(a, 'recover');
		proxyA.pass();
		await aBack;
		expect(await inRedis(sid)).toBe('null');
		expect(await a.get(sid)).toBeNull();
	});
});
