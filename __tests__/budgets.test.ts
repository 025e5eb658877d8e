/**
 * Budgets: weighted requests (`cost`), charges after the fact (`req.rateLimit.charge`)
 * and several windows per limit (`windows`), on this file's own redis-server, across two
 * instances (two stores and two Express apps on one Redis), through an outage and back.
 */
import { type EventEmitter, once } from 'node:events';
import express, { type Request } from 'express';
import session from 'express-session';
import request from 'supertest';
import { type BudgetInfo, rateLimit, type RateLimitOptions, ResilientStore, silentLogger } from '../lib/index.js';
import { redisLinkOf } from '../lib/redis/link.js';
import { fastFailover, listen, nextEvent, until } from './helpers/common.js';
import { useRedisServer } from './helpers/redis-server.js';
import { TcpProxy } from './helpers/tcp-proxy.js';

const fixture = useRedisServer();

/** A store on `url` (the file's redis-server by default), connected, closed after the test. */
const newStore = async (url = fixture.redis.url) => {
	// A deadline a loaded test machine never misses: a spurious fallback would split counts.
	const store = new ResilientStore({ url, logger: silentLogger, ...fastFailover, timeoutMs: 1_000 });
	fixture.afterTest(() => store.close());
	const client = redisLinkOf(store)?.client as unknown as EventEmitter & { isReady: boolean };
	if (client && !client.isReady) await once(client, 'ready');
	return store;
};

const budgetOf = (req: Request) => (req as unknown as { rateLimit: BudgetInfo }).rateLimit;

/**
 * An instance: express-session on `store`, then a budget of `options`, keyed on the
 * `x-user` header (one budget per user, whichever instance serves them):
 * - `GET /api`: what `req.rateLimit` says;
 * - `POST /generate?tokens=n`: "generates" n tokens and charges them, answering with
 *   what the charge says;
 * - `POST /answer?tokens=n`: answers first and charges the tokens once the response
 *   has finished.
 */
const serve = async (store: ResilientStore, options: Omit<RateLimitOptions, 'store'>) => {
	const app = express();
	app.use(session({ store, secret: 'test secret', resave: false, saveUninitialized: false }));
	app.post('/login', (req, res, next) => {
		req.session.regenerate((error) => {
			if (error) return next(error);
			(req.session as unknown as { member: string }).member = 'ann';
			res.json({ id: req.sessionID });
		});
	});
	app.use(
		rateLimit({
			store,
			logger: silentLogger,
			keyGenerator: (req) => `user:${String(req.get('x-user'))}`,
			...options,
		}),
	);
	app.get('/api', (req, res) => {
		const { limit, used, remaining, key } = budgetOf(req);
		res.json({ limit, used, remaining, key, backend: store.backend });
	});
	app.post('/generate', async (req, res, next) => {
		try {
			// The model takes `wait` ms to answer.
			await new Promise((resolve) => setTimeout(resolve, Number(req.query.wait ?? 0)));
			const charged = await budgetOf(req).charge(Number(req.query.tokens));
			res.json({ charged, used: budgetOf(req).used, backend: store.backend });
		} catch (error) {
			next(error);
		}
	});
	app.post('/answer', (req, res) => {
		res.on('finish', () => void budgetOf(req).charge(Number(req.query.tokens)));
		res.json({ answer: 'ok' });
	});
	app.get('/missing', (_req, res) => res.status(404).end());
	const { url, close } = await listen(app);
	fixture.afterTest(close);
	return url;
};

/** Two instances of one budget on one Redis. */
const twoInstances = async (options: Omit<RateLimitOptions, 'store'>) => {
	const [a, b] = [await newStore(), await newStore()];
	return [await serve(a, options), await serve(b, options)] as const;
};

const count = async (key: string) => Number((await fixture.redis.command('GET', key)) ?? 0);

const as = (user: string) => ({
	api: (url: string, cost?: number) => {
		const call = request(url).get('/api').set('x-user', user);
		return cost === undefined ? call : call.set('x-cost', String(cost));
	},
	generate: (url: string, tokens: number, cost?: number, wait = 0) => {
		const call = request(url).post(`/generate?tokens=${tokens}&wait=${wait}`).set('x-user', user);
		return cost === undefined ? call : call.set('x-cost', String(cost));
	},
	answer: (url: string, tokens: number) => request(url).post(`/answer?tokens=${tokens}`).set('x-user', user),
});

