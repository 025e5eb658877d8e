/**
 * The token-budget example (examples/token-budget) through supertest, on a real
 * redis-server of this file's own, with two instances of the app on it: a user's budget
 * follows them from one instance to the other, and each answer charges what it used.
 */
import request from 'supertest';
import { ResilientStore, silentLogger } from '../lib/index.js';
import { createTokenBudgetApp } from '../examples/token-budget/app.js';
import { RedisServer } from './helpers/redis-server.js';
import { connected, fastFailover } from './helpers/common.js';

let redis: RedisServer;
let stores: ResilientStore[];

beforeAll(async () => {
	redis = await RedisServer.start();
});

beforeEach(async () => {
	await redis.command('FLUSHALL');
	stores = [];
	for (let i = 0; i < 2; i++) {
		stores.push(await connected(new ResilientStore({ url: redis.url, logger: silentLogger, ...fastFailover })));
	}
});

afterEach(() => Promise.all(stores.map((store) => store.close())));
afterAll(() => redis.kill());

/** Two instances of the example, and an agent of each logged in as `user` (one session, shared). */
const loggedIn = async (user: string) => {
	const apps = stores.map((store) => createTokenBudgetApp({ store, budget: { logger: silentLogger } }));
	const login = await request(apps[0]!).post('/login').send({ user }).expect(200);
	const cookie = (login.headers['set-cookie'] as unknown as string[])[0]!.split(';')[0]!;
	const complete = (instance: number, prompt: string, maxTokens?: number) =>
		request(apps[instance]!).post('/v1/complete').set('Cookie', cookie).send({ prompt, maxTokens });
	return { apps, complete };
};

describe('the token-budget example', () => {
	it('charges each user the tokens their completions used, on whichever instance', async () => {
		const { complete } = await loggedIn('ann');
		// Four prompt tokens, 17 generated: 21 of the 300 reserved are kept.
		const first = await complete(0, 'tell me about budgets', 300).expect(200);
		expect(first.body.usage).toEqual({ promptTokens: 4, completionTokens: 17, totalTokens: 21 });
		expect(first.body.budget).toEqual({ limit: 1_000, used: 21, remaining: 979, limited: false });
		expect(first.headers['ratelimit-policy']).toMatch(
			/^"tokens-per-minute"; q=1000; w=60; pk=:[^:]+:, "tokens-per-day"; q=10000; w=86400; pk=:[^:]+:$/,
		);
		expect(first.headers.ratelimit).toMatch(/^"tokens-per-minute"; r=979; t=\d+$/);

		const second = await complete(1, 'and again', 100).expect(200);
		expect(second.body.budget).toMatchObject({ used: 21 + 2 + 11, remaining: 1_000 - 34 });
		expect(await redis.command('GET', 'rl:tokens:{user:ann}:60000')).toBe('34');
		expect(await redis.command('GET', 'rl:tokens:{user:ann}:86400000')).toBe('34');
	});

	it('refuses a completion whose reservation does not fit, without using the budget, until the window resets', async () => {
		const { complete } = await loggedIn('bea');
		// A long prompt: every reserved token is used.
		const long = Array.from({ length: 200 }, () => 'word').join(' ');
		await complete(0, long, 500).expect(200);
		const spent = await complete(1, long, 300).expect(200);
		// 200 + 500, then 200 + 300: the second went past the minute's 1 000.
		expect(spent.body.budget).toMatchObject({ remaining: 0, limited: true });
		const refused = await complete(0, 'hi', 1).expect(429);
		expect(refused.body).toEqual({ error: 'Token budget spent: wait for the time in Retry-After.' });
		expect(Number(refused.headers['retry-after'])).toBeGreaterThan(50);
		expect(await redis.command('GET', 'rl:tokens:{user:bea}:60000')).toBe('1200');
		// Another user has a budget of their own.
		await (await loggedIn('cal')).complete(1, 'hi', 10).expect(200);
	});
});
