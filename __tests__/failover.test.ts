import type { Server } from 'node:http';
import type { SessionData } from 'express-session';
import request from 'supertest';
import { ResilientStore, silentLogger, type WriteBackResult } from '../lib/index.js';
import { createApp, newSid, sessionData } from './helpers/app.js';
import { connected, fastFailover, listen, nextEvent, sleep } from './helpers/common.js';
import { RedisServer } from './helpers/redis-server.js';
import { TcpProxy } from './helpers/tcp-proxy.js';
import { Traffic } from './helpers/traffic.js';

/**
 * The stores' deadline in this file, and what a request may take on top of it here: far
 * below a hang (seconds), with room for a busy machine.
 */
const DEADLINE_MS = fastFailover.timeoutMs;
const SLACK_MS = 300;

let redis: RedisServer;
let proxy: TcpProxy;
const cleanups: Array<() => unknown> = [];

beforeAll(async () => {
	redis = await RedisServer.start();
});

beforeEach(async () => {
	if (!redis.running) await redis.restart();
	await redis.command('FLUSHALL');
	proxy = await TcpProxy.start(redis.port);
	cleanups.push(() => proxy.close());
});

afterEach(async () => {
	for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

afterAll(() => redis.kill());

/** A store through the proxy (so the link can be cut or stalled), and an app on it. */
const setup = async (options: ConstructorParameters<typeof ResilientStore>[0] = {}) => {
	const store = new ResilientStore({ url: proxy.url, logger: silentLogger, ...fastFailover, ...options });
	await connected(store);
	const app = createApp(store);
	const { server, url } = await listen(app);
	cleanups.push(() => store.close(), () => new Promise((resolve) => (server as Server).close(resolve)));
	return { store, app, url };
};

/** Stops `traffic` after the test even when an assertion fails first. */
const track = (traffic: Traffic) => {
	cleanups.push(() => traffic.stop());
	return traffic;
};

const login = async (url: string, user: string) => {
	const agent = request.agent(url);
	const res = await agent.post(`/login?user=${user}`).expect(200);
	return { agent, id: res.body.id as string, cookie: res.headers['set-cookie'] as unknown as string[] };
};

const inRedis = async (sid: string) => JSON.parse(((await redis.command('GET', `sess:${sid}`)) as string) ?? 'null');

describe('failover under real faults', () => {
	it('serves every request through a kill -9 of Redis mid-traffic, and returns to Redis', async () => {
		const { store, url } = await setup();
		const users = await Promise.all(['ann', 'ben', 'cid'].map((user) => login(url, user)));
		const traffic = track(new Traffic(users.map((user) => user.agent)).start());
		await sleep(300);
		await redis.kill();
		await sleep(1_000);
		const recovered = nextEvent(store, 'recover');
		await redis.restart();
		await recovered;
		await sleep(300);
		await traffic.stop();

		expect(traffic.failed).toEqual([]);
		expect(traffic.worstMs).toBeLessThan(DEADLINE_MS + SLACK_MS);
		expect(traffic.samples.some((sample) => sample.body.backend === 'memory')).toBe(true);
		expect(traffic.samples.at(-1)!.body.backend).toBe('redis');
		// Every user kept counting through the outage, and Redis has the final counts.
		for (const user of users) {
			const counts = traffic.samples.filter((s) => s.body.id === user.id).map((s) => s.body.views);
			expect(counts).toEqual(counts.map((_, i) => i + 1));
			expect((await inRedis(user.id)).views).toBe(counts.at(-1));
		}
	});

	it('answers within the deadline when the link stalls (TCP open, nothing answers)', async () => {
		const { store, url } = await setup();
		const { agent } = await login(url, 'dora');
		const fellBack = nextEvent<Error>(store, 'fallback');
		proxy.stall();
		const started = Date.now();
		// The read is served by the store's copy; the save waits on the stalled link.
		const res = await agent.get('/count').expect(200);
		expect(Date.now() - started).toBeLessThan(DEADLINE_MS + SLACK_MS);
		expect(res.body).toMatchObject({ views: 1 });
		expect(store.backend).toBe('memory');
		// Once on memory, no request waits on Redis: one that did would take the deadline.
		const next = Date.now();
		await agent.get('/whoami').expect(200, /"user":"dora"/);
		await agent.get('/count').expect(200, /"views":2/);
		expect(Date.now() - next).toBeLessThan(DEADLINE_MS);
		expect((await fellBack).message).toMatch(/did not answer/);

		const recovered = nextEvent(store, 'recover');
		proxy.pass();
		await recovered;
		expect((await agent.get('/count').expect(200)).body).toMatchObject({ views: 3, backend: 'redis' });
	});

	it('falls back when the link is slower than the deadline, and returns when it is fast again', async () => {
		const { store, url } = await setup();
		const { agent } = await login(url, 'eve');
		proxy.slow(DEADLINE_MS + 100);
		const started = Date.now();
		// A save goes to Redis (a read may be served by the store's copy).
		await agent.get('/count').expect(200, /"views":1/);
		expect(Date.now() - started).toBeLessThan(DEADLINE_MS + SLACK_MS);
		expect(store.backend).toBe('memory');
		// Probes keep missing the deadline: no return to a slow Redis.
		await sleep(600);
		expect(store.backend).toBe('memory');
		const recovered = nextEvent(store, 'recover');
		proxy.slow(0);
		await recovered;
		expect(store.backend).toBe('redis');
	});

	it('does not flap with a link that flaps every 150 ms', async () => {
		const { store, url } = await setup({ minFallbackMs: 1_000, recoverAfterProbes: 3 });
		const { agent, id } = await login(url, 'finn');
		const traffic = track(new Traffic([agent]).start());
		let recoveries = 0;
		store.on('recover', () => recoveries++);
		for (let i = 0; i < 12; i++) {
			if (i % 2 === 0) proxy.cut();
			else proxy.pass();
			await sleep(150);
		}

		proxy.pass();
		await traffic.stop();
		expect(traffic.failed).toEqual([]);
		expect(traffic.worstMs).toBeLessThan(DEADLINE_MS + SLACK_MS);
		expect(recoveries).toBeLessThanOrEqual(1);
		if (store.backend === 'memory') await nextEvent(store, 'recover');
		const last = traffic.samples.at(-1)!.body.views;
		expect((await inRedis(id)).views).toBe(last);
	});

	it('keeps a logged-in user logged in through a 10-second outage', async () => {
		const { store, url } = await setup();
		const { agent, id } = await login(url, 'gil');
		await redis.kill();
		const seen: Array<string | null> = [];
		for (let elapsed = 0; elapsed < 10_000; elapsed += 500) {
			seen.push((await agent.get('/whoami').expect(200)).body.user);
			await sleep(500);
		}

		expect(seen.every((user) => user === 'gil')).toBe(true);
		const recovered = nextEvent(store, 'recover');
		await redis.restart();
		await recovered;
		expect((await agent.get('/whoami').expect(200)).body).toMatchObject({ user: 'gil', backend: 'redis' });
		expect((await inRedis(id)).user).toBe('gil');
	}, 20_000);

	it('keeps a logout done during the outage done after it', async () => {
		const { store, url, app } = await setup();
		const { agent, id, cookie } = await login(url, 'hal');
		proxy.cut();
		await agent.post('/logout').expect(200);
		expect(store.stats().tombstones).toBe(1);
		// Redis still has the session: the logout waits in the journal.
		expect(await inRedis(id)).not.toBeNull();
		const written = nextEvent<WriteBackResult>(store, 'writeback');
		proxy.pass();
		expect(await written).toMatchObject({ destroyed: 1 });
		await nextEvent(store, 'recover');
		expect(await inRedis(id)).toBeNull();
		expect((await request(app).get('/whoami').set('Cookie', cookie).expect(200)).body).toMatchObject({
			user: null,
			backend: 'redis',
		});
	});

	it('keeps the pre-login id dead after a regenerate during the outage', async () => {
		const { store, url } = await setup();
		const agent = request.agent(url);
		const before = (await agent.get('/count').expect(200)).body.id;
		proxy.cut();
		const after = (await agent.post('/login?user=ida').expect(200)).body.id;
		expect(after).not.toBe(before);
		const recovered = nextEvent(store, 'recover');
		proxy.pass();
		await recovered;
		expect(await inRedis(before)).toBeNull();
		expect(await inRedis(after)).toMatchObject({ user: 'ida' });
	});

	it('writes sessions created during the outage to Redis on recovery', async () => {
		const { store, url } = await setup();
		proxy.cut();
		const users = await Promise.all(['jay', 'kim', 'lou'].map((user) => login(url, user)));
		// Three sessions to write. The visitors brought no session: regenerate had nothing to
		// destroy, and no tombstone waits for Redis.
		expect(store.stats()).toMatchObject({ pendingWriteBack: 3, tombstones: 0 });
		for (const user of users) expect(await inRedis(user.id)).toBeNull();
		const written = nextEvent<WriteBackResult>(store, 'writeback');
		proxy.pass();
		expect(await written).toMatchObject({ written: 3, destroyed: 0 });
		for (const user of users) expect(await inRedis(user.id)).toMatchObject({ user: expect.any(String) });
		expect(store.stats().pendingWriteBack).toBe(0);
	});

	it('restores what it holds when Redis comes back empty, without overwriting anything newer', async () => {
		const { store, url } = await setup({ minFallbackMs: 1_500 });
		const mia = await login(url, 'mia');
		const ned = await login(url, 'ned');
		// Give the store time to learn the epoch marker.
		await sleep(100);
		await redis.kill();
		await ned.agent.get('/whoami').expect(200);
		await redis.restart();
		// Another instance wrote Ned's session after the restart: it is newer.
		await redis.command('SET', `sess:${ned.id}`, JSON.stringify({ ...sessionData(60), user: 'ned-elsewhere' }), 'EX', '60');
		const written = nextEvent<WriteBackResult>(store, 'writeback');
		expect(await written).toMatchObject({ restored: 1 });
		await nextEvent(store, 'recover');
		expect(await inRedis(mia.id)).toMatchObject({ user: 'mia' });
		expect(await inRedis(ned.id)).toMatchObject({ user: 'ned-elsewhere' });
		expect((await mia.agent.get('/whoami').expect(200)).body).toMatchObject({ user: 'mia', backend: 'redis' });
	});

	it('does not restore anything when Redis comes back with its data', async () => {
		const { store, url } = await setup();
		const { agent } = await login(url, 'oli');
		await sleep(100);
		const results: WriteBackResult[] = [];
		store.on('writeback', (result) => results.push(result));
		proxy.cut();
		await agent.get('/whoami').expect(200);
		const recovered = nextEvent(store, 'recover');
		proxy.pass();
		await recovered;
		expect(results.every((result) => result.restored === 0)).toBe(true);
	});

	it('trips on a connection error but not on a reply error such as WRONGTYPE', async () => {
		const { store } = await setup();
		await redis.command('RPUSH', 'sess:a-list', 'x');
		await expect(store.get('a-list')).rejects.toThrow(/WRONGTYPE/);
		expect(store.backend).toBe('redis');
		expect(store.stats().failovers).toBe(0);
	});

	it('never emits disconnect or error, which would break express-session or the process', async () => {
		const { store, url } = await setup();
		const emitted: string[] = [];
		const emit = store.emit.bind(store);
		store.emit = (event: string | symbol, ...args: unknown[]) => {
			emitted.push(String(event));
			return emit(event, ...args);
		};

		const { agent } = await login(url, 'pat');
		await redis.kill();
		await agent.get('/count').expect(200);
		const recovered = nextEvent(store, 'recover');
		await redis.restart();
		await recovered;
		expect(emitted).toContain('fallback');
		expect(emitted).toContain('recover');
		expect(emitted).not.toContain('disconnect');
		expect(emitted).not.toContain('error');
	});
});

describe('the outage journal', () => {
	const data = (extra: Record<string, unknown> = {}) => sessionData(60, extra) as unknown as SessionData;

	it('does not let a request still in flight bring back a session destroyed during the outage', async () => {
		const { store } = await setup();
		const sid = newSid();
		await store.set(sid, data({ user: 'quinn' }));
		proxy.cut();
		await store.destroy(sid);
		// A slower request of the same session finishes after the logout and saves.
		await store.set(sid, data({ user: 'quinn', views: 9 }));
		expect(await store.get(sid)).toBeNull();
		const recovered = nextEvent(store, 'recover');
		proxy.pass();
		await recovered;
		expect(await inRedis(sid)).toBeNull();
	});

	it('keeps a session destroyed while its save waited on a stalled Redis destroyed', async () => {
		const { store } = await setup();
		const sid = newSid();
		await store.set(sid, data({ user: 'rex' }));
		proxy.stall();
		const destroyed = store.destroy(sid);
		await sleep(20);
		const saved = store.set(sid, data({ user: 'rex', views: 2 }));
		await Promise.all([destroyed, saved]);
		expect(await store.get(sid)).toBeNull();
		const recovered = nextEvent(store, 'recover');
		proxy.pass();
		await recovered;
		expect(await inRedis(sid)).toBeNull();
	});

	it('bounds the tombstones, logging once when the bound is hit', async () => {
		const error = jest.fn();
		const { store } = await setup({ maxTombstones: 2, logger: { warn() {}, error } });
		proxy.cut();
		for (let i = 0; i < 4; i++) await store.destroy(newSid());
		expect(store.stats().tombstones).toBe(2);
		expect(error).toHaveBeenCalledTimes(1);
		expect(error.mock.calls[0][0]).toMatch(/more than 2 sessions destroyed during the outage/);
	});

	it('writes back a touch as an expiry, without resurrecting a session Redis no longer has', async () => {
		const { store } = await setup();
		const [kept, gone] = [newSid(), newSid()];
		await store.set(kept, sessionData(5) as unknown as SessionData);
		await store.set(gone, sessionData(5) as unknown as SessionData);
		proxy.cut();
		await store.touch(kept, sessionData(3600) as unknown as SessionData);
		await store.touch(gone, sessionData(3600) as unknown as SessionData);
		// Another instance destroys one of them meanwhile.
		await redis.command('DEL', `sess:${gone}`);
		const written = nextEvent<WriteBackResult>(store, 'writeback');
		proxy.pass();
		// Only the session Redis still had was renewed.
		expect(await written).toMatchObject({ touched: 1 });
		expect(Number(await redis.command('TTL', `sess:${kept}`))).toBeGreaterThan(3590);
		expect(await inRedis(gone)).toBeNull();
	});

	it('reports the outage in stats()', async () => {
		const { store } = await setup();
		await store.set(newSid(), data());
		proxy.cut();
		await store.set(newSid(), data());
		await store.destroy(newSid());
		const stats = store.stats();
		expect(stats).toMatchObject({ backend: 'memory', failovers: 1, pendingWriteBack: 2, tombstones: 1, memorySessions: 2 });
		expect(stats.lastError).toBeInstanceOf(Error);
		expect(stats.since.getTime()).toBeGreaterThan(Date.now() - 5_000);
		expect(stats.redisLatencyMs).toBeGreaterThan(0);
	});
});

describe('split brain: two instances on one Redis, one cut off', () => {
	it('keeps serving both; the cut-off instance\'s logout reaches the other after recovery', async () => {
		const { store: cutOff, url: cutUrl } = await setup();
		const other = new ResilientStore({ url: redis.url, logger: silentLogger, ...fastFailover });
		cleanups.push(() => other.close());
		const { url: otherUrl, server } = await listen(createApp(other));
		cleanups.push(() => new Promise((resolve) => server.close(resolve)));
		const { id, cookie } = await login(cutUrl, 'rae');

		proxy.cut();
		await request(cutUrl).post('/logout').set('Cookie', cookie).expect(200);
		expect(cutOff.backend).toBe('memory');
		// The other instance still reaches Redis, where the logout has not arrived yet.
		expect((await request(otherUrl).get('/whoami').set('Cookie', cookie).expect(200)).body).toMatchObject({
			user: 'rae',
			backend: 'redis',
		});

		const recovered = nextEvent(cutOff, 'recover');
		proxy.pass();
		await recovered;
		expect(await inRedis(id)).toBeNull();
		expect((await request(otherUrl).get('/whoami').set('Cookie', cookie).expect(200)).body.user).toBeNull();
	});
});

describe('an ACL user limited to the session prefix', () => {
	beforeEach(async () => {
		await redis.command('ACL', 'SETUSER', 'app', 'on', '>app-password', '~sess:*', '+@all');
		cleanups.push(() => redis.command('ACL', 'DELUSER', 'app'));
	});

	it('goes back to Redis after a cut, though the marker key outside the prefix is refused', async () => {
		const warn = jest.fn();
		const url = proxy.url.replace('redis://', 'redis://app:app-password@');
		const store = new ResilientStore({ url, logger: { warn, error: jest.fn() }, ...fastFailover });
		cleanups.push(() => store.close());
		const sid = newSid();
		await store.set(sid, sessionData(60, { views: 1 }) as SessionData);
		expect(store.backend).toBe('redis');
		const fellBack = nextEvent(store, 'fallback');
		proxy.cut();
		await fellBack;
		await store.set(sid, sessionData(60, { views: 2 }) as SessionData);
		const recovered = nextEvent(store, 'recover');
		proxy.pass();
		await recovered;
		expect(store.backend).toBe('redis');
		expect(await inRedis(sid)).toMatchObject({ views: 2 });
		expect(warn.mock.calls.map(([message]) => message).join('\n')).toMatch(/refused the marker key.*NOPERM/);
	});
});