describe('weighted requests (cost)', () => {
	it('lets through no more than the limit of many concurrent weighted requests, over two instances', async () => {
		const urls = await twoInstances({ limit: 100, cost: (req) => Number(req.get('x-cost') ?? 1) });
		const ann = as('ann');
		// 60 requests of costs 7 and 3 at once: 300 asked for, 100 at most let through.
		const costs = Array.from({ length: 60 }, (_, i) => (i % 2 ? 7 : 3));
		const responses = await Promise.all(costs.map((cost, i) => ann.api(urls[i % 2]!, cost)));

		const admitted = costs.filter((_cost, i) => responses[i]!.status === 200);
		const spent = admitted.reduce((sum, cost) => sum + cost, 0);
		expect(responses.every((res) => res.status === 200 || res.status === 429)).toBe(true);
		expect(spent).toBeLessThanOrEqual(100);
		// What Redis holds is exactly what was let through: a refused request used nothing.
		expect(await count('rl:user:ann')).toBe(spent);
		// The used figures handed out are each a distinct running total, as one atomic script gives them.
		const used = responses.filter((res) => res.status === 200).map((res) => res.body.used as number);
		expect(new Set(used).size).toBe(used.length);
		expect(Math.max(...used)).toBe(spent);
		// Every request that would still fit gets through: the budget was not burnt by the refusals.
		const left = 100 - spent;
		if (left > 0) await ann.api(urls[0]!, left).expect(200);
		await ann.api(urls[1]!, 1).expect(429);
		expect(await count('rl:user:ann')).toBe(100);
	});

	it('judges each request by its own cost when keys of one user come back out of order', async () => {
		// The key generator answers the costlier requests later, so the keys of one user
		// become known in another order than the requests came in.
		const urls = await twoInstances({
			limit: 60,
			cost: (req) => Number(req.get('x-cost')),
			keyGenerator: async (req) => {
				await new Promise((resolve) => setTimeout(resolve, Number(req.get('x-cost')) * 5));
				return `user:${String(req.get('x-user'))}`;
			},
		});
		const costs = Array.from({ length: 24 }, (_, i) => [9, 4, 1][i % 3]!);
		const responses = await Promise.all(costs.map((cost, i) => as('cy').api(urls[i % 2]!, cost)));

		const admitted = costs.filter((_cost, i) => responses[i]!.status === 200);
		const spent = admitted.reduce((sum, cost) => sum + cost, 0);
		// Each answer's running total moved by that request's own cost: sorted, the totals
		// step by exactly the admitted costs, in some order, up to what Redis holds.
		const used = responses.filter((res) => res.status === 200).map((res) => res.body.used as number);
		expect(new Set(used).size).toBe(used.length);
		expect(Math.max(...used)).toBe(spent);
		expect(await count('rl:user:cy')).toBe(spent);
		const steps = [...used].sort((a, b) => a - b).map((total, i, all) => total - (all[i - 1] ?? 0));
		expect(steps.sort((a, b) => a - b)).toEqual([...admitted].sort((a, b) => a - b));
	});

	it('refuses a costly request near the limit without using what is left', async () => {
		const urls = await twoInstances({ limit: 10, cost: (req) => Number(req.get('x-cost') ?? 1) });
		const bob = as('bob');
		expect((await bob.api(urls[0]!, 8).expect(200)).body).toMatchObject({ used: 8, remaining: 2 });
		const refused = await bob.api(urls[1]!, 5).expect(429);
		// The refusal says what is left, and when to retry.
		expect(refused.headers.ratelimit).toMatch(/^"10-in-1min"; r=2; t=\d+$/);
		expect(Number(refused.headers['retry-after'])).toBeGreaterThan(50);
		expect(await count('rl:user:bob')).toBe(8);
		await bob.api(urls[1]!, 2).expect(200);
		await bob.api(urls[0]!, 0).expect(429);
	});

	it('counts a fixed cost, and gives back exactly that cost when a failed request is taken back', async () => {
		const urls = await twoInstances({ limit: 20, cost: 5, skipFailedRequests: true });
		const cy = as('cy');
		await cy.api(urls[0]!).expect(200);
		expect(await count('rl:user:cy')).toBe(5);
		await request(urls[1]!).get('/missing').set('x-user', 'cy').expect(404);
		// Taken back once the response finished: the cost, not one.
		await until(async () => (await count('rl:user:cy')) === 5);
		await cy.api(urls[1]!).expect(200);
		await cy.api(urls[0]!).expect(200);
		await cy.api(urls[1]!).expect(200);
		await cy.api(urls[0]!).expect(429);
		expect(await count('rl:user:cy')).toBe(20);
	});

	it('counts the cost against the address ceiling, over all the sessions of one address', async () => {
		const store = await newStore();
		// The default key: per session, each under its address's ceiling.
		const url = await serve(store, { limit: 10, addressLimit: 15, cost: 5, keyGenerator: undefined });
		const agents = [request.agent(url), request.agent(url)];
		const ids = [];
		for (const agent of agents) ids.push((await agent.post('/login').expect(200)).body.id as string);
		await agents[0]!.get('/api').expect(200);
		await agents[0]!.get('/api').expect(200);
		await agents[1]!.get('/api').expect(200);
		// The second session has 5 left of its own, but the address has used its 15.
		await agents[1]!.get('/api').expect(429);
		expect(await count('rl:addr:127.0.0.1')).toBe(15);
		expect(await count(`rl:sid:${ids[1]}`)).toBe(5);
	});

	it('fails the request with a TypeError passed to next when the cost function returns a bad value', async () => {
		const store = await newStore();
		const url = await serve(store, { limit: 10, cost: (req) => Number(req.get('x-cost')) });
		const res = await as('dee').api(url, Number.NaN).expect(500);
		expect(res.text).toMatch(/TypeError: resilient-session: rateLimit\(\) `cost` must return a finite number of at least 0; got NaN/);
		await as('dee').api(url, -1).expect(500);
		expect(await fixture.redis.command('EXISTS', 'rl:user:dee')).toBe(0);
	});
});

