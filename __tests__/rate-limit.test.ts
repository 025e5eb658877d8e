import { createHash } from 'node:crypto';
import { type EventEmitter, once } from 'node:events';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type express from 'express';
import request from 'supertest';
import { ResilientStore, type ResilientStoreOptions, silentLogger } from '../lib/index.js';
import { rateLimit, type RateLimitOptions } from '../lib/rate-limit/rate-limit.js';
import { fastFailover, listen, nextEvent, recordingLogger } from './helpers/common.js';
import { callApi, commandCalls, createLimitedApp, login } from './helpers/rate-limit-app.js';
import { RedisServer } from './helpers/redis-server.js';
import { TcpProxy } from './helpers/tcp-proxy.js';
import { redisLinkOf } from '../lib/redis/link.js';

let redis: RedisServer;
const cleanups: Array<() => unknown> = [];

beforeAll(async () => {
	redis = await RedisServer.start();
});

beforeEach(async () => {
	if (!redis.running) await redis.restart();
	await redis.command('FLUSHALL');
	await redis.command('SCRIPT', 'FLUSH');
});

afterEach(async () => {
	for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

afterAll(() => redis.kill());

/**
 * Quick failover, but a deadline that a loaded test machine never misses: a spurious
 * fallback would split counts. Tests of the deadline itself lower it.
 */
const storeOptions = { logger: silentLogger, ...fastFailover, timeoutMs: 1_000 } as const;

/** A store on the file's redis-server (or on `url`), connected, closed after the test. */
const newStore = async (options: ResilientStoreOptions = {}) => {
	const store = new ResilientStore({ url: redis.url, ...storeOptions, ...options });
	cleanups.push(() => store.close());
	const client = redisLinkOf(store)?.client as unknown as EventEmitter & { isReady: boolean };
	if (client && !client.isReady) await once(client, 'ready');
	return store;
};

/** An app on `store` behind `rateLimit(options)`, served until the end of the test. */
const serve = async (
	store: ResilientStore,
	options: Omit<RateLimitOptions, 'store'> = {},
	sessionOptions: Parameters<typeof createLimitedApp>[2] = {},
) => {
	const app = createLimitedApp(store, rateLimit({ store, logger: silentLogger, ...options }), sessionOptions);
	const { url, close } = await listen(app);
	cleanups.push(close);
	return url;
};

/** Sends `n` requests one after the other; their statuses. */
const statuses = async (n: number, call: (i: number) => request.Test) => {
	const seen: number[] = [];
	for (let i = 0; i < n; i++) seen.push((await call(i)).status);
	return seen;
};

const repeat = <T>(value: T, n: number): T[] => Array.from({ length: n }, () => value);

/** The partition key of the draft-8 headers, as express-rate-limit derives it from a count key. */
const partitionKey = (key: string) =>
	Buffer.from(createHash('sha256').update(key).digest('hex').slice(0, 12)).toString('base64');

const redisCount = async (key: string) => Number(await redis.command('GET', key));

describe('rateLimit() sharing one limit', () => {
	it('shares one limit between two instances on one Redis, exactly', async () => {
		const [storeA, storeB] = [await newStore(), await newStore()];
		const urls = [await serve(storeA, { limit: 5 }), await serve(storeB, { limit: 5 })];
		const { cookie, id } = await login(urls[0]!);

		const seen = await statuses(10, (i) => callApi(urls[i % 2]!, cookie));

		expect(seen).toEqual([...repeat(200, 5), ...repeat(429, 5)]);
		// A refused request uses nothing of the limit.
		expect(await redisCount(`rl:sid:${id}`)).toBe(5);
		expect(Number(await redis.command('PTTL', `rl:sid:${id}`))).toBeGreaterThan(50_000);
	});

	it('lets exactly `limit` of many concurrent requests through, over two instances', async () => {
		const [storeA, storeB] = [await newStore(), await newStore()];
		const urls = [await serve(storeA, { limit: 20 }), await serve(storeB, { limit: 20 })];
		const { cookie, id } = await login(urls[0]!);

		const responses = await Promise.all(Array.from({ length: 60 }, (_, i) => callApi(urls[i % 2]!, cookie)));

		expect(responses.filter((res) => res.status === 200)).toHaveLength(20);
		expect(responses.filter((res) => res.status === 429)).toHaveLength(40);
		expect(responses.find((res) => res.status === 200)!.body.key).toBe(`sid:${id}`);
		// Every request let through was counted once, atomically: the counts handed out were
		// 1 to 20; the refused ones used nothing.
		const used = responses.filter((res) => res.status === 200).map((res) => res.body.used as number);
		expect(used.sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
		expect(await redisCount(`rl:sid:${id}`)).toBe(20);
	});
});

describe('rateLimit() keys', () => {
	it('counts requests without a session cookie by client IP, though each makes a new session', async () => {
		const url = await serve(await newStore(), { limit: 3 }, { saveUninitialized: true });

		const responses = [];
		for (let i = 0; i < 5; i++) responses.push(await callApi(url));

		expect(responses.map((res) => res.status)).toEqual([200, 200, 200, 429, 429]);
		expect(responses[0]!.body.key).toBe('ip:127.0.0.1');
		// Each request did get a brand-new session: dropping the cookie is what a client would try.
		const cookies = new Set(responses.map((res) => (res.headers['set-cookie'] as unknown as string[])[0]));
		expect(cookies.size).toBe(5);
	});

	it('counts a forged or stale session cookie by client IP, apart from the session it names', async () => {
		const url = await serve(await newStore(), { limit: 2 });
		const valid = await login(url);
		const stale = await login(url);
		await request(url).post('/logout').set('Cookie', stale.cookie).expect(200);
		const forged = 'connect.sid=s%3Aforged-session-id.not-a-signature';

		const first = await callApi(url, stale.cookie);
		expect(first.body.key).toBe('ip:127.0.0.1');
		expect(await statuses(3, (i) => callApi(url, i % 2 ? forged : stale.cookie))).toEqual([200, 429, 429]);
		// The session they pretend to be is counted on its own.
		const own = await callApi(url, valid.cookie).expect(200);
		expect(own.body).toMatchObject({ key: `sid:${valid.id}`, used: 1 });
	});

	it('counts a request that let go of its session (req.session = null) by client IP', async () => {
		const store = await newStore();
		const limiter = rateLimit({ store, logger: silentLogger, limit: 5 });
		const dropping: express.RequestHandler = (req, res, next) => {
			if (req.get('x-drop-session')) req.session = null as never;
			limiter(req, res, next);
		};
		const { url, close } = await listen(createLimitedApp(store, dropping));
		cleanups.push(close);
		const { cookie, id } = await login(url);

		expect((await callApi(url, cookie).expect(200)).body.key).toBe(`sid:${id}`);
		expect((await callApi(url, cookie).set('x-drop-session', 'yes').expect(200)).body.key).toBe('ip:127.0.0.1');
	});

	it('groups IPv6 clients by /56 and checks the proxy setup as express-rate-limit does', async () => {
		const store = await newStore();
		const logger = recordingLogger();
		const app = createLimitedApp(store, rateLimit({ store, logger, limit: 2 }));
		app.set('trust proxy', 'loopback');
		const { url, close } = await listen(app);
		cleanups.push(close);
		const from = (ip: string) => callApi(url).set('X-Forwarded-For', ip);

		expect((await from('2001:db8:abcd:1200::1')).body.key).toBe('ip:2001:db8:abcd:1200::/56');
		expect((await from('2001:db8:abcd:12ff::2')).status).toBe(200);
		expect((await from('2001:db8:abcd:1234:5::3')).status).toBe(429);
		expect((await from('2001:db8:abcd:1300::1')).status).toBe(200);
		expect(logger.errors).toEqual([]);

		app.set('trust proxy', true);
		await from('203.0.113.9');
		await from('203.0.113.10');
		app.set('trust proxy', false);
		await from('203.0.113.11');
		await from('203.0.113.12');
		expect(logger.errors).toHaveLength(2);
		expect(logger.errors[0]).toMatch(/'trust proxy' setting is true.*ERR_ERL_PERMISSIVE_TRUST_PROXY/);
		expect(logger.errors[1]).toMatch(/X-Forwarded-For is set.*ERR_ERL_UNEXPECTED_X_FORWARDED_FOR/);
	});

	it('counts a client address that is not an IP under a short key, as loginGuard() does', async () => {
		const store = await newStore();
		const limiter = rateLimit({ store, logger: silentLogger, limit: 1, validate: false });
		const app = createLimitedApp(store, limiter);
		// A proxy setting that lets the client write its own address.
		app.set('trust proxy', true);
		const { url, close } = await listen(app);
		cleanups.push(close);
		const junk = 'x'.repeat(2_000);

		const first = await callApi(url).set('X-Forwarded-For', junk).expect(200);
		expect(first.body.key).toMatch(/^ip:other:[\w-]{22}$/);
		await callApi(url).set('X-Forwarded-For', junk).expect(429);
		expect(await redisCount(`rl:${first.body.key}`)).toBe(1);
	});

	it('counts under keyGenerator when given, honouring skip, statusCode and message', async () => {
		const url = await serve(await newStore(), {
			limit: 1,
			keyGenerator: (req) => String(req.get('x-api-key')),
			skip: (req) => req.get('x-internal') === 'yes',
			statusCode: 503,
			message: { error: 'slow down' },
		});
		const as = (key: string) => callApi(url).set('x-api-key', key);

		expect((await as('alpha').expect(200)).body.key).toBe('alpha');
		await as('alpha').expect(503, { error: 'slow down' });
		await as('beta').expect(200);
		await as('alpha').set('x-internal', 'yes').expect(200);
		expect(await redisCount('rl:alpha')).toBe(1);
	});

	it('reports a rate limit mounted without session() once, and counts by IP meanwhile', async () => {
		const store = await newStore();
		const logger = recordingLogger();
		const { url, close } = await listen(createLimitedApp(store, rateLimit({ store, logger, limit: 2 }), false));
		cleanups.push(close);

		expect(await statuses(4, () => callApi(url))).toEqual([200, 200, 429, 429]);
		expect(logger.errors).toHaveLength(1);
		expect(logger.errors[0]).toMatch(/no req\.session: mount it after session\(\)/);
		expect(await redisCount('rl:ip:127.0.0.1')).toBe(2);
	});
});

describe('rateLimit() per-address ceiling', () => {
	/** The cookie a response sets, for the next request. */
	const cookieOf = (res: request.Response) =>
		(res.headers['set-cookie'] as unknown as string[] | undefined)?.[0]?.split(';')[0];

	it('gives an address no more than its ceiling per window, however many sessions it mints', async () => {
		// Each response, a 429 included, carries a new session: the cookie trick to try.
		const url = await serve(await newStore(), { limit: 2 }, { saveUninitialized: true });
		let served = 0;
		let lastRound: number[] = [];
		for (let round = 0; round < 25; round++) {
			const minted = await callApi(url);
			lastRound = [minted.status];
			const cookie = cookieOf(minted);
			for (let i = 0; i < 2; i++) lastRound.push((await callApi(url, cookie)).status);
			served += lastRound.filter((status) => status === 200).length;
		}

		// The default ceiling is 10 × limit, over every request of the address (the 429s
		// included); without it each minted session got 2 more, 52 in all.
		expect(served).toBeGreaterThan(2);
		expect(served).toBeLessThanOrEqual(20);
		expect(lastRound).toEqual([429, 429, 429]);
	});

	it('lets ten clients behind one address each use their whole limit by default', async () => {
		const url = await serve(await newStore(), { limit: 3 });
		const clients = [];
		for (let i = 0; i < 11; i++) clients.push(await login(url));
		const seen: number[] = [];
		for (const { cookie } of clients.slice(0, 10)) seen.push(...(await statuses(3, () => callApi(url, cookie))));
		expect(seen).toEqual(repeat(200, 30));
		// The eleventh finds the address at its ceiling.
		const limited = await callApi(url, clients[10]!.cookie).expect(429);
		expect(Number(limited.headers['retry-after'])).toBeGreaterThan(50);
	});

	it('takes addressLimit as given, and applies none with a custom keyGenerator', async () => {
		const store = await newStore();
		const url = await serve(store, { limit: 5, addressLimit: 3 });
		const one = await login(url);
		const two = await login(url);
		expect(await statuses(2, () => callApi(url, one.cookie))).toEqual([200, 200]);
		expect(await statuses(2, () => callApi(url, two.cookie))).toEqual([200, 429]);
		expect(await redisCount('rl:addr:127.0.0.1')).toBe(3);

		const byKey = await serve(store, { limit: 2, prefix: 'keyed:', keyGenerator: (req) => String(req.get('x-key')) });
		const keyed = (key: string) => callApi(byKey).set('x-key', key);
		for (let i = 0; i < 30; i++) await keyed(`k${i}`).expect(200);
		expect(await redis.command('KEYS', 'keyed:addr:*')).toEqual([]);
	});
});

describe('rateLimit() when Redis fails', () => {
	it('keeps limiting in memory while Redis is down, with no 5xx, then counts in Redis again', async () => {
		const store = await newStore();
		const url = await serve(store, { limit: 3 });
		const { cookie, id } = await login(url);
		await callApi(url, cookie).expect(200);
		const fellBack = nextEvent(store, 'fallback');

		await redis.kill();
		const during = [];
		for (let i = 0; i < 5; i++) during.push(await callApi(url, cookie));
		await fellBack;

		// Counting goes on in this instance's memory from the count Redis last gave, under the same session.
		expect(during.map((res) => res.status)).toEqual([200, 200, 429, 429, 429]);
		expect(during[0]!.body).toMatchObject({ key: `sid:${id}`, used: 2, backend: 'memory' });

		const recovered = nextEvent(store, 'recover');
		await redis.restart();
		await recovered;
		// Redis came back empty (no script, no counts): the count memory held was merged
		// back, and counting goes on there.
		expect(await redisCount(`rl:sid:${id}`)).toBe(3);
		const after = [];
		for (let i = 0; i < 2; i++) after.push(await callApi(url, cookie));
		expect(after.map((res) => res.status)).toEqual([429, 429]);
		expect(await redisCount(`rl:sid:${id}`)).toBe(3);
		expect(store.backend).toBe('redis');
	});

	it('applies limitDuringOutage while on memory, and the headers say so', async () => {
		const proxy = await TcpProxy.start(redis.port);
		cleanups.push(() => proxy.close());
		const store = await newStore({ url: proxy.url });
		const url = await serve(store, { limit: 5, limitDuringOutage: 2 });
		const { cookie } = await login(url);
		const before = await callApi(url, cookie).expect(200);
		expect(before.headers['ratelimit-policy']).toMatch(/^"5-in-1min"; q=5; w=60;/);

		proxy.cut();
		const during = await Promise.all([0, 1, 2].map(() => callApi(url, cookie)));
		expect(store.backend).toBe('memory');
		// Memory goes on from the count Redis last gave (1).
		expect(during.map((res) => res.status).sort()).toEqual([200, 429, 429]);
		expect(during[0]!.headers['ratelimit-policy']).toMatch(/^"2-in-1min"; q=2; w=60;/);

		const recovered = nextEvent(store, 'recover');
		proxy.pass();
		await recovered;
		// The one let through in memory was merged into Redis.
		const after = await callApi(url, cookie).expect(200);
		expect(after.body).toMatchObject({ used: 3, limit: 5, backend: 'redis' });
	});

	it('answers within the deadline when Redis stalls, counting in memory', async () => {
		const proxy = await TcpProxy.start(redis.port);
		cleanups.push(() => proxy.close());
		const store = await newStore({ url: proxy.url, timeoutMs: fastFailover.timeoutMs });
		// No session(): the count is the only Redis command, so its own deadline is what is seen.
		const limiter = rateLimit({ store, logger: silentLogger, limit: 2, keyGenerator: () => 'stalled' });
		const { url, close } = await listen(createLimitedApp(store, limiter, false));
		cleanups.push(close);
		await callApi(url).expect(200);

		proxy.stall();
		const started = Date.now();
		const stalled = await callApi(url).expect(200);
		expect(Date.now() - started).toBeLessThan(fastFailover.timeoutMs + 300);
		expect(stalled.body).toMatchObject({ used: 2, backend: 'memory' });
		await callApi(url).expect(429);

		const recovered = nextEvent(store, 'recover');
		proxy.pass();
		await recovered;
		// The one let through in memory was merged into Redis.
		expect(await redisCount('rl:stalled')).toBe(2);
		await callApi(url).expect(429);
		expect(await redisCount('rl:stalled')).toBe(2);
		expect(store.backend).toBe('redis');
	});

	it('counts in Redis once Redis comes up, for a limit created while it was down', async () => {
		const proxy = await TcpProxy.start(redis.port);
		cleanups.push(() => proxy.close());
		proxy.cut();
		const store = new ResilientStore({ url: proxy.url, ...storeOptions, timeoutMs: fastFailover.timeoutMs });
		cleanups.push(() => store.close());
		const limiter = rateLimit({ store, logger: silentLogger, limit: 3, keyGenerator: () => 'early' });
		const { url, close } = await listen(createLimitedApp(store, limiter, false));
		cleanups.push(close);

		expect((await callApi(url).expect(200)).body).toMatchObject({ used: 1, backend: 'memory' });

		const recovered = nextEvent(store, 'recover');
		proxy.pass();
		await recovered;
		// The scripts could not be loaded at start: they are loaded now, and counts go to Redis.
		// The count made in memory was merged into Redis.
		const after = await callApi(url).expect(200);
		expect(after.body).toMatchObject({ used: 2, backend: 'redis' });
		expect(await redisCount('rl:early')).toBe(2);
		expect(store.stats().failovers).toBe(1);
	});

	it('stays exact across SCRIPT FLUSH, without falling back', async () => {
		const store = await newStore();
		const url = await serve(store, { limit: 6 });
		const { cookie, id } = await login(url);
		await callApi(url, cookie).expect(200);
		await callApi(url, cookie).expect(200);

		await redis.command('SCRIPT', 'FLUSH');
		const responses = await Promise.all(Array.from({ length: 8 }, () => callApi(url, cookie)));

		expect(responses.filter((res) => res.status === 200)).toHaveLength(4);
		expect(responses.filter((res) => res.status === 429)).toHaveLength(4);
		expect(await redisCount(`rl:sid:${id}`)).toBe(6);
		expect(store.stats().failovers).toBe(0);
		expect(store.backend).toBe('redis');
	});

	it('counts in memory when Redis refuses a count, and the request still succeeds', async () => {
		const store = await newStore();
		const logger = recordingLogger();
		const limiter = rateLimit({ store, logger, limit: 2, keyGenerator: () => 'taken' });
		const { url, close } = await listen(createLimitedApp(store, limiter));
		cleanups.push(close);
		// Something else owns the key: the count's INCR gets WRONGTYPE.
		await redis.command('HSET', 'rl:taken', 'owner', 'someone else');
		await redis.command('PEXPIRE', 'rl:taken', '60000');

		expect(await statuses(3, () => callApi(url))).toEqual([200, 200, 429]);
		expect(logger.errors).toHaveLength(1);
		expect(logger.errors[0]).toMatch(/Redis refused a rate limit command, counting in memory: WRONGTYPE/);
		expect(store.backend).toBe('redis');
		expect(store.stats().failovers).toBe(0);
	});

	/** The commands Redis ran for ten requests (after a first one) behind `options`, with no session(). */
	const commandsOfTen = async (options: Omit<RateLimitOptions, 'store'>) => {
		const store = await newStore();
		const { url, close } = await listen(createLimitedApp(store, rateLimit({ store, logger: silentLogger, ...options }), false));
		cleanups.push(close);
		await callApi(url).expect(200);
		await redis.command('CONFIG', 'RESETSTAT');

		expect(await statuses(10, () => callApi(url))).toEqual([...repeat(200, 3), ...repeat(429, 7)]);

		const calls = commandCalls((await redis.command('INFO', 'commandstats')) as string);
		// Leave out the commands of the connection that asks.
		for (const name of Object.keys(calls)) if (/^(hello|client|config|info)/.test(name)) delete calls[name];
		return calls;
	};

	it('sends one Redis command per counted request, limited or not', async () => {
		// One round trip each: EVALSHA, whose script runs GET and PTTL inside Redis, and SET
		// for the three let through (a refused request writes nothing).
		expect(await commandsOfTen({ limit: 4, keyGenerator: () => 'measured' })).toEqual({
			evalsha: 10,
			get: 10,
			pttl: 10,
			set: 3,
		});
		// With the default key, the address's ceiling is checked and counted by the same script.
		expect(await commandsOfTen({ limit: 4, prefix: 'default:' })).toEqual({ evalsha: 10, get: 20, pttl: 20, set: 6 });
	});
});

describe('rateLimit() counts', () => {
	it('takes failed requests back with skipFailedRequests, leaving no key that never expires', async () => {
		const store = await newStore();
		const limiter = rateLimit({ store, logger: silentLogger, limit: 2, skipFailedRequests: true });
		const app = createLimitedApp(store, limiter);
		// A count that expires while its request runs.
		app.get('/expiring', async (_req, res) => {
			await redis.command('DEL', 'rl:ip:127.0.0.1');
			res.status(500).end();
		});
		const { url, close } = await listen(app);
		cleanups.push(close);

		expect(await statuses(4, () => request(url).get('/missing'))).toEqual(repeat(404, 4));
		// getKey goes after the last decrement on the same connection.
		expect(await limiter.getKey('ip:127.0.0.1')).toBeUndefined();
		expect(await redis.command('EXISTS', 'rl:ip:127.0.0.1')).toBe(0);

		await request(url).get('/expiring').expect(500);
		expect(await limiter.getKey('ip:127.0.0.1')).toBeUndefined();
		expect(await redis.command('EXISTS', 'rl:ip:127.0.0.1')).toBe(0);
	});

	it('keeps nothing of a request once it is answered: let through, refused, skipped or failed', async () => {
		setFlagsFromString('--expose-gc');
		const collect = runInNewContext('gc') as () => void;
		const store = await newStore();
		const limiter = rateLimit({
			store,
			logger: silentLogger,
			limit: 2,
			keyGenerator: (req) => {
				if (req.get('x-fail')) throw new Error('no key for this request');
				return 'shared';
			},
			skip: (req) => req.get('x-skip') === 'yes',
		});
		const requests: Array<WeakRef<object>> = [];
		const watched: express.RequestHandler = (req, res, next) => {
			requests.push(new WeakRef(req));
			limiter(req, res, next);
		};
		const { url, close } = await listen(createLimitedApp(store, watched));
		cleanups.push(close);
		const call = () => callApi(url).set('Connection', 'close');

		expect(await statuses(3, () => call())).toEqual([200, 200, 429]);
		await call().set('x-skip', 'yes').expect(200);
		await call().set('x-fail', 'yes').expect(500);
		expect(requests).toHaveLength(5);

		const alive = async () => {
			for (let i = 0; i < 20 && requests.some((ref) => ref.deref()); i++) {
				await new Promise((resolve) => setImmediate(resolve));
				collect();
			}

			return requests.filter((ref) => ref.deref()).length;
		};
		expect(await alive()).toBe(0);
	});

	it('reads and resets a shared count with getKey and resetKey', async () => {
		const store = await newStore();
		const limiter = rateLimit({ store, logger: silentLogger, limit: 2 });
		const { url, close } = await listen(createLimitedApp(store, limiter));
		cleanups.push(close);
		await statuses(3, () => callApi(url));

		const info = await limiter.getKey('ip:127.0.0.1');
		expect(info?.totalHits).toBe(2);
		expect(info!.resetTime!.getTime() - Date.now()).toBeGreaterThan(55_000);
		await limiter.resetKey('ip:127.0.0.1');
		expect(await limiter.getKey('ip:127.0.0.1')).toBeUndefined();
		expect((await callApi(url).expect(200)).body.used).toBe(1);
	});
});

describe('rateLimit() headers', () => {
	it('sends draft-8 RateLimit and RateLimit-Policy headers, and Retry-After on a 429', async () => {
		const url = await serve(await newStore(), { limit: 2 });
		const { cookie, id } = await login(url);
		const pk = partitionKey(`sid:${id}`);

		const first = await callApi(url, cookie).expect(200);
		expect(first.headers['ratelimit-policy']).toBe(`"2-in-1min"; q=2; w=60; pk=:${pk}:`);
		expect(first.headers.ratelimit).toMatch(/^"2-in-1min"; r=1; t=(59|60)$/);
		expect(first.headers['retry-after']).toBeUndefined();
		expect(first.headers['x-ratelimit-limit']).toBeUndefined();

		await callApi(url, cookie).expect(200);
		const limited = await callApi(url, cookie).expect(429, 'Too many requests, please try again later.');
		expect(limited.headers.ratelimit).toMatch(/^"2-in-1min"; r=0; t=(59|60)$/);
		expect(limited.headers['retry-after']).toMatch(/^(59|60)$/);
	});

	it('sends legacy headers when asked, and Retry-After on a 429 even with every header off', async () => {
		const store = await newStore();
		const legacy = await serve(store, { limit: 1, legacyHeaders: true, standardHeaders: false, prefix: 'legacy:' });
		const bare = await serve(store, {
			limit: 1,
			standardHeaders: false,
			prefix: 'bare:',
			handler: (_req, res, _next, options) => void res.status(options.statusCode).json({ limited: true }),
		});

		const ok = await callApi(legacy).expect(200);
		expect(ok.headers).toMatchObject({ 'x-ratelimit-limit': '1', 'x-ratelimit-remaining': '0' });
		const reset = Number(ok.headers['x-ratelimit-reset']) - Date.now() / 1000;
		expect(reset).toBeGreaterThan(58);
		expect(reset).toBeLessThanOrEqual(61);
		expect(ok.headers.ratelimit).toBeUndefined();
		expect((await callApi(legacy).expect(429)).headers['retry-after']).toMatch(/^(59|60)$/);

		await callApi(bare).expect(200);
		const limited = await callApi(bare).expect(429, { limited: true });
		expect(limited.headers['retry-after']).toMatch(/^(59|60)$/);
		expect(limited.headers.ratelimit).toBeUndefined();
		expect(limited.headers['x-ratelimit-limit']).toBeUndefined();
	});
});

describe('rateLimit() options', () => {
	it('throws a TypeError naming the option for a bad one', async () => {
		const store = await newStore();
		const bad: Array<[Record<string, unknown>, RegExp]> = [
			[{ store: undefined }, /`store` must be the ResilientStore that session\(\) uses; got undefined/],
			[{ store: {} }, /`store` must be .*; got an object/],
			[{ windowMs: 0 }, /`windowMs` must be a whole number from 1 to 2147483647; got 0/],
			[{ windowMs: '1m' }, /`windowMs` must be .*; got "1m"/],
			[{ windowMs: 2 ** 31 }, /`windowMs` must be a whole number from 1 to 2147483647/],
			[{ limit: -1 }, /`limit` must be a number from 0 to 9,000,000,000 or a function/],
			[{ limit: 1e10 }, /`limit` must be a number from 0 to 9,000,000,000 or a function/],
			[{ limit: '5' }, /`limit` must be/],
			[{ limitDuringOutage: -1.5 }, /`limitDuringOutage` must be/],
			[{ addressLimit: -1 }, /`addressLimit` must be a number from 0 to 9,000,000,000 or a function/],
			[{ statusCode: 99 }, /`statusCode` must be a whole number from 100 to 599; got 99/],
			[{ message: 42 }, /`message` must be a string, an object or a function returning one; got 42/],
			[{ handler: 'reply' }, /`handler` must be a function; got "reply"/],
			[{ skip: true }, /`skip` must be a function; got true/],
			[{ keyGenerator: 'ip' }, /`keyGenerator` must be a function/],
			[{ ipv6Subnet: 128 }, /`ipv6Subnet` must be a whole number from 32 to 64; got 128/],
			[{ standardHeaders: 'draft-9' }, /`standardHeaders` must be 'draft-8'.*; got "draft-9"/],
			[{ legacyHeaders: 'yes' }, /`legacyHeaders` must be true or false/],
			[{ requestPropertyName: '' }, /`requestPropertyName` must be a non-empty string/],
			[{ prefix: 1 }, /`prefix` must be a string; got 1/],
			[{ maxMemoryKeys: 0 }, /`maxMemoryKeys` must be a whole number of at least 1/],
			[{ logger: {} }, /`logger` must be an object with warn\(\) and error\(\)/],
			[{ max: 10 }, /no option `max` \(use `limit`\)/],
			[{ windowMS: 1000 }, /no option `windowMS`/],
		];

		for (const [options, message] of bad) {
			expect(() => rateLimit({ store, ...options } as unknown as RateLimitOptions)).toThrow(TypeError);
			expect(() => rateLimit({ store, ...options } as unknown as RateLimitOptions)).toThrow(message);
		}

		expect(() => rateLimit(undefined as unknown as RateLimitOptions)).toThrow(/`options` must be an object/);
	});

	it('warns of settings that are legal but do not do what they seem to', async () => {
		const store = await newStore();
		const logger = recordingLogger();
		rateLimit({ store, logger });
		rateLimit({ store, logger, prefix: 'login:', ipv6Subnet: 64 });
		expect(logger.warnings).toEqual([]);
		rateLimit({ store, logger });
		rateLimit({ store, logger, prefix: 'api:', ipv6Subnet: 64, keyGenerator: () => 'k' });
		expect(logger.warnings).toHaveLength(2);
		expect(logger.warnings[0]).toMatch(/share the prefix "rl:"/);
		expect(logger.warnings[1]).toMatch(/ignores `ipv6Subnet` when `keyGenerator` is given/);
	});

	it.each([
		['at once', <T>(value: T) => value],
		['as a promise', <T>(value: T) => new Promise<T>((resolve) => setTimeout(resolve, 2, value))],
	])('takes the answers of option functions given %s alike', async (_how, answer) => {
		const store = await newStore();
		const app = createLimitedApp(
			store,
			rateLimit({
				store,
				logger: silentLogger,
				limit: () => answer(3),
				cost: (req) => answer(Number(req.get('x-cost') ?? 1)),
				addressLimit: () => answer(4),
				identifier: () => answer('api'),
				ipv6Subnet: () => answer(48),
			}),
		);
		app.set('trust proxy', 'loopback');
		app.use(((error, _req, res, _next) => res.status(500).json({ error: error.message })) as express.ErrorRequestHandler);
		const { url, close } = await listen(app);
		cleanups.push(close);
		const { cookie, id } = await login(url);
		const pk = partitionKey(`sid:${id}`);

		const first = await callApi(url, cookie).set('x-cost', '2').expect(200);
		expect(first.headers['ratelimit-policy']).toBe(`"api"; q=3; w=60; pk=:${pk}:`);
		expect(first.headers.ratelimit).toMatch(/^"api"; r=1; t=(59|60)$/);
		await callApi(url, cookie).expect(200);
		expect((await callApi(url, cookie).expect(429)).headers.ratelimit).toMatch(/^"api"; r=0; t=(59|60)$/);
		expect(await redisCount(`rl:sid:${id}`)).toBe(3);
		// The address's ceiling (4) counted the session's 3 and refused nothing.
		expect(await redisCount('rl:addr:127.0.0.1')).toBe(3);

		const fromV6 = await callApi(url).set('X-Forwarded-For', '2001:db8:abcd:1200::1').expect(200);
		expect(fromV6.body.key).toBe('ip:2001:db8:abcd::/48');
		// A bad answer fails the request with a TypeError naming the option, whichever way it came.
		const bad = await callApi(url, cookie).set('x-cost', 'many').expect(500);
		expect(bad.body.error).toMatch(/`cost` must return a finite number of at least 0; got NaN/);
	});

	it('counts in memory on a store without Redis, holding at most maxMemoryKeys clients', async () => {
		const url = process.env.REDIS_URL;
		delete process.env.REDIS_URL;
		const store = new ResilientStore({ logger: silentLogger });
		if (url !== undefined) process.env.REDIS_URL = url;
		cleanups.push(() => store.close());
		const logger = recordingLogger();
		// limitDuringOutage does not apply: a store without Redis is never in an outage.
		const limiter = rateLimit({
			store,
			logger,
			limit: 1,
			limitDuringOutage: 0,
			maxMemoryKeys: 3,
			keyGenerator: (req) => String(req.get('x-client')),
		});
		const served = await listen(createLimitedApp(store, limiter));
		cleanups.push(served.close);
		const as = (client: string) => callApi(served.url).set('x-client', client);

		expect(await statuses(4, (i) => as('abca'[i]!))).toEqual([200, 200, 200, 429]);
		expect(logger.warnings).toEqual([]);
		// A fourth client makes room by dropping the least recently seen count: b's, not a's.
		await as('d').expect(200);
		await as('a').expect(429);
		await as('b').expect(200);
		await as('d').expect(429);
		expect(logger.warnings).toHaveLength(1);
		expect(logger.warnings[0]).toMatch(/counts 3 clients in memory \(`maxMemoryKeys`\)/);
	});
});
