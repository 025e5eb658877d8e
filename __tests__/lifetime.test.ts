import type { SessionData } from 'express-session';
import request from 'supertest';
import { ResilientStore, type ResilientStoreOptions, silentLogger } from '../lib/index.js';
import { createApp, newSid, sessionData } from './helpers/app.js';
import { connected, fastFailover, nextEvent, sleep } from './helpers/common.js';
import { useRedisServer } from './helpers/redis-server.js';
import { TcpProxy } from './helpers/tcp-proxy.js';

/**
 * The absolute lifetime (`absoluteLifetimeMs`): a session ends that long after login,
 * however active, on every instance, in Redis and in memory.
 */

const LIFETIME_MS = 3_000;
const HOUR_MS = 3_600_000;
const FIELD = '__resilientSessionEndsAt';

const fixture = useRedisServer();

const instance = async (options: ResilientStoreOptions = {}) => {
	const store = new ResilientStore({ logger: silentLogger, ...fastFailover, absoluteLifetimeMs: LIFETIME_MS, ...options });
	fixture.afterTest(() => store.close());
	if (options.url) await connected(store);
	return { store, app: createApp(store, { cookie: { maxAge: HOUR_MS } }) };
};

const storedText = async (id: string) => String(await fixture.redis.command('GET', `sess:${id}`));

/**
 * The time to live of session `id` in Redis, and what was left until `endsAt` when it
 * was asked for: Redis's answer is no older than that moment.
 */
const ttlAgainst = async (id: string, endsAt: number) => {
	const left = endsAt - Date.now();
	return { ttl: Number(await fixture.redis.command('PTTL', `sess:${id}`)), left };
};