describe('charges after the fact (req.rateLimit.charge)', () => {
	it('stops the next request, on any instance, once the charges spent the budget', async () => {
		const urls = await twoInstances({ limit: 100, cost: 0 });
		const eve = as('eve');
		expect((await eve.generate(urls[0]!, 60).expect(200)).body.charged).toEqual({ remaining: 40, limited: false });
		// A charge is never refused: it counts what was already spent, past the limit too.
		const second = await eve.generate(urls[1]!, 60).expect(200);
		expect(second.body).toMatchObject({ charged: { remaining: 0, limited: true }, used: 120 });
		expect(await count('rl:user:eve')).toBe(120);
		await eve.api(urls[0]!).expect(429);
		await eve.api(urls[1]!).expect(429);
	});

	it('charges once the response has finished, and the next request sees it', async () => {
		const urls = await twoInstances({ limit: 50, cost: 1 });
		const fay = as('fay');
		await fay.answer(urls[0]!, 49).expect(200);
		await until(async () => (await count('rl:user:fay')) === 50);
		await fay.api(urls[1]!).expect(429);
	});

	it('refunds with a negative amount, never below 0', async () => {
		const urls = await twoInstances({ limit: 100, cost: (req) => Number(req.get('x-cost') ?? 1) });
		const gus = as('gus');
		// An estimate of 100 up front, corrected after: 70 were used.
		const estimated = await gus.generate(urls[0]!, -30, 100).expect(200);
		expect(estimated.body.charged).toEqual({ remaining: 30, limited: false });
		expect(await count('rl:user:gus')).toBe(70);
		await gus.api(urls[1]!, 31).expect(429);
		await gus.api(urls[1]!, 30).expect(200);
		await gus.api(urls[0]!, 0).expect(429);

		const ida = as('ida');
		await ida.api(urls[0]!, 10).expect(200);
		const refunded = await ida.generate(urls[1]!, -1_000, 5).expect(200);
		expect(refunded.body.charged).toEqual({ remaining: 100, limited: false });
		expect(await fixture.redis.command('EXISTS', 'rl:user:ida')).toBe(0);
	});

	it('gives a refund back to the window the request was counted in, never to the next one', async () => {
		const urls = await twoInstances({ limit: 100, windowMs: 1_000, cost: (req) => Number(req.get('x-cost') ?? 1) });
		const jo = as('jo');
		// Reserves 60 and gives 50 back once the model answered, 1.3 s later: its window
		// (which its count started) has ended by then.
		const slow = jo.generate(urls[0]!, -50, 60, 1_300).then((res) => res);
		await new Promise((resolve) => setTimeout(resolve, 1_100));
		// The next window: 70 used by another request meanwhile.
		await jo.api(urls[1]!, 70).expect(200);
		expect((await slow).status).toBe(200);
		expect(await count('rl:user:jo')).toBe(70);
	});

	it('adds fractional amounts without drift', async () => {
		const urls = await twoInstances({ limit: 1, cost: 0 });
		const hal = as('hal');
		for (let i = 0; i < 3; i++) await hal.generate(urls[i % 2]!, 0.1).expect(200);
		// 0.1 + 0.1 + 0.1 is 0.3 in Redis, not 0.30000000000000004.
		expect(await fixture.redis.command('GET', 'rl:user:hal')).toBe('0.3');
		const last = await hal.generate(urls[1]!, 0.7).expect(200);
		expect(last.body.charged).toEqual({ remaining: 0, limited: true });
		expect(await fixture.redis.command('GET', 'rl:user:hal')).toBe('1');
		await hal.api(urls[0]!).expect(429);
	});

	it('rejects an amount that is not a finite number with a TypeError naming `amount`', async () => {
		const store = await newStore();
		const url = await serve(store, { limit: 10 });
		const res = await as('ivy').generate(url, Number.NaN).expect(500);
		expect(res.text).toMatch(/TypeError: resilient-session: charge\(amount\): `amount` must be a finite number; got NaN/);
	});
});

