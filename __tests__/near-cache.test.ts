import type { SessionData } from 'express-session';
import { createClient } from 'redis';
import request from 'supertest';
import { ResilientStore, type ResilientStoreOptions, silentLogger } from '../lib/index.js';
import { createApp, newSid, sessionData } from './helpers/app.js';
import { useRedisServer } from './helpers/redis-server.js';
import { connected, fastFailover, nextEvent } from './helpers/common.js';
import { TcpProxy } from './helpers/tcp-proxy.js';

const fixture = useRedisServer();

const HOUR_MS = 3_600_000;

/** An instance: a store reaching the file's Redis through a proxy that counts round trips. */
const instance = async (options: ResilientStoreOptions = {}) => {
	const proxy = await TcpProxy.start(fixture.redis.port);
	const store = new ResilientStore({ url: proxy.url, logger: silentLogger, ...fastFailover, ...options });
	fixture.afterTest(() => proxy.close(), () => store.close());
	await connected(store);
	const app = createApp(store, { cookie: { maxAge: HOUR_MS } });
	/** Round trips to Redis that `step` causes. */
	const roundTrips = async (step: () => Promise<unknown>) => {
		const before = proxy.chunksToServer;
		await step();
		return proxy.chunksToServer - before;
	};
	/**
	 * A round trip of this store's own: whatever Redis told its connection before the
	 * reply (an invalidation) has arrived once it resolves.
	 */
	const heard = () => store.get(newSid());
	return { proxy, store, app, roundTrips, heard };
};

const session = (user: string, seconds = HOUR_MS / 1000) => sessionData(seconds, { user }) as unknown as SessionData;

