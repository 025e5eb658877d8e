/**
 * The API rate-limit example (examples/api-rate-limit) through supertest, on a real
 * redis-server of this file's own: the headers a client sees, and the refusal.
 */
import request from 'supertest';
import { ResilientStore, silentLogger } from '../lib/index.js';
import { createApiApp } from '../examples/api-rate-limit/app.js';
import { RedisServer } from './helpers/redis-server.js';
import { connected, fastFailover } from './helpers/common.js';

let redis: RedisServer;
let store: ResilientStore;

beforeAll(async () => {
	redis = await RedisServer.start();
});

beforeEach(async () => {
	await redis.command('FLUSHALL');
	store = await connected(new ResilientStore({ url: redis.url, logger: silentLogger, ...fastFailover }));
});

afterEach(() => store.close());
afterAll(() => redis.kill());

const exampleApp = () => createApiApp({ store, rateLimit: { logger: silentLogger } });

describe('the API rate-limit example', () => {
	it('sends the RateLimit headers on every response and refuses the sixth request with Retry-After', async () => {
		const app = exampleApp();
		for (let remaining = 4; remaining >= 0; remaining--) {
			const res = await request(app).get('/api/quote').expect(200);
			expect(res.headers['ratelimit-policy']).toMatch(/^"5-in-10sec"; q=5; w=10; pk=:[^:]+:$/);
			expect(res.headers['ratelimit']).toMatch(new RegExp(`^"5-in-10sec"; r=${remaining}; t=\\d+$`));
			expect(res.body).toMatchObject({ countedPer: 'address', rateLimit: { limit: 5, remaining }, backend: 'redis' });
		}

		const refused = await request(app).get('/api/quote').expect(429);
		expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
		expect(refused.headers['ratelimit']).toMatch(/^"5-in-10sec"; r=0; t=\d+$/);
		expect(refused.body).toEqual({ error: 'Too many requests: wait for the time in Retry-After.' });
		// The counts are in Redis, where every instance sees them: the client's, and its
		// address's ceiling over all its sessions.
		expect(((await redis.command('KEYS', 'rl:api:*')) as string[]).sort()).toEqual([
			'rl:api:addr:127.0.0.1',
			'rl:api:ip:127.0.0.1',
		]);
	});

	it('counts a client with a session apart from its address', async () => {
		const app = exampleApp();
		for (let i = 0; i < 5; i++) await request(app).get('/api/quote').expect(200);
		await request(app).get('/api/quote').expect(429);

		const created = await request(app).post('/api/session').expect(201);
		const cookie = (created.headers['set-cookie'] as unknown as string[])[0]!.split(';')[0]!;
		const res = await request(app).get('/api/quote').set('Cookie', cookie).expect(200);
		expect(res.body).toMatchObject({ countedPer: 'session', rateLimit: { remaining: 4 } });
	});
});