describe('several windows (windows)', () => {
	it('enforces each window, counting both in one script under one hash tag', async () => {
		const urls = await twoInstances({
			windows: [
				{ windowMs: 60_000, limit: 2 },
				{ windowMs: 3_600_000, limit: 3 },
			],
		});
		const jo = as('jo');
		const first = await jo.api(urls[0]!).expect(200);
		// Every window is a policy of its own; RateLimit gives the closest to its limit.
		expect(first.headers['ratelimit-policy']).toMatch(
			/^"2-in-1min"; q=2; w=60; pk=:[^:]+:, "3-in-1hr"; q=3; w=3600; pk=:[^:]+:$/,
		);
		expect(first.headers.ratelimit).toMatch(/^"2-in-1min"; r=1; t=\d+$/);
		await jo.api(urls[1]!).expect(200);
		// The minute refuses: retry when it resets.
		const minute = await jo.api(urls[0]!).expect(429);
		expect(Number(minute.headers['retry-after'])).toBeLessThanOrEqual(60);
		expect(minute.headers.ratelimit).toMatch(/^"2-in-1min"; r=0; t=\d+$/);
		const keys = ((await fixture.redis.command('KEYS', 'rl:*')) as string[]).sort();
		expect(keys).toEqual(['rl:{user:jo}:3600000', 'rl:{user:jo}:60000']);

		// The minute ends.
		await fixture.redis.command('DEL', 'rl:{user:jo}:60000');
		const third = await jo.api(urls[1]!).expect(200);
		expect(third.body).toMatchObject({ limit: 3, used: 3, remaining: 0 });
		// The hour refuses now, although the minute has room: retry when the hour resets.
		const hour = await jo.api(urls[0]!).expect(429);
		expect(Number(hour.headers['retry-after'])).toBeGreaterThan(3_500);
		expect(hour.headers.ratelimit).toMatch(/^"3-in-1hr"; r=0; t=\d+$/);
		expect(await count('rl:{user:jo}:3600000')).toBe(3);
		expect(await count('rl:{user:jo}:60000')).toBe(1);
	});

	it('lets through no more than the tightest window of many concurrent requests, over two instances', async () => {
		const urls = await twoInstances({
			windows: [
				{ windowMs: 60_000, limit: 30 },
				{ windowMs: 3_600_000, limit: 12 },
			],
			cost: (req) => Number(req.get('x-cost') ?? 1),
		});
		const kit = as('kit');
		const responses = await Promise.all(Array.from({ length: 20 }, (_, i) => kit.api(urls[i % 2]!, 2)));
		expect(responses.filter((res) => res.status === 200)).toHaveLength(6);
		expect(await count('rl:{user:kit}:60000')).toBe(12);
		expect(await count('rl:{user:kit}:3600000')).toBe(12);
	});

	it('charges every window, and describes the one closest to its limit', async () => {
		const urls = await twoInstances({
			windows: [
				{ windowMs: 60_000, limit: 100, identifier: 'minute' },
				{ windowMs: 86_400_000, limit: 150, identifier: 'day' },
			],
			cost: 0,
			standardHeaders: 'draft-7',
			legacyHeaders: true,
		});
		const lee = as('lee');
		expect((await lee.generate(urls[0]!, 80).expect(200)).body.charged).toEqual({ remaining: 20, limited: false });
		expect(await count('rl:{user:lee}:86400000')).toBe(80);
		// Another minute would leave 100 in it, but the day has 70 left: the day is closest.
		await fixture.redis.command('DEL', 'rl:{user:lee}:60000');
		const res = await lee.api(urls[1]!).expect(200);
		expect(res.body).toMatchObject({ limit: 150, used: 80, remaining: 70 });
		expect(res.headers.ratelimit).toMatch(/^limit=150, remaining=70, reset=\d+$/);
		expect(res.headers['ratelimit-policy']).toBe('150;w=86400');
		expect(res.headers['x-ratelimit-remaining']).toBe('70');
		expect((await lee.generate(urls[1]!, 70).expect(200)).body.charged).toEqual({ remaining: 0, limited: true });
		await lee.api(urls[0]!).expect(429);
	});
});

