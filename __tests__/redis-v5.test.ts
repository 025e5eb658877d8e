import express from 'express';
import type { SessionData } from 'express-session';
import request from 'supertest';
import { createClient } from 'redis5';
import { loginGuard, rateLimit, ResilientStore, silentLogger } from '../lib/index.js';
import { createApp, newSid, sessionData } from './helpers/app.js';
import { RedisServer } from './helpers/redis-server.js';
import { fastFailover, nextEvent } from './helpers/common.js';

let redis: RedisServer;
let client: ReturnType<typeof createClient>;
let store: ResilientStore;

beforeAll(async () => {
	redis = await RedisServer.start();
	client = createClient({
		url: redis.url,
		disableOfflineQueue: true,
		socket: { reconnectStrategy: () => 50 },
	});
	await client.connect();
	store = new ResilientStore({ client: client as never, logger: silentLogger, ...fastFailover });
});

afterAll(async () => {
	await store.close();
	client.destroy();
	await redis.kill();
});

describe('with a node-redis v5 client', () => {
	it('stores, reads, lists and destroys sessions', async () => {
		const sid = newSid();
		await store.set(sid, sessionData(600, { user: 'vi' }) as unknown as SessionData);
		expect(await store.get(sid)).toMatchObject({ user: 'vi' });
		expect(await store.ids()).toContain(sid);
		await store.destroy(sid);
		expect(await store.get(sid)).toBeNull();
	});

	it('serves a rate limit and a login guard', async () => {
		const app = createApp(store);
		app.get('/api', rateLimit({ store, limit: 2, windowMs: 60_000 }), (_req, res) => res.json({ ok: true }));
		app.post('/guarded', express.json(), loginGuard({ store, maxFailures: 1, logger: silentLogger }), (_req, res) => {
			res.status(401).end();
		});
		const agent = request.agent(app);
		expect([(await agent.get('/api')).status, (await agent.get('/api')).status, (await agent.get('/api')).status]).toEqual([
			200, 200, 429,
		]);
		const guarded = () => agent.post('/guarded').send({ username: 'wu' });
		expect([(await guarded()).status, (await guarded()).status]).toEqual([401, 429]);
		expect(store.backend).toBe('redis');
	});

	it('falls back when Redis dies and returns when it is back', async () => {
		const app = createApp(store);
		const agent = request.agent(app);
		await agent.post('/login?user=xan').expect(200);
		await redis.kill();
		expect((await agent.get('/whoami').expect(200)).body).toMatchObject({ user: 'xan', backend: 'memory' });
		const recovered = nextEvent(store, 'recover');
		await redis.restart();
		await recovered;
		expect((await agent.get('/whoami').expect(200)).body).toMatchObject({ user: 'xan', backend: 'redis' });
	});
});
