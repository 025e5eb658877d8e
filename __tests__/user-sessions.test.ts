import type { Express } from 'express';
import type { SessionData } from 'express-session';
import { createCluster, type RedisClusterType } from 'redis';
import request from 'supertest';
import { ResilientStore, type ResilientStoreOptions, silentLogger, type WriteBackResult } from '../lib/index.js';
import { newSid, sessionData } from './helpers/app.js';
import { createDevicesApp, userOfSession } from './helpers/devices-app.js';
import { RedisCluster } from './helpers/redis-cluster.js';
import { fastFailover, nextEvent } from './helpers/common.js';
import { useStoreFactory } from './helpers/stores.js';
import { TcpProxy } from './helpers/tcp-proxy.js';

const fixture = useStoreFactory();

/** The index of `user`'s sessions in Redis, with the default prefix. */
const indexKey = (user: string) => `resilient-session:user:{${user}}:sess:`;
const indexed = async (user: string) => ((await fixture.redis.command('ZRANGE', indexKey(user), '0', '-1')) as string[]).sort();

/**
 * An instance of the app: a store with `userId` on `url`, its first connection made. The
 * outages here are kills and cuts, seen at once: a long deadline keeps a loaded test
 * machine from making one of its own.
 */
const instance = async (url: string | undefined, options: ResilientStoreOptions = {}) => {
	const store = fixture.stores.track(
		new ResilientStore({
			...(url && { url }),
			logger: silentLogger,
			...fastFailover,
			timeoutMs: 2_000,
			userId: userOfSession,
			...options,
		}),
	);
	if (url) await store.length();
	return { store, app: createDevicesApp(store) };
};

/** A device: a browser with its own cookie, logged in as `user` on `app`. */
const device = async (app: Express, user: string) => {
	const agent = request.agent(app);
	const res = await agent.post(`/login?user=${user}`).expect(200);
	return { agent, id: (res.body as { id: string }).id, cookie: res.headers['set-cookie'] as unknown as string[] };
};

type Device = Awaited<ReturnType<typeof device>>;

/** Who `device`'s cookie is logged in as, on `app` (`null`: logged out). */
const whoOn = async (app: Express, { cookie }: Device) =>
	((await request(app).get('/whoami').set('Cookie', cookie).expect(200)).body as { user: string | null }).user;

const sortedIds = (devices: Device[]) => devices.map(({ id }) => id).sort();

/**
 * After ann's other devices were logged out from her phone: on every app, only the phone
 * is still ann's, her laptop and tablet are logged out (the laptop's key holds a
 * tombstone), and bob's device is untouched.
 */
const expectOnlyPhoneLeft = async (apps: Express[], { phone, laptop, tablet, bob }: Record<string, Device>) => {
	for (const app of apps) {
		expect(await whoOn(app, phone)).toBe('ann');
		expect(await whoOn(app, laptop)).toBeNull();
		expect(await whoOn(app, tablet)).toBeNull();
		expect(await whoOn(app, bob)).toBe('bob');
	}

	expect(await fixture.redis.command('GET', `sess:${laptop.id}`)).toBe('null');
};

