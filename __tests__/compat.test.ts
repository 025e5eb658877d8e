import { RedisStore } from 'connect-redis';
import type { SessionData } from 'express-session';
import { createClient, type RedisClientType } from 'redis';
import { ResilientStore, silentLogger } from '../lib/index.js';
import { newSid, sessionData } from './helpers/app.js';
import { RedisServer } from './helpers/redis-server.js';

let redis: RedisServer;
let client: RedisClientType;
let theirs: RedisStore;
let ours: ResilientStore;

beforeAll(async () => {
	redis = await RedisServer.start();
	client = createClient({ url: redis.url });
	await client.connect();
	theirs = new RedisStore({ client, prefix: 'app:' });
	ours = new ResilientStore({ client, prefix: 'app:', logger: silentLogger });
});

afterAll(async () => {
	await ours.close();
	client.destroy();
	await redis.kill();
});

const data = (seconds: number, extra: Record<string, unknown>) => sessionData(seconds, extra) as unknown as SessionData;

describe('migrating from connect-redis', () => {
	it('reads a session that connect-redis wrote', async () => {
		const sid = newSid();
		await theirs.set(sid, data(3600, { user: 'alice' }));
		expect(await ours.get(sid)).toMatchObject({ user: 'alice' });
	});

	it('writes a session that connect-redis reads', async () => {
		const sid = newSid();
		await ours.set(sid, data(3600, { user: 'bob' }));
		expect(await theirs.get(sid)).toMatchObject({ user: 'bob' });
	});

	it('stores the same bytes under the same key with the same time to live', async () => {
		const [a, b] = [newSid(), newSid()];
		const session = data(3600, { user: 'carol' });
		await theirs.set(a, session);
		await ours.set(b, session);
		expect(await client.get(`app:${b}`)).toBe(await client.get(`app:${a}`));
		const [ttlA, ttlB] = [await client.ttl(`app:${a}`), await client.ttl(`app:${b}`)];
		expect(Math.abs(ttlA - ttlB)).toBeLessThanOrEqual(1);
		expect(ttlB).toBeGreaterThan(3590);
	});

	it('falls back to the default ttl of one day without a cookie expiry, as connect-redis does', async () => {
		const sid = newSid();
		await ours.set(sid, { cookie: { originalMaxAge: null } } as unknown as SessionData);
		expect(await client.ttl(`app:${sid}`)).toBeGreaterThan(86_390);
	});

	it('extends the time to live on touch the way connect-redis does', async () => {
		const sid = newSid();
		await ours.set(sid, data(60, {}));
		await ours.touch(sid, data(7200, {}));
		expect(await client.ttl(`app:${sid}`)).toBeGreaterThan(7190);
	});

	it('destroys what connect-redis wrote, and lists the same sessions', async () => {
		const sid = newSid();
		await theirs.set(sid, data(60, {}));
		expect(await ours.ids()).toContain(sid);
		expect((await theirs.ids()).sort()).toEqual((await ours.ids())!.sort());
		await ours.destroy(sid);
		expect(await theirs.get(sid)).toBeNull();
	});

	it('leaves a client it was given open after close()', async () => {
		const store = new ResilientStore({ client, prefix: 'app:', logger: silentLogger });
		await store.close();
		expect(client.isReady).toBe(true);
		expect(await client.ping()).toBe('PONG');
	});
});
