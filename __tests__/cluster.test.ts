import express from 'express';
import type { SessionData } from 'express-session';
import { createCluster, type RedisClusterType } from 'redis';
import request from 'supertest';
import { type BudgetInfo, loginGuard, rateLimit, ResilientStore, silentLogger, storeDefaults } from '../lib/index.js';
import { createApp, newSid, sessionData } from './helpers/app.js';
import { RedisCluster } from './helpers/redis-cluster.js';

let cluster: RedisCluster;
let client: RedisClusterType;
let store: ResilientStore;

beforeAll(async () => {
	cluster = await RedisCluster.start();
	client = createCluster({ rootNodes: cluster.rootNodes });
	client.on('error', () => {});
	await client.connect();
	store = new ResilientStore({ client: client as never, logger: silentLogger, timeoutMs: 300 });
}, 30_000);

afterAll(async () => {
	await store.close();
	client.destroy();
	await cluster.stop();
});

const data = (extra: Record<string, unknown> = {}) => sessionData(600, extra) as unknown as SessionData;

/** How many keys each node of the cluster holds. */
const keysPerNode = async () => Promise.all(cluster.nodes.map(async (node) => Number(await node.command('DBSIZE'))));

/** Session ids chosen so that each master of the cluster owns `perMaster` of their keys. */
const sidsOnEveryMaster = async (perMaster: number) => {
	const owned = new Map<number, string[]>(cluster.nodes.map((node) => [node.port, []]));
	while ([...owned.values()].some((sids) => sids.length < perMaster)) {
		const sid = newSid();
		const slot = Number(await cluster.nodes[0].command('CLUSTER', 'KEYSLOT', `${storeDefaults.prefix}${sid}`));
		const sids = owned.get(client.slots[slot].master.port);
		if (sids && sids.length < perMaster) sids.push(sid);
	}
	return [...owned.values()].flat();
};

