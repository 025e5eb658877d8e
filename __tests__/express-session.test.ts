import type { SessionOptions } from 'express-session';
import request from 'supertest';
import { createApp } from './helpers/app.js';
import { useStoreFactory } from './helpers/stores.js';

const fixture = useStoreFactory();

/** Keys that hold a session: a destroyed session's key holds a tombstone (JSON `null`) for a while. */
const sessionKeys = async () => {
	const keys = (await fixture.redis.command('KEYS', 'sess:*')) as string[];
	const texts = await Promise.all(keys.map((key) => fixture.redis.command('GET', key)));
	return keys.filter((_key, index) => texts[index] !== 'null');
};
const isTombstone = async (sid: string) => (await fixture.redis.command('GET', `sess:${sid}`)) === 'null';

const setup = async (options: Partial<SessionOptions> = {}) => {
	const store = await fixture.stores.create('redis');
	const app = createApp(store, options);
	return { store, app, agent: request.agent(app) };
};

const sidOf = (cookie: string | string[] | undefined) => {
	const header = Array.isArray(cookie) ? cookie[0] : cookie;
	return header ? /connect\.sid=s:([^.]+)\./.exec(decodeURIComponent(header))![1] : undefined;
};

describe('express-session on ResilientStore', () => {
	it('stores nothing for an untouched visitor with saveUninitialized: false', async () => {
		const { app } = await setup({ saveUninitialized: false });
		const res = await request(app).get('/whoami').expect(200);
		expect(res.headers['set-cookie']).toBeUndefined();
		expect(await sessionKeys()).toEqual([]);
	});

	it('stores every new session with saveUninitialized: true', async () => {
		const { app } = await setup({ saveUninitialized: true });
		const res = await request(app).get('/whoami').expect(200);
		expect(await sessionKeys()).toEqual([`sess:${sidOf(res.headers['set-cookie'])}`]);
	});

	it('keeps a session across requests and counts in it', async () => {
		const { agent } = await setup();
		await agent.get('/count').expect(200, /"views":1/);
		const res = await agent.get('/count').expect(200);
		expect(res.body).toMatchObject({ views: 2, backend: 'redis' });
		const stored = JSON.parse((await fixture.redis.command('GET', `sess:${res.body.id}`)) as string);
		expect(stored.views).toBe(2);
	});

	it('touches instead of saving an unchanged session with resave: false', async () => {
		const { agent, store } = await setup({ resave: false, cookie: { maxAge: 3_600_000 } });
		const { body } = await agent.get('/count').expect(200);
		await fixture.redis.command('EXPIRE', `sess:${body.id}`, '100');
		const set = jest.spyOn(store, 'set');
		const touch = jest.spyOn(store, 'touch');
		await agent.get('/whoami').expect(200);
		expect(set).not.toHaveBeenCalled();
		expect(touch).toHaveBeenCalledTimes(1);
		expect(Number(await fixture.redis.command('TTL', `sess:${body.id}`))).toBeGreaterThan(3590);
	});

	it('saves an unchanged session again with resave: true', async () => {
		const { agent, store } = await setup({ resave: true });
		await agent.get('/count').expect(200);
		const set = jest.spyOn(store, 'set');
		await agent.get('/whoami').expect(200);
		expect(set).toHaveBeenCalledTimes(1);
	});

	it('sends the cookie again on every response with rolling: true', async () => {
		const { agent } = await setup({ rolling: true, cookie: { maxAge: 60_000 } });
		await agent.get('/count').expect(200);
		const res = await agent.get('/whoami').expect(200);
		expect(res.headers['set-cookie']).toBeDefined();
	});

	it('regenerates the session on login: the old id is gone from Redis', async () => {
		const { agent } = await setup();
		const before = (await agent.get('/count').expect(200)).body.id;
		const after = (await agent.post('/login?user=alice').expect(200)).body.id;
		expect(after).not.toBe(before);
		expect(await sessionKeys()).toEqual([`sess:${after}`]);
		expect(await isTombstone(before)).toBe(true);
		expect((await agent.get('/whoami').expect(200)).body.user).toBe('alice');
	});

	it('destroys the session on logout: the old cookie is no longer logged in', async () => {
		const { agent, app } = await setup();
		const res = await agent.post('/login?user=bob').expect(200);
		const cookie = res.headers['set-cookie'] as unknown as string[];
		await agent.post('/logout').expect(200);
		expect(await sessionKeys()).toEqual([]);
		expect(await isTombstone(res.body.id)).toBe(true);
		expect((await request(app).get('/whoami').set('Cookie', cookie).expect(200)).body.user).toBeNull();
	});

	it('keeps answering 200 within the deadline when Redis is killed mid-test', async () => {
		const { agent, store } = await setup();
		await agent.post('/login?user=carol').expect(200);
		await agent.get('/count').expect(200);
		await fixture.redis.kill();
		const took: number[] = [];
		const timed = async <T>(step: () => Promise<T>) => {
			const started = Date.now();
			const result = await step();
			took.push(Date.now() - started);
			return result;
		};
		const res = await timed(() => agent.get('/count').expect(200));
		expect(res.body).toMatchObject({ views: 2, backend: 'memory' });
		await timed(() => agent.get('/whoami').expect(200, /"user":"carol"/));
		await timed(() => agent.post('/login?user=dave').expect(200));
		expect(store.backend).toBe('memory');
		// The deadline of these stores is 200 ms: far below a hang, with room for a busy machine.
		expect(Math.max(...took)).toBeLessThan(200 + 300);
	});
});