describe('a user\'s sessions on Redis, across two instances', () => {
	it('lists the three devices of a user from either instance, and only live ones of that user', async () => {
		const a = await instance(fixture.redis.url);
		const b = await instance(fixture.redis.url);
		const phone = await device(a.app, 'ann');
		const laptop = await device(b.app, 'ann');
		const tablet = await device(a.app, 'ann');
		await device(b.app, 'bob');

		for (const app of [a.app, b.app]) {
			const { body } = await request(app).get('/devices').set('Cookie', laptop.cookie).expect(200);
			expect(body.current).toBe(laptop.id);
			expect(body.devices.map(({ id }: { id: string }) => id).sort()).toEqual(sortedIds([phone, laptop, tablet]));
			expect(body.devices.every(({ user }: { user: string }) => user === 'ann')).toBe(true);
			for (const { expiresAt } of body.devices) expect(new Date(expiresAt).getTime()).toBeGreaterThan(Date.now());
		}

		const listed = await b.store.sessionsOf('ann');
		expect(listed!.map(({ id }) => id).sort()).toEqual(sortedIds([phone, laptop, tablet]));
		expect(listed![0].session).toMatchObject({ user: 'ann', cookie: expect.any(Object) });
		expect(await indexed('ann')).toEqual(sortedIds([phone, laptop, tablet]));
		expect(await b.store.sessionsOf('nobody')).toEqual([]);
	});

	it('logs out the other devices on both instances and keeps the current one', async () => {
		const a = await instance(fixture.redis.url);
		const b = await instance(fixture.redis.url);
		const phone = await device(a.app, 'ann');
		const laptop = await device(b.app, 'ann');
		const tablet = await device(a.app, 'ann');
		const bob = await device(b.app, 'bob');
		// Both instances hold copies of every session.
		for (const d of [phone, laptop, tablet]) for (const app of [a.app, b.app]) expect(await whoOn(app, d)).toBe('ann');

		const { body } = await phone.agent.post('/logout-others').expect(200);
		expect(body).toMatchObject({ ended: 2, backend: 'redis' });
		expect(await indexed('ann')).toEqual([phone.id]);

		await expectOnlyPhoneLeft([a.app, b.app], { phone, laptop, tablet, bob });
		expect((await a.store.sessionsOf('ann'))!.map(({ id }) => id)).toEqual([phone.id]);
		expect(await indexed('ann')).toEqual([phone.id]);
		expect((await b.store.sessionsOf('bob'))!.map(({ id }) => id)).toEqual([bob.id]);
	});

	it('never lists a destroyed session again, even when a request that loaded it saves it after', async () => {
		const a = await instance(fixture.redis.url);
		const b = await instance(fixture.redis.url);
		const phone = await device(a.app, 'ann');
		const laptop = await device(b.app, 'ann');
		const loaded = (await b.store.get(laptop.id)) as SessionData;
		expect(await a.store.destroySessionsOf('ann', { except: phone.id })).toBe(1);
		// A slow request of the laptop saves the session it loaded before the logout.
		await b.store.set(laptop.id, loaded);
		expect((await a.store.sessionsOf('ann'))!.map(({ id }) => id)).toEqual([phone.id]);
		expect((await b.store.sessionsOf('ann'))!.map(({ id }) => id)).toEqual([phone.id]);
		expect(await b.store.get(laptop.id)).toBeNull();
		expect(await indexed('ann')).toEqual([phone.id]);
	});

	it('moves a session that changes user, and drops a logged-out one from the index', async () => {
		const { app, store } = await instance(fixture.redis.url);
		const phone = await device(app, 'ann');
		const laptop = await device(app, 'ann');
		await phone.agent.post('/become?user=cat').expect(200);
		expect(await indexed('ann')).toEqual([laptop.id]);
		expect(await indexed('cat')).toEqual([phone.id]);
		expect((await store.sessionsOf('cat'))!.map(({ id }) => id)).toEqual([phone.id]);

		await laptop.agent.post('/logout').expect(200);
		expect(await indexed('ann')).toEqual([]);
		expect(await store.sessionsOf('ann')).toEqual([]);
	});

	it('does not list a session that another program gave to another user, and prunes it', async () => {
		const { app, store } = await instance(fixture.redis.url);
		const phone = await device(app, 'ann');
		await fixture.redis.command('SET', `sess:${phone.id}`, JSON.stringify(sessionData(60, { user: 'dan' })), 'EX', '60');
		expect(await store.sessionsOf('ann')).toEqual([]);
		expect(await indexed('ann')).toEqual([]);
	});

	it('destroys the sessions that expire first past maxSessionsPerUser', async () => {
		const { app, store } = await instance(fixture.redis.url, { maxSessionsPerUser: 2 });
		const first = await device(app, 'ann');
		const second = await device(app, 'ann');
		const third = await device(app, 'ann');
		expect(await indexed('ann')).toEqual(sortedIds([second, third]));
		// Ended as a logout: its tombstone went out before the third login was answered.
		expect(await fixture.redis.command('GET', `sess:${first.id}`)).toBe('null');
		expect(await whoOn(app, first)).toBeNull();
		expect(await whoOn(app, third)).toBe('ann');
		expect((await store.sessionsOf('ann'))!.map(({ id }) => id).sort()).toEqual(sortedIds([second, third]));
	});

	it('prunes expired entries on write, and the index expires with its sessions', async () => {
		const { app } = await instance(fixture.redis.url);
		await fixture.redis.command('ZADD', indexKey('ann'), String(Date.now() - 1_000), 'long-gone');
		const phone = await device(app, 'ann');
		expect(await indexed('ann')).toEqual([phone.id]);
		const indexTtl = Number(await fixture.redis.command('PTTL', indexKey('ann')));
		const sessionTtl = Number(await fixture.redis.command('PTTL', `sess:${phone.id}`));
		expect(indexTtl).toBeGreaterThanOrEqual(sessionTtl);
	});

	it('renews the index entry of a session that another instance\'s reads keep alive', async () => {
		const a = await instance(fixture.redis.url);
		const b = await instance(fixture.redis.url);
		const phone = await device(a.app, 'ann');
		// As if the entry were written long ago, and the session kept alive by reads since:
		// its renewal is due.
		await fixture.redis.command('ZADD', indexKey('ann'), 'XX', String(Date.now() + 1_000), phone.id);
		const lifetime = Number(await fixture.redis.command('PTTL', `sess:${phone.id}`));
		await fixture.redis.command('PEXPIRE', `sess:${phone.id}`, String(lifetime - 120_000));
		expect(await whoOn(b.app, phone)).toBe('ann');
		// The renewal goes out on its own; a later command on the same connection follows it.
		await b.store.get(newSid());
		const score = Number(await fixture.redis.command('ZSCORE', indexKey('ann'), phone.id));
		const expiry = Date.now() + Number(await fixture.redis.command('PTTL', `sess:${phone.id}`));
		expect(score).toBeGreaterThan(expiry);
	});

	it('keeps sessions that never expire in an index that never expires, with disableTTL', async () => {
		const { app, store } = await instance(fixture.redis.url, { disableTTL: true });
		const phone = await device(app, 'ann');
		expect(Number(await fixture.redis.command('ZSCORE', indexKey('ann'), phone.id))).toBe(Infinity);
		expect(Number(await fixture.redis.command('PTTL', indexKey('ann')))).toBe(-1);
		expect(await store.sessionsOf('ann')).toEqual([{ id: phone.id, session: expect.objectContaining({ user: 'ann' }), expiresAt: null }]);
	});

	it('indexes nothing without the userId option, and both methods then reject with a TypeError', async () => {
		const { app, store } = await instance(fixture.redis.url, { userId: undefined });
		await device(app, 'ann');
		expect(await fixture.redis.command('KEYS', 'resilient-session:user:*')).toEqual([]);
		await expect(store.sessionsOf('ann')).rejects.toThrow(/userId/);
		await expect(store.destroySessionsOf('ann')).rejects.toThrow(TypeError);
	});

	it('takes express-session\'s callback on both methods, and checks its arguments', async () => {
		const { app, store } = await instance(fixture.redis.url);
		const phone = await device(app, 'ann');
		const listed = await new Promise<unknown>((resolve, reject) =>
			store.sessionsOf('ann', (error, value) => (error ? reject(error) : resolve(value))),
		);
		expect((listed as Array<{ id: string }>).map(({ id }) => id)).toEqual([phone.id]);
		const ended = await new Promise<unknown>((resolve, reject) =>
			store.destroySessionsOf('ann', (error, value) => (error ? reject(error) : resolve(value))),
		);
		expect(ended).toBe(1);
		await expect(store.sessionsOf('' as string)).rejects.toThrow(TypeError);
		await expect(store.destroySessionsOf('ann', { except: 42 as never })).rejects.toThrow(/`except`/);
	});
});