describe('the near cache', () => {
	it('serves a read-only request on a session it holds a current copy of with no round trip', async () => {
		const { app, roundTrips } = await instance();
		const agent = request.agent(app);
		await agent.post('/login?user=ann').expect(200);
		// The login left a copy: neither the read nor the touch goes to Redis.
		expect(await roundTrips(() => agent.get('/whoami').expect(200, /"user":"ann"/))).toBe(0);
		expect(await roundTrips(() => agent.get('/whoami').expect(200, /"user":"ann"/))).toBe(0);
		// A request that changes its session writes it, and reads nothing.
		expect(await roundTrips(() => agent.get('/count').expect(200))).toBe(1);
	});

	it('serves a copy through a serializer whose parse answers with a promise, by promise and by callback', async () => {
		const serializer = { stringify: JSON.stringify, parse: async (text: string) => JSON.parse(text) as SessionData };
		const { store, roundTrips } = await instance({ serializer });
		const sid = newSid();
		await store.set(sid, session('gus'));
		let read: unknown;
		expect(await roundTrips(async () => (read = await store.get(sid)))).toBe(0);
		expect(read).toMatchObject({ user: 'gus' });
		// Wrapped, so that a promise given to the callback would show as one.
		const byCallback = new Promise<{ value: unknown }>((resolve, reject) =>
			store.get(sid, (error, value) => (error ? reject(error) : resolve({ value }))),
		);
		expect(await roundTrips(() => byCallback)).toBe(0);
		expect((await byCallback).value).toMatchObject({ user: 'gus' });
	});

	it('sees a change made on another instance as soon as Redis has told it', async () => {
		const a = await instance();
		const b = await instance();
		const sid = newSid();
		await a.store.set(sid, session('old'));
		expect(await b.store.get(sid)).toMatchObject({ user: 'old' });
		expect(await b.roundTrips(() => b.store.get(sid))).toBe(0);
		await a.store.set(sid, session('new'));
		await b.heard();
		expect(await b.store.get(sid)).toMatchObject({ user: 'new' });
	});

	it('sees a logout on another instance, and a change written by connect-redis', async () => {
		const a = await instance();
		const b = await instance();
		const agent = request.agent(a.app);
		const { id } = (await agent.post('/login?user=bo').expect(200)).body;
		expect(await b.store.get(id)).toMatchObject({ user: 'bo' });
		await a.store.destroy(id);
		await b.heard();
		expect(await b.store.get(id)).toBeNull();

		const sid = newSid();
		await b.store.set(sid, session('cy'));
		const client = createClient({ url: fixture.redis.url });
		await client.connect();
		fixture.afterTest(() => client.close());
		await client.set(`sess:${sid}`, JSON.stringify(session('cy-elsewhere')), { expiration: { type: 'EX', value: 60 } });
		await b.heard();
		expect(await b.store.get(sid)).toMatchObject({ user: 'cy-elsewhere' });
	});

	it('sees a session expire', async () => {
		const { store } = await instance();
		const sid = newSid();
		await store.set(sid, session('dee', 0.3));
		expect(await store.get(sid)).toMatchObject({ user: 'dee' });
		await new Promise((resolve) => setTimeout(resolve, 400));
		expect(await store.get(sid)).toBeNull();
	});

	it('drops its copies with a dropped connection', async () => {
		const a = await instance();
		const b = await instance();
		const sid = newSid();
		await a.store.set(sid, session('eli'));
		expect(await a.store.get(sid)).toMatchObject({ user: 'eli' });
		a.proxy.cut();
		await a.store.get(newSid());
		expect(a.store.backend).toBe('memory');
		// Changed while A cannot hear of it.
		await b.store.set(sid, session('eli-changed'));
		const recovered = nextEvent(a.store, 'recover');
		a.proxy.pass();
		await recovered;
		expect(await a.store.get(sid)).toMatchObject({ user: 'eli-changed' });
	});

	it('reads from Redis when Redis has not answered for longer than nearCacheMaxLagMs', async () => {
		const a = await instance({ nearCacheMaxLagMs: 100 });
		const sid = newSid();
		await a.store.set(sid, session('fay'));
		expect(await a.roundTrips(() => a.store.get(sid))).toBe(0);
		await new Promise((resolve) => setTimeout(resolve, 150));
		expect(await a.roundTrips(() => a.store.get(sid))).toBe(1);
		expect(await a.roundTrips(() => a.store.get(sid))).toBe(0);
	});

	it('proves its link with a PING in the background under traffic, so that no read goes to Redis for it', async () => {
		const a = await instance({ nearCacheMaxLagMs: 400 });
		const sid = newSid();
		await a.store.set(sid, session('ivy'));
		const [monitor, marker] = [createClient({ url: fixture.redis.url }), createClient({ url: fixture.redis.url })];
		await Promise.all([monitor.connect(), marker.connect()]);
		fixture.afterTest(() => monitor.close(), () => marker.close());
		const sent: string[] = [];
		await monitor.monitor((line) => sent.push(/"([^"]+)"/.exec(line)?.[1]?.toLowerCase() ?? line));
		// Reads for three periods: each past half a period since Redis last answered sends a PING.
		for (let i = 0; i < 60; i++) {
			expect(await a.store.get(sid)).toMatchObject({ user: 'ivy' });
			await new Promise((resolve) => setTimeout(resolve, 20));
		}

		// An ECHO from another connection marks the end: whatever came before it has been seen.
		await marker.echo('end');
		while (!sent.includes('echo')) await new Promise((resolve) => setTimeout(resolve, 5));
		const beforeEnd = sent.slice(0, sent.indexOf('echo'));
		expect(beforeEnd.filter((command) => command !== 'ping')).toEqual([]);
		expect(beforeEnd.filter((command) => command === 'ping').length).toBeGreaterThanOrEqual(2);
	});

	it('is off for a client passed in, which gets no word of changes made elsewhere', async () => {
		const proxy = await TcpProxy.start(fixture.redis.port);
		const client = createClient({ url: proxy.url });
		await client.connect();
		const store = new ResilientStore({ client, logger: silentLogger });
		fixture.afterTest(() => proxy.close(), () => client.close(), () => store.close());
		const sid = newSid();
		await store.set(sid, session('gil'));
		const before = proxy.chunksToServer;
		expect(await store.get(sid)).toMatchObject({ user: 'gil' });
		expect(proxy.chunksToServer - before).toBe(1);
	});

	it('is off with nearCache: false', async () => {
		const { store, roundTrips } = await instance({ nearCache: false });
		const sid = newSid();
		await store.set(sid, session('hal'));
		expect(await roundTrips(() => store.get(sid))).toBe(1);
	});
});

