import { deepStrictEqual } from 'node:assert';
import { createHmac } from 'node:crypto';
import express from 'express';
import session from 'express-session';
import request from 'supertest';
import { type ResilientStore } from '../lib/index.js';
import { newSid, sessionData } from './helpers/app.js';
import { useStoreFactory } from './helpers/stores.js';

const SECRET = 'test secret';

const fixture = useStoreFactory();

/** The cookie express-session would send for session `sid`: `s:` + id + `.` + HMAC. */
const signedCookie = (sid: string) => {
	const signature = createHmac('sha256', SECRET).update(sid).digest('base64').replace(/=+$/, '');
	return `connect.sid=${encodeURIComponent(`s:${sid}.${signature}`)}`;
};

/**
 * An app whose routes do what a user's code might:
 * - `GET /count` counts visits,
 * - `GET /symbols` says whether anything but the user's data shows on the session.
 */
const createApp = (store: ResilientStore) => {
	const app = express();
	app.use(session({ store, secret: SECRET, resave: false, saveUninitialized: false }));
	app.get('/count', (req, res) => {
		req.session.views = (req.session.views ?? 0) + 1;
		res.json({ views: req.session.views, id: req.sessionID });
	});
	app.get('/symbols', (req, res) => {
		res.json({ symbols: Object.getOwnPropertySymbols(req.session).map(String), views: req.session.views ?? null });
	});
	return app;
};

describe.each(['redis', 'memory-only'] as const)('bad input on %s', (mode) => {
	it('treats a session whose cookie has an invalid expiry as expired', async () => {
		const store = await fixture.stores.create(mode);
		const sid = newSid();
		await store.set(sid, sessionData(60, { views: 1 }) as never);
		const invalid = { ...sessionData(60, { views: 2 }), cookie: { ...sessionData(60).cookie, expires: new Date(Number.NaN) } };
		// Redis would refuse `EX NaN`: expired instead, and destroyed, as connect-redis does.
		await expect(store.set(sid, invalid as never)).resolves.toBeUndefined();
		expect(await store.get(sid)).toBeNull();
		if (mode === 'redis') expect(await fixture.redis.command('GET', `sess:${sid}`)).toBe('null');
	});

	it('treats a session whose ttl function returns NaN as expired', async () => {
		const store = await fixture.stores.create(mode, { ttl: () => Number.NaN });
		const sid = newSid();
		await expect(store.set(sid, sessionData(60) as never)).resolves.toBeUndefined();
		expect(await store.get(sid)).toBeNull();
	});

	it('rejects a session the serializer cannot encode, keeping nothing of it', async () => {
		const store = await fixture.stores.create(mode);
		const sid = newSid();
		await store.set(sid, sessionData(60, { views: 1 }) as never);
		await expect(store.set(sid, sessionData(60, { views: 2, big: 10n }) as never)).rejects.toThrow(/BigInt/);
		const circular: Record<string, unknown> = { views: 3 };
		circular.self = circular;
		await expect(store.set(sid, sessionData(60, circular) as never)).rejects.toThrow(/circular/i);
		expect(await store.get(sid)).toMatchObject({ views: 1 });
	});

	it('reads back a session deep-equal to what was written, with nothing of its own on it', async () => {
		const store = await fixture.stores.create(mode);
		const sid = newSid();
		const written = JSON.parse(JSON.stringify(sessionData(60, { views: 4, user: 'alice' })));
		await store.set(sid, written);
		const read = await store.get(sid);
		expect(Object.getOwnPropertySymbols(read)).toEqual([]);
		expect(() => deepStrictEqual(read, written)).not.toThrow();
		expect(() => deepStrictEqual({ ...read }, written)).not.toThrow();
	});

	it('shows no symbol of the store on req.session', async () => {
		const store = await fixture.stores.create(mode);
		const agent = request.agent(createApp(store));
		await agent.get('/count').expect(200);
		const response = await agent.get('/symbols').expect(200);
		expect(response.body).toEqual({ symbols: [], views: 1 });
	});
});

describe('session text in Redis that is not a session', () => {
	it.each([
		['empty', ''],
		['garbage', '{"cookie":'],
		['an array', '[1,2]'],
		['a number', '42'],
		['a string', '"text"'],
	])('answers 200 with a fresh session when the text is %s', async (_name, text) => {
		const warn = jest.fn();
		const store = await fixture.stores.create('redis', { logger: { warn, error: jest.fn() } });
		const sid = newSid();
		await fixture.redis.command('SET', `sess:${sid}`, text, 'EX', '60');
		const app = createApp(store);
		const response = await request(app).get('/count').set('Cookie', signedCookie(sid)).expect(200);
		expect(response.body.views).toBe(1);
		expect(await store.get(sid)).toBeNull();
		await request(app).get('/count').set('Cookie', signedCookie(sid)).expect(200);
		// Logged, once.
		expect(warn).toHaveBeenCalledTimes(1);
		expect(warn.mock.calls[0][0]).toMatch(/is not a session.*treated as no session/);
	});

	it('still reads a real session stored beside a corrupted one', async () => {
		const store = await fixture.stores.create('redis');
		const good = newSid();
		await store.set(good, sessionData(60, { views: 7 }) as never);
		await fixture.redis.command('SET', 'sess:bad', 'null');
		const response = await request(createApp(store)).get('/count').set('Cookie', signedCookie(good)).expect(200);
		expect(response.body).toEqual({ views: 8, id: good });
	});
});

describe.each(['redis', 'memory-only'] as const)('expiry in milliseconds on %s', (mode) => {
	const shortLived = (ms: number, extra: Record<string, unknown> = {}) => ({
		cookie: { originalMaxAge: ms, expires: new Date(Date.now() + ms), httpOnly: true, path: '/' },
		...extra,
	});

	it('ends a session whose cookie lives less than a second when the cookie does', async () => {
		const store = await fixture.stores.create(mode);
		const sid = newSid();
		await store.set(sid, shortLived(300, { views: 1 }) as never);
		if (mode === 'redis') {
			const pttl = Number(await fixture.redis.command('PTTL', `sess:${sid}`));
			expect(pttl).toBeGreaterThan(0);
			expect(pttl).toBeLessThanOrEqual(300);
		}

		expect(await store.get(sid)).toMatchObject({ views: 1 });
		await new Promise((resolve) => setTimeout(resolve, 450));
		expect(await store.get(sid)).toBeNull();
	});

	it('renews a short session to its own lifetime, not a whole second', async () => {
		const store = await fixture.stores.create(mode);
		const sid = newSid();
		await store.set(sid, shortLived(400, { views: 1 }) as never);
		await store.touch(sid, shortLived(400, { views: 1 }) as never);
		if (mode === 'redis') expect(Number(await fixture.redis.command('PTTL', `sess:${sid}`))).toBeLessThanOrEqual(400);
		await new Promise((resolve) => setTimeout(resolve, 550));
		expect(await store.get(sid)).toBeNull();
	});
});
