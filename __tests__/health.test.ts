import express from 'express';
import request from 'supertest';
import { type HealthHandlerOptions, healthHandler, ResilientStore, silentLogger } from '../lib/index.js';
import { connected, fastFailover, nextEvent } from './helpers/common.js';
import { useRedisServer } from './helpers/redis-server.js';
import { TcpProxy } from './helpers/tcp-proxy.js';

/**
 * The stores' deadline in this file, and what an answer may take on top of it on a busy
 * machine: a handler that waited on Redis twice as long as the deadline, or for good, fails.
 */
const DEADLINE_MS = 1_000;
const SLACK_MS = 500;

const fixture = useRedisServer();
let proxy: TcpProxy;

beforeEach(async () => {
	proxy = await TcpProxy.start(fixture.redis.port);
	fixture.afterTest(() => proxy.close());
});

/**
 * A store through the proxy (its link can be stalled), or on `url` (`null`: memory only),
 * and an app with `/healthz` and `/readyz` (`degradedStatusCode: 503`) on it.
 */
const setup = async (options: Omit<HealthHandlerOptions, 'store'> = {}, url: string | null = proxy.url) => {
	const store = new ResilientStore({
		...(url ? { url } : {}),
		logger: silentLogger,
		...fastFailover,
		timeoutMs: DEADLINE_MS,
	});
	fixture.afterTest(() => store.close());
	if (url) await connected(store);
	const app = express();
	app.get('/healthz', healthHandler({ store, ...options }));
	app.get('/readyz', healthHandler({ store, ...options, degradedStatusCode: 503 }));
	return { store, app };
};

/** Requests `path`, and how long the answer took. */
const timed = async (app: express.Express, path: string) => {
	const started = Date.now();
	const res = await request(app).get(path);
	return { res, ms: Date.now() - started };
};

describe('healthHandler()', () => {
	it('answers ok with the store’s stats while Redis serves', async () => {
		const { app } = await setup();
		const res = await request(app).get('/healthz').expect(200).expect('Cache-Control', 'no-store');
		expect(res.body).toEqual({
			status: 'ok',
			backend: 'redis',
			redis: true,
			since: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
			failovers: 0,
			pendingWriteBack: 0,
			tombstones: 0,
			memorySessions: 0,
			redisLatencyMs: expect.any(Number),
		});
		await request(app).get('/readyz').expect(200, /"status":"ok"/);
	});

	it('answers degraded within the deadline while Redis is stalled, 503 where asked, then ok again', async () => {
		const { store, app } = await setup();
		proxy.stall();
		const stalled = await timed(app, '/healthz');
		expect(stalled.res.status).toBe(200);
		expect(stalled.res.body).toMatchObject({ status: 'degraded', backend: 'memory', failovers: 1 });
		expect(stalled.ms).toBeLessThan(DEADLINE_MS + SLACK_MS);

		const ready = await timed(app, '/readyz');
		expect(ready.res.status).toBe(503);
		expect(ready.res.body).toMatchObject({ status: 'degraded', backend: 'memory' });
		expect(ready.ms).toBeLessThan(DEADLINE_MS + SLACK_MS);

		const recovered = nextEvent(store, 'recover');
		proxy.pass();
		await recovered;
		await request(app).get('/readyz').expect(200, /"status":"ok","backend":"redis"/);
	});

	it('notices a Redis that died under an idle instance', async () => {
		const { app } = await setup({}, fixture.redis.url);
		await request(app).get('/healthz').expect(200, /"status":"ok"/);
		await fixture.redis.kill();
		const { res, ms } = await timed(app, '/readyz');
		expect(res.status).toBe(503);
		expect(res.body).toMatchObject({ status: 'degraded', backend: 'memory' });
		expect(ms).toBeLessThan(DEADLINE_MS + SLACK_MS);
	});

	it('without ping, tells what the store last saw', async () => {
		const { app } = await setup({ ping: false });
		proxy.stall();
		await request(app).get('/readyz').expect(200, /"status":"ok","backend":"redis"/);
	});

	it('shows the last error only with exposeErrors', async () => {
		const { app } = await setup({ exposeErrors: true });
		expect((await request(app).get('/healthz').expect(200)).body.lastError).toBeNull();
		proxy.cut();
		const res = await request(app).get('/readyz').expect(503);
		expect(res.body.lastError).toEqual(expect.any(String));
	});

	it('answers ok on a store without Redis: memory is where it is meant to serve', async () => {
		const { app } = await setup({}, null);
		const res = await request(app).get('/readyz').expect(200);
		expect(res.body).toMatchObject({ status: 'ok', backend: 'memory', redis: false, since: null, failovers: 0 });
		expect(res.body).not.toHaveProperty('lastError');
	});

	it('rejects unknown and bad options, naming them', () => {
		const store = new ResilientStore({ logger: silentLogger });
		fixture.afterTest(() => store.close());
		expect(() => healthHandler({ store, degradedStatus: 503 } as never)).toThrow(
			new TypeError('resilient-session: healthHandler() has no option `degradedStatus` (did you mean `degradedStatusCode`?)'),
		);
		expect(() => healthHandler({ store, degradedStatusCode: 700 })).toThrow(
			/`degradedStatusCode` must be a whole number from 200 to 599; got 700/,
		);
		expect(() => healthHandler({ store, ping: 'yes' } as never)).toThrow(/`ping` must be true or false/);
		expect(() => healthHandler({ store: undefined } as never)).toThrow(/`store` must be a ResilientStore/);
	});
});