describe('a user\'s sessions when Redis goes down', () => {
	/** Two instances, each through its own proxy, so that one can be held back from Redis. */
	const twoInstances = async () => {
		const proxies = await Promise.all([TcpProxy.start(fixture.redis.port), TcpProxy.start(fixture.redis.port)]);
		const [a, b] = [await instance(proxies[0].url), await instance(proxies[1].url)];
		return { a, b, proxies, close: () => Promise.all(proxies.map((proxy) => proxy.close())) };
	};

	it.each([
		['A recovers first: the other instance\'s write-back is checked against the end', 'a-first'],
		['B recovers first: the end replayed by A reaches what B wrote back', 'b-first'],
	])('logs the other devices out everywhere when Redis was killed in the middle (%s)', async (_name, order) => {
		const { a, b, proxies, close } = await twoInstances();
		try {
			const phone = await device(a.app, 'ann');
			const laptop = await device(b.app, 'ann');
			const tablet = await device(a.app, 'ann');
			const bob = await device(b.app, 'bob');

			const fellBack = [nextEvent(a.store, 'fallback'), nextEvent(b.store, 'fallback')];
			await fixture.redis.kill();
			await Promise.all([whoOn(a.app, phone), whoOn(b.app, laptop)]);
			await Promise.all(fellBack);
			// The laptop keeps working on B meanwhile, and changes its session.
			await laptop.agent.get('/count').expect(200);

			// Only what A holds can be ended now: the tablet.
			const { body } = await phone.agent.post('/logout-others').expect(200);
			expect(body).toEqual({ ended: 1, backend: 'memory' });
			expect(await whoOn(a.app, tablet)).toBeNull();
			expect(await whoOn(a.app, phone)).toBe('ann');

			// Redis comes back empty; one instance recovers before the other.
			const [first, second] = order === 'a-first' ? [a, b] : [b, a];
			const held = proxies[order === 'a-first' ? 1 : 0];
			held.cut();
			const firstBack = nextEvent(first.store, 'recover');
			await fixture.redis.restart();
			await firstBack;
			const secondWroteBack = nextEvent<WriteBackResult>(second.store, 'writeback');
			const secondBack = nextEvent(second.store, 'recover');
			held.pass();
			await Promise.all([secondBack, secondWroteBack]);

			await expectOnlyPhoneLeft([a.app, b.app], { phone, laptop, tablet, bob });
			for (const store of [a.store, b.store]) {
				expect((await store.sessionsOf('ann'))!.map(({ id }) => id)).toEqual([phone.id]);
			}
		} finally {
			await close();
		}
	});

	it('keeps a session created after the end during the same outage, on another instance', async () => {
		const { a, b, proxies, close } = await twoInstances();
		try {
			const phone = await device(a.app, 'ann');
			const fellBack = [nextEvent(a.store, 'fallback'), nextEvent(b.store, 'fallback')];
			await fixture.redis.kill();
			await Promise.all([whoOn(a.app, phone), b.store.get(newSid())]);
			await Promise.all(fellBack);
			await phone.agent.post('/logout-others').expect(200, { ended: 0, backend: 'memory' });
			// A fresh login on B after the end (a new password, say): it must stay.
			const fresh = await device(b.app, 'ann');

			proxies[1].cut();
			const aBack = nextEvent(a.store, 'recover');
			await fixture.redis.restart();
			await aBack;
			const bBack = nextEvent(b.store, 'recover');
			proxies[1].pass();
			await bBack;
			expect(await whoOn(a.app, fresh)).toBe('ann');
			expect((await a.store.sessionsOf('ann'))!.map(({ id }) => id).sort()).toEqual(sortedIds([phone, fresh]));
		} finally {
			await close();
		}
	});
});