describe('absoluteLifetimeMs', () => {
	it('ends a session that long after login on every instance, however active, and reads never show its end', async () => {
		const a = await instance({ url: fixture.redis.url });
		const b = await instance({ url: fixture.redis.url });
		const onA = request.agent(a.app);
		const loggedInAt = Date.now();
		const { id } = (await onA.post('/login?user=ann').expect(200)).body;
		const cookie = onA.jar.getCookies({ path: '/', domain: '127.0.0.1', secure: false, script: false }).toValueString();
		const endsAt = Number(JSON.parse(await storedText(id))[FIELD]);
		expect(endsAt).toBeGreaterThanOrEqual(loggedInAt + LIFETIME_MS);
		expect(endsAt).toBeLessThanOrEqual(Date.now() + LIFETIME_MS);

		// Active on both instances: a change on B, reads on A. Each write and renewal leaves
		// the expiry at the session's end, not an hour away.
		for (let step = 0; step < 4; step++) {
			await request(b.app).get('/count').set('Cookie', cookie).expect(200, new RegExp(`"views":${step + 1}`));
			await onA.get('/whoami').expect(200, /"user":"ann"/);
			const { ttl, left } = await ttlAgainst(id, endsAt);
			expect(ttl).toBeLessThanOrEqual(left + 5);
			await sleep(200);
		}

		// What the store hands express-session carries nothing of its own.
		const read = (await a.store.get(id)) as unknown as Record<string, unknown>;
		expect(read).toMatchObject({ user: 'ann', views: 4 });
		expect(Object.keys(read).sort()).toEqual(['cookie', 'user', 'views']);
		expect(Object.keys((await b.store.all()) ?? [])).toHaveLength(1);
		expect(Object.keys(((await b.store.all()) as unknown as Array<Record<string, unknown>>)[0]!)).not.toContain(FIELD);

		await sleep(endsAt - Date.now() + 200);
		await onA.get('/whoami').expect(200, /"user":null/);
		await request(b.app).get('/whoami').set('Cookie', cookie).expect(200, /"user":null/);
		expect(await fixture.redis.command('EXISTS', `sess:${id}`)).toBe(0);

		// A new login starts a new lifetime.
		const again = (await onA.post('/login?user=ann').expect(200)).body.id as string;
		expect(Number(JSON.parse(await storedText(again))[FIELD])).toBeGreaterThan(endsAt + LIFETIME_MS / 2);
		await onA.get('/whoami').expect(200, /"user":"ann"/);
	}, 20_000);

	it('keeps the end first stored when an instance with no copy writes the session', async () => {
		const a = await instance({ url: fixture.redis.url });
		const b = await instance({ url: fixture.redis.url });
		const id = newSid();
		await a.store.set(id, sessionData(3_600, { user: 'bo' }) as never);
		const endsAt = Number(JSON.parse(await storedText(id))[FIELD]);
		await sleep(300);
		// B never read the session: the end it would give it starts now, later than A's.
		await b.store.set(id, sessionData(3_600, { user: 'bo', views: 1 }) as never);
		const stored = JSON.parse(await storedText(id));
		expect(stored).toMatchObject({ user: 'bo', views: 1, [FIELD]: endsAt });
		const { ttl, left } = await ttlAgainst(id, endsAt);
		expect(ttl).toBeLessThanOrEqual(left + 5);
	});

	it('ends an active session in memory-only mode too', async () => {
		const { app } = await instance();
		const agent = request.agent(app);
		await agent.post('/login?user=cy').expect(200);
		const loggedIn = Date.now();
		while (Date.now() - loggedIn < LIFETIME_MS - 1_000) {
			await agent.get('/count').expect(200);
			await agent.get('/whoami').expect(200, /"user":"cy"/);
			await sleep(200);
		}

		await sleep(loggedIn + LIFETIME_MS + 200 - Date.now());
		await agent.get('/whoami').expect(200, /"user":null/);
	}, 20_000);

	it('keeps the end through the write-back after an outage and the restore after an empty restart', async () => {
		const proxy = await TcpProxy.start(fixture.redis.port);
		fixture.afterTest(() => proxy.close());
		const { store, app } = await instance({ url: proxy.url, minFallbackMs: 300 });
		const agent = request.agent(app);
		const { id } = (await agent.post('/login?user=di').expect(200)).body;
		const endsAt = Number(JSON.parse(await storedText(id))[FIELD]);

		// Changed during an outage, then written back.
		const fellBack = nextEvent(store, 'fallback');
		proxy.cut();
		await agent.get('/count').expect(200, /"views":1/);
		await fellBack;
		await agent.get('/count').expect(200, /"views":2/);
		const writtenBack = nextEvent(store, 'writeback');
		proxy.pass();
		await writtenBack;
		expect(JSON.parse(await storedText(id))).toMatchObject({ views: 2, [FIELD]: endsAt });
		const writtenBackTtl = await ttlAgainst(id, endsAt);
		expect(writtenBackTtl.ttl).toBeLessThanOrEqual(writtenBackTtl.left + 5);

		// Redis restarts empty: the copy held here (read again after the recovery, which
		// dropped the copies that may have missed a change) is restored with its end.
		await agent.get('/whoami').expect(200, /"user":"di"/);
		await sleep(100);
		await fixture.redis.kill();
		await agent.get('/whoami').expect(200, /"user":"di"/);
		const restored = nextEvent(store, 'writeback');
		await fixture.redis.restart();
		expect(await restored).toMatchObject({ restored: 1 });
		expect(JSON.parse(await storedText(id))).toMatchObject({ views: 2, [FIELD]: endsAt });
		const restoredTtl = await ttlAgainst(id, endsAt);
		expect(restoredTtl.ttl).toBeLessThanOrEqual(restoredTtl.left + 5);
	}, 20_000);

	it('keeps the end when the copy was dropped between the read and the write, in memory too', async () => {
		const proxy = await TcpProxy.start(fixture.redis.port);
		fixture.afterTest(() => proxy.close());
		const a = await instance({ url: proxy.url });
		const b = await instance({ url: fixture.redis.url });
		const id = newSid();
		await b.store.set(id, sessionData(3_600, { user: 'ed' }) as never);
		const endsAt = Number(JSON.parse(await storedText(id))[FIELD]);
		await sleep(300);
		// A reads the session (a request starts), B changes it meanwhile: A's copy is dropped.
		const read = (await a.store.get(id))!;
		await b.store.set(id, sessionData(3_600, { user: 'ed', views: 1 }) as never);
		await a.store.length();
		await a.store.set(id, { ...read, views: 2 } as never);
		expect(JSON.parse(await storedText(id))).toMatchObject({ views: 2, [FIELD]: endsAt });
		// Cut off from Redis (whose expiry would have told it), A serves from its copy,
		// which ends with the session.
		const fellBack = nextEvent(a.store, 'fallback');
		proxy.cut();
		await a.store.get(newSid());
		await fellBack;
		expect(await a.store.get(id)).toMatchObject({ views: 2 });
		await sleep(endsAt - Date.now() + 100);
		expect(await a.store.get(id)).toBeNull();
	}, 20_000);

	it('refuses values it cannot use, naming the option', () => {
		expect(() => new ResilientStore({ absoluteLifetimeMs: 0 })).toThrow(/absoluteLifetimeMs/);
		expect(() => new ResilientStore({ absoluteLifetimeMs: 1.5 })).toThrow(TypeError);
		const serializer = { parse: (text: string) => JSON.parse(text) as SessionData, stringify: JSON.stringify };
		expect(() => new ResilientStore({ absoluteLifetimeMs: 60_000, serializer })).toThrow(/absoluteLifetimeMs.*JSON/);
		expect(() => new ResilientStore({ absoluteLifetimeMs: 60_000, disableTTL: true })).toThrow(/absoluteLifetimeMs.*disableTTL/);
	});
});