describe('lazy renewal', () => {
	it('renews a session read from Redis only once its expiry would move by touchAfterMs', async () => {
		const { store, app, roundTrips, heard } = await instance({ touchAfterMs: 5_000, nearCache: false });
		const agent = request.agent(app);
		const { id } = (await agent.post('/login?user=ivy').expect(200)).body;
		const pttl = async () => Number(await fixture.redis.command('PTTL', `sess:${id}`));
		// Just written: a read sends nothing but the read itself.
		expect(await roundTrips(() => agent.get('/whoami').expect(200))).toBe(1);
		const fresh = await pttl();
		expect(fresh).toBeLessThanOrEqual(HOUR_MS);
		// 10 s of its lifetime gone: the read renews it, in the same round trip.
		await fixture.redis.command('PEXPIRE', `sess:${id}`, String(HOUR_MS - 10_000));
		await heard();
		expect(await roundTrips(() => agent.get('/whoami').expect(200))).toBe(1);
		expect(await pttl()).toBeGreaterThan(HOUR_MS - 5_000);
		expect(store.backend).toBe('redis');
	});

	it('renews a session served from the near cache by its touch, on every request with touchAfterMs: 0', async () => {
		const { store, app, roundTrips } = await instance({ touchAfterMs: 0 });
		const agent = request.agent(app);
		const { id } = (await agent.post('/login?user=jay').expect(200)).body;
		const pttl = async () => Number(await fixture.redis.command('PTTL', `sess:${id}`));
		// The first touch loads its script into Redis (a round trip of its own).
		await agent.get('/whoami').expect(200);
		for (let request = 0; request < 3; request++) {
			await new Promise((resolve) => setTimeout(resolve, 50));
			const before = await pttl();
			// Served by the copy: the one round trip is the touch, which moves the expiry on.
			expect(await roundTrips(() => agent.get('/whoami').expect(200, /"user":"jay"/))).toBe(1);
			expect(await pttl()).toBeGreaterThan(before);
		}
		// The copy holds the cookie the touch gave the session, as express-session's MemoryStore does.
		const stored = (await store.get(id))!.cookie.expires as unknown as string;
		expect(new Date(stored).getTime()).toBeGreaterThan(Date.now() + HOUR_MS - 1_000);
	});

	it('does not let a read with no touch after it stand in for the renewal of a later request', async () => {
		const { store, app, roundTrips, heard } = await instance({ touchAfterMs: 0 });
		const agent = request.agent(app);
		const { id } = (await agent.post('/login?user=lee').expect(200)).body;
		await agent.get('/whoami').expect(200);
		// Changed elsewhere, so that the next read goes to Redis: it renews the session.
		await fixture.redis.command('PEXPIRE', `sess:${id}`, String(HOUR_MS - 60_000));
		await heard();
		expect(await store.get(id)).toMatchObject({ user: 'lee' });
		// Other code's read, with no touch after it. A request a while later is served by
		// the copy, and its touch renews the session.
		await new Promise((resolve) => setTimeout(resolve, 1_200));
		// A round trip of the store's own, so that the near cache serves the copy.
		await heard();
		const before = Number(await fixture.redis.command('PTTL', `sess:${id}`));
		expect(await roundTrips(() => agent.get('/whoami').expect(200, /"user":"lee"/))).toBe(1);
		expect(Number(await fixture.redis.command('PTTL', `sess:${id}`))).toBeGreaterThan(before);
	});

	it('sends no touch after a read that renewed the session in the same request', async () => {
		const { app, roundTrips } = await instance({ touchAfterMs: 0, nearCache: false });
		const agent = request.agent(app);
		await agent.post('/login?user=kit').expect(200);
		expect(await roundTrips(() => agent.get('/whoami').expect(200))).toBe(1);
	});
});