describe('budgets during a Redis outage', () => {
	it('weighs, charges and refunds in memory during an outage, and on Redis again after', async () => {
		const proxy = await TcpProxy.start(fixture.redis.port);
		fixture.afterTest(() => proxy.close());
		const store = await newStore(proxy.url);
		const url = await serve(store, {
			windows: [
				{ windowMs: 60_000, limit: 50 },
				{ windowMs: 3_600_000, limit: 80 },
			],
			cost: (req) => Number(req.get('x-cost') ?? 1),
		});
		const max = as('max');
		await max.api(url, 10).expect(200);
		expect(await count('rl:{user:max}:60000')).toBe(10);

		const fellBack = nextEvent(store, 'fallback');
		proxy.cut();
		// Counting goes on in memory from what Redis last gave (10).
		await max.api(url, 5).expect(200);
		await fellBack;
		expect(store.backend).toBe('memory');
		const charged = await max.generate(url, 30.5, 0).expect(200);
		expect(charged.body).toMatchObject({ charged: { remaining: 4.5, limited: false }, used: 45.5, backend: 'memory' });
		// Refused in memory too, and without using anything: 45.5 + 5 > 50.
		await max.api(url, 5).expect(429);
		expect((await max.generate(url, -0.5, 0).expect(200)).body.charged).toEqual({ remaining: 5, limited: false });
		await max.api(url, 5).expect(200);
		await max.api(url, 0).expect(429);

		const recovered = nextEvent(store, 'recover');
		proxy.pass();
		await recovered;
		// What was counted in memory was merged into both windows.
		await until(async () => (await count('rl:{user:max}:3600000')) === 50);
		expect(await count('rl:{user:max}:60000')).toBe(50);
		await max.api(url, 0).expect(429);
		// The minute ends; the hour goes on from what memory counted.
		await fixture.redis.command('DEL', 'rl:{user:max}:60000');
		await max.api(url, 31).expect(429);
		await max.api(url, 10).expect(200);
		expect((await max.generate(url, -20, 0).expect(200)).body).toMatchObject({
			// The hour, 40 left, is closer to its limit than the minute, 50 left.
			charged: { remaining: 40, limited: false },
			backend: 'redis',
		});
		expect(await count('rl:{user:max}:3600000')).toBe(40);
		expect(await fixture.redis.command('EXISTS', 'rl:{user:max}:60000')).toBe(0);
		expect(store.backend).toBe('redis');
	});

	it('merges charges made in memory into a Redis that restarted empty, never below what memory held', async () => {
		const store = await newStore();
		const url = await serve(store, { limit: 100, cost: 0 });
		const ned = as('ned');
		await ned.generate(url, 40).expect(200);
		const fellBack = nextEvent(store, 'fallback');
		await fixture.redis.kill();
		await ned.generate(url, 35).expect(200);
		await fellBack;
		expect((await ned.generate(url, 25).expect(200)).body).toMatchObject({
			charged: { remaining: 0, limited: true },
			backend: 'memory',
		});
		await ned.api(url).expect(429);

		const recovered = nextEvent(store, 'recover');
		await fixture.redis.restart();
		await recovered;
		expect(await count('rl:user:ned')).toBe(100);
		await ned.api(url).expect(429);
	});
});