describe('a user\'s sessions in a memory-only store', () => {
	it('lists and ends the sessions it holds', async () => {
		const { app, store } = await instance(undefined);
		const phone = await device(app, 'ann');
		const laptop = await device(app, 'ann');
		const tablet = await device(app, 'ann');
		const bob = await device(app, 'bob');
		const { body } = await laptop.agent.get('/devices').expect(200);
		expect(body.devices.map(({ id }: { id: string }) => id).sort()).toEqual(sortedIds([phone, laptop, tablet]));
		expect(body.backend).toBe('memory');

		await laptop.agent.post('/logout-others').expect(200, { ended: 2, backend: 'memory' });
		expect(await whoOn(app, laptop)).toBe('ann');
		expect(await whoOn(app, phone)).toBeNull();
		expect(await whoOn(app, tablet)).toBeNull();
		expect(await whoOn(app, bob)).toBe('bob');
		expect((await store.sessionsOf('ann'))!.map(({ id }) => id)).toEqual([laptop.id]);
		// Destroyed means destroyed: a later save of an ended session does not list it again.
		await store.set(phone.id, sessionData(60, { user: 'ann' }) as never);
		expect((await store.sessionsOf('ann'))!.map(({ id }) => id)).toEqual([laptop.id]);
	});
});

describe('a user\'s sessions on a Redis Cluster', () => {
	let cluster: RedisCluster;
	const clients: RedisClusterType[] = [];

	beforeAll(async () => {
		cluster = await RedisCluster.start();
	}, 30_000);

	afterAll(async () => {
		for (const client of clients) client.destroy();
		await cluster.stop();
	});

	const onCluster = async () => {
		const client = createCluster({ rootNodes: cluster.rootNodes });
		client.on('error', () => {});
		await client.connect();
		clients.push(client);
		return instance(undefined, { client: client as never });
	};

	it('lists and ends a user\'s sessions across two instances, one slot per user', async () => {
		const a = await onCluster();
		const b = await onCluster();
		const phone = await device(a.app, 'ann');
		const laptop = await device(b.app, 'ann');
		const tablet = await device(a.app, 'ann');
		const bob = await device(b.app, 'bob');
		const slot = async (key: string) => Number(await cluster.nodes[0].command('CLUSTER', 'KEYSLOT', key));
		expect(await slot(indexKey('ann'))).toBe(await slot('{ann}'));
		expect(await slot(indexKey('bob'))).toBe(await slot('{bob}'));

		const { body } = await tablet.agent.get('/devices').expect(200);
		expect(body.devices.map(({ id }: { id: string }) => id).sort()).toEqual(sortedIds([phone, laptop, tablet]));
		await tablet.agent.post('/logout-others').expect(200, { ended: 2, backend: 'redis' });
		for (const app of [a.app, b.app]) {
			expect(await whoOn(app, tablet)).toBe('ann');
			expect(await whoOn(app, phone)).toBeNull();
			expect(await whoOn(app, laptop)).toBeNull();
			expect(await whoOn(app, bob)).toBe('bob');
		}

		expect((await b.store.sessionsOf('ann'))!.map(({ id }) => id)).toEqual([tablet.id]);
		expect(a.store.backend).toBe('redis');
		expect(b.store.backend).toBe('redis');
	});
});