describe('on a Redis Cluster', () => {
	it('stores, reads and destroys sessions spread over every node', async () => {
		await store.clear();
		const sids = Array.from({ length: 30 }, () => newSid());
		await Promise.all(sids.map((sid, i) => store.set(sid, data({ views: i }))));
		expect((await keysPerNode()).filter((count) => count > 0).length).toBeGreaterThan(1);
		for (const [i, sid] of sids.entries()) expect(await store.get(sid)).toMatchObject({ views: i });
		await Promise.all(sids.map((sid) => store.destroy(sid)));
		expect(await store.get(sids[0])).toBeNull();
		expect(store.backend).toBe('redis');
	});

	it('lists and clears sessions spread over every slot', async () => {
		await store.clear();
		const sids = Array.from({ length: 20 }, () => newSid());
		await Promise.all(sids.map((sid) => store.set(sid, data({ user: sid }))));

		const all = await store.all();
		expect(all!.map((session) => session.id).sort()).toEqual([...sids].sort());
		expect(all!.every((session) => session.user === session.id)).toBe(true);
		expect(await store.length()).toBe(20);
		await store.clear();
		expect(await store.length()).toBe(0);
		expect(store.backend).toBe('redis');
	});

	it('weighs, charges and enforces two windows of a budget, each key set in one slot', async () => {
		const app = createApp(store);
		const limiter = rateLimit({
			store,
			prefix: 'budget:',
			windows: [
				{ windowMs: 60_000, limit: 10, addressLimit: 14 },
				{ windowMs: 3_600_000, limit: 12 },
			],
			cost: (req) => Number(req.query.cost ?? 1),
		});
		app.get('/budget', limiter, async (req, res) => {
			const { tokens } = req.query;
			const budget = (req as unknown as { rateLimit: BudgetInfo }).rateLimit;
			res.json({ charged: tokens === undefined ? null : await budget.charge(Number(tokens)) });
		});

		const agent = request.agent(app);
		const { id } = (await agent.post('/login?user=ann').expect(200)).body;
		await agent.get('/budget?cost=4').expect(200);
		const charged = await agent.get('/budget?cost=0&tokens=5').expect(200);
		expect(charged.body.charged).toEqual({ remaining: 1, limited: false });
		await agent.get('/budget?cost=2').expect(429);
		await agent.get('/budget?cost=1').expect(200);
		const own = [`budget:{sid:${id}}:60000`, `budget:{sid:${id}}:3600000`];
		expect(await Promise.all(own.map((key) => client.get(key)))).toEqual(['10', '10']);
		const slots = await Promise.all(own.map((key) => cluster.nodes[0].command('CLUSTER', 'KEYSLOT', key)));
		expect(slots[0]).toBe(slots[1]);

		// Another session of the address: its own windows have room, the address's minute
		// (10 of 14 used) has not. Its windows live on another slot than the address's, so
		// they took the cost in a script of their own: given back at once.
		const other = request.agent(app);
		const second = (await other.post('/login?user=bob').expect(200)).body.id as string;
		await other.get('/budget?cost=5').expect(429);
		expect(await client.get(`budget:{sid:${second}}:60000`)).toBeNull();
		await other.get('/budget?cost=4').expect(200);
		expect(await client.get(`budget:{sid:${second}}:60000`)).toBe('4');
		expect(store.backend).toBe('redis');
	});

	it('serves express-session, a rate limit and a login guard with no CROSSSLOT error', async () => {
		const app = createApp(store);
		app.use(express.json());
		app.get('/api', rateLimit({ store, limit: 3, windowMs: 60_000 }), (_req, res) => res.json({ ok: true }));
		app.post('/login-guarded', loginGuard({ store, maxFailures: 2, logger: silentLogger }), (_req, res) => {
			res.status(401).json({ error: 'no' });
		});

		const agent = request.agent(app);
		await agent.post('/login?user=ann').expect(200);
		const api = [];
		for (let i = 0; i < 4; i++) api.push((await agent.get('/api')).status);
		expect(api).toEqual([200, 200, 200, 429]);
		const logins = [];
		for (let i = 0; i < 3; i++) logins.push((await agent.post('/login-guarded').send({ username: 'bob' })).status);
		expect(logins).toEqual([401, 401, 429]);
		expect((await agent.get('/whoami').expect(200)).body).toMatchObject({ user: 'ann', backend: 'redis' });
	});

	it('shows one instance a change, a logout and an expiry made through another at once', async () => {
		// A second instance: a store on a cluster client of its own.
		const otherClient = createCluster({ rootNodes: cluster.rootNodes });
		otherClient.on('error', () => {});
		await otherClient.connect();
		const other = new ResilientStore({ client: otherClient as never, logger: silentLogger, timeoutMs: 300 });
		try {
			const a = createApp(store);
			const b = createApp(other);
			const sids = await sidsOnEveryMaster(1);
			for (const sid of sids) {
				await store.set(sid, data({ user: 'ann', views: 1 }));
				expect(await other.get(sid)).toMatchObject({ views: 1 });
				await other.set(sid, data({ user: 'ann', views: 2 }));
				expect(await store.get(sid)).toMatchObject({ views: 2 });
				await store.destroy(sid);
				expect(await other.get(sid)).toBeNull();
				// The late save of a request that loaded the session before the logout.
				await other.set(sid, data({ user: 'ann', views: 3 }));
				expect(await store.get(sid)).toBeNull();
			}

			// Through the apps: a login on A is read on B, a logout on B is seen on A.
			const onA = request.agent(a);
			await onA.post('/login?user=bo').expect(200);
			const cookie = onA.jar.getCookies({ path: '/', domain: '127.0.0.1', secure: false, script: false }).toValueString();
			await request(b).get('/whoami').set('Cookie', cookie).expect(200, /"user":"bo"/);
			await request(b).post('/logout').set('Cookie', cookie).expect(200);
			await onA.get('/whoami').expect(200, /"user":null/);

			// A session of 300 ms has expired for both once its cookie has.
			const short = newSid();
			await store.set(short, sessionData(0.3, { user: 'cy' }) as unknown as SessionData);
			expect(await other.get(short)).toMatchObject({ user: 'cy' });
			await new Promise((resolve) => setTimeout(resolve, 400));
			expect(await other.get(short)).toBeNull();
			expect(await store.get(short)).toBeNull();
			expect([store.backend, other.backend]).toEqual(['redis', 'redis']);
		} finally {
			await other.close();
			otherClient.destroy();
		}
	});

	it('falls back within the deadline when a master dies', async () => {
		// Two session ids on every master, so the killed one surely holds some of them.
		const sids = await sidsOnEveryMaster(2);
		const users = sids.map((_, i) => `user${i}`);
		const sidOf = new Map(users.map((user, i) => [user, sids[i]]));
		// The chosen id is given to the session the login regenerates into; the one it
		// replaces gets a random id, as a destroyed id is never used again.
		const app = createApp(store, {
			genid: (req) => (req.session ? sidOf.get(String(req.query.user)) : undefined) ?? newSid(),
		});
		const agents = await Promise.all(
			users.map(async (user) => {
				const agent = request.agent(app);
				await agent.post(`/login?user=${user}`).expect(200);
				return agent;
			}),
		);
		await cluster.nodes[0].kill();
		for (const [i, agent] of agents.entries()) {
			const started = Date.now();
			await agent.get('/whoami').expect(200, new RegExp(`"user":"${users[i]}"`));
			expect(Date.now() - started).toBeLessThan(300 + 400);
		}

		expect(store.backend).toBe('memory');
	});
});