describe('headers of budgets', () => {
	it('keeps whole numbers in the draft-7 and legacy headers of a fractional budget', async () => {
		const store = await newStore();
		const url = await serve(store, { limit: 2.5, cost: 0.75, standardHeaders: 'draft-7', legacyHeaders: true });
		const res = await as('kay').api(url).expect(200);
		expect(res.headers.ratelimit).toMatch(/^limit=2, remaining=1, reset=\d+$/);
		expect(res.headers['x-ratelimit-limit']).toBe('2');
		expect(res.headers['x-ratelimit-remaining']).toBe('1');
	});

	it('replaces after a charge only the draft-8 values of the limit charged, not those of another limit', async () => {
		const store = await newStore();
		const app = express();
		app.use(rateLimit({ store, logger: silentLogger, limit: 50, identifier: 'requests', keyGenerator: () => 'all' }));
		app.use(
			rateLimit({
				store,
				logger: silentLogger,
				prefix: 'budget:',
				limit: 1_000,
				identifier: 'tokens',
				requestPropertyName: 'budget',
				keyGenerator: () => 'all',
			}),
		);
		app.post('/charge', async (req, res) => {
			await budgetOf(req).charge(5);
			res.json({ ok: true });
		});
		const { url, close } = await listen(app);
		fixture.afterTest(close);
		const res = await request(url).post('/charge').expect(200);
		// The first limit's values changed with its charge; the budget's stayed.
		expect(res.headers['ratelimit-policy']).toMatch(/"requests"; q=50;/);
		expect(res.headers['ratelimit-policy']).toMatch(/"tokens"; q=1000;/);
		expect(res.headers.ratelimit).toMatch(/"tokens"; r=999/);
		expect(res.headers.ratelimit).toMatch(/"requests"; r=44/);
	});
});

describe('budget options', () => {
	it('throws a TypeError naming the option for bad windows, costs and combinations', async () => {
		const store = await newStore();
		const bad: Array<[Record<string, unknown>, RegExp]> = [
			[{ windows: [] }, /`windows` must be a non-empty array of \{ windowMs, limit \}; got an array/],
			[{ windows: {} }, /`windows` must be a non-empty array/],
			[{ windows: [{ windowMs: 0, limit: 5 }] }, /`windows\[0\]\.windowMs` must be a whole number from 1/],
			[{ windows: [{ windowMs: 1000, limit: -1 }] }, /`windows\[0\]\.limit` must be a number from 0 to 9,000,000,000; got -1/],
			[{ windows: [{ windowMs: 1000, limit: 1e10 }] }, /`windows\[0\]\.limit` must be a number from 0 to 9,000,000,000/],
			[{ windows: [{ windowMs: 1000, limit: 5 }, { windowMs: 1000, limit: 6 }] }, /windows of different lengths/],
			[{ windows: [{ windowMs: 1000, limt: 5 }] }, /windows\[0\] has no option `limt` \(did you mean `limit`\?\)/],
			[{ windows: [{ windowMs: 1000, limit: 5 }], limit: 3 }, /takes `limit` or `windows`, not both/],
			[{ windows: [{ windowMs: 1000, limit: 5 }], windowMs: 1000 }, /takes `windowMs` or `windows`, not both/],
			[{ cost: -1 }, /`cost` must be a number from 0 to 9,000,000,000; got -1/],
			[{ cost: Infinity }, /`cost` must be a number from 0 to 9,000,000,000/],
			[{ cost: '2' }, /`cost` must be a number from 0 to 9,000,000,000/],
			[{ costs: 2 }, /no option `costs` \(did you mean `cost`\?\)/],
			[{ window: [] }, /no option `window` \(did you mean `windowMs`\?\)/],
		];
		for (const [options, message] of bad) {
			expect(() => rateLimit({ store, ...options } as unknown as RateLimitOptions)).toThrow(TypeError);
			expect(() => rateLimit({ store, ...options } as unknown as RateLimitOptions)).toThrow(message);
		}
	});
});
