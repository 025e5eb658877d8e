import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import request from 'supertest';
import { collectMetrics, rateLimit, ResilientStore, silentLogger, type WriteBackResult } from '../lib/index.js';
import { loadOptional } from '../lib/operations/prom-client.js';
import { createApp } from './helpers/app.js';
import { connected, fastFailover, nextEvent, until } from './helpers/common.js';
import { attempt, createLoginApp, KNOWN_USER, PASSWORD } from './helpers/login-guard-app.js';
import { callApi, createLimitedApp, login } from './helpers/rate-limit-app.js';
import { useRedisServer } from './helpers/redis-server.js';

const fixture = useRedisServer();

const PREFIX = 'resilient_session_';

/**
 * A store on this file's Redis. Its deadline is long, so that a busy machine never makes it
 * fall back on its own (the counts asserted here would be off by one): a killed Redis is
 * seen at once anyway, from the dropped connection.
 */
const redisStore = async (options: ConstructorParameters<typeof ResilientStore>[0] = {}) => {
	const store = await connected(
		new ResilientStore({ url: fixture.redis.url, logger: silentLogger, ...fastFailover, timeoutMs: 2_000, ...options }),
	);
	fixture.afterTest(() => store.close());
	return store;
};

const metricsOf = (store: ResilientStore, prefix?: string) => {
	const register = new Registry();
	const metrics = collectMetrics({ store, register, ...(prefix === undefined ? {} : { prefix }) });
	fixture.afterTest(() => metrics.close());
	return { register, metrics };
};

type Sample = { labels: Record<string, string | number>; value: number; metricName?: string };

/** The samples of metric `name` (without the prefix), as a scrape would read them. */
const samples = async (register: Registry, name: string): Promise<Sample[]> => {
	const metric = register.getSingleMetric(PREFIX + name);
	if (!metric) throw new Error(`no metric ${PREFIX + name}`);
	return (await metric.get()).values as Sample[];
};

/** The value of metric `name` with `labels` (one sample must match). */
const value = async (register: Registry, name: string, labels: Record<string, string> = {}): Promise<number> => {
	const matching = (await samples(register, name)).filter(
		(sample) => !sample.metricName && Object.entries(labels).every(([label, wanted]) => sample.labels[label] === wanted),
	);
	if (matching.length !== 1) throw new Error(`${matching.length} samples of ${name} match ${JSON.stringify(labels)}`);
	return matching[0]!.value;
};

/** How many commands of `operation` the duration histogram has seen. */
const commandsTimed = async (register: Registry, operation: string): Promise<number> =>
	(await samples(register, 'redis_operation_duration_seconds')).find(
		(sample) => sample.metricName === `${PREFIX}redis_operation_duration_seconds_count` && sample.labels.operation === operation,
	)?.value ?? 0;

describe('collectMetrics()', () => {
	it('registers every documented metric, with the types Prometheus expects', async () => {
		const store = await redisStore();
		const { register } = metricsOf(store);
		const types = Object.fromEntries((await register.getMetricsAsJSON()).map((metric) => [metric.name, metric.type]));
		expect(types).toEqual({
			[`${PREFIX}backend`]: 'gauge',
			[`${PREFIX}failovers_total`]: 'counter',
			[`${PREFIX}recoveries_total`]: 'counter',
			[`${PREFIX}redis_operation_duration_seconds`]: 'histogram',
			[`${PREFIX}write_back_sessions_total`]: 'counter',
			[`${PREFIX}write_back_pending_sessions`]: 'gauge',
			[`${PREFIX}memory_sessions`]: 'gauge',
			[`${PREFIX}rate_limit_decisions_total`]: 'counter',
			[`${PREFIX}login_attempts_total`]: 'counter',
			[`${PREFIX}lockouts_total`]: 'counter',
		});
		// Counters by label start at zero, so that rates exist before the first event.
		expect(await value(register, 'rate_limit_decisions_total', { outcome: 'limited' })).toBe(0);
		expect(await value(register, 'lockouts_total', { scope: 'ip' })).toBe(0);
	});

	it('follows a real failover: Redis killed mid-traffic, then restarted empty', async () => {
		const store = await redisStore();
		const { register } = metricsOf(store);
		const agent = request.agent(createApp(store));
		await agent.post('/login?user=ann').expect(200);
		await agent.get('/count').expect(200);

		expect(await value(register, 'backend', { backend: 'redis' })).toBe(1);
		expect(await value(register, 'backend', { backend: 'memory' })).toBe(0);
		expect(await value(register, 'failovers_total')).toBe(0);
		expect(await commandsTimed(register, 'SET')).toBeGreaterThanOrEqual(2);
		expect(await value(register, 'memory_sessions')).toBe(1);

		const fellBack = nextEvent(store, 'fallback');
		await fixture.redis.kill();
		await agent.get('/count').expect(200, /"views":2/);
		await fellBack;
		await agent.get('/count').expect(200, /"views":3/);

		expect(await value(register, 'backend', { backend: 'memory' })).toBe(1);
		expect(await value(register, 'backend', { backend: 'redis' })).toBe(0);
		expect(await value(register, 'failovers_total')).toBe(1);
		expect(await value(register, 'write_back_pending_sessions')).toBe(1);
		expect(await value(register, 'memory_sessions')).toBe(1);

		const wroteBack = nextEvent<WriteBackResult>(store, 'writeback');
		const recovered = nextEvent(store, 'recover');
		const pingsBefore = await commandsTimed(register, 'PING');
		await fixture.redis.restart();
		const result = await wroteBack;
		await recovered;

		expect(await value(register, 'backend', { backend: 'redis' })).toBe(1);
		expect(await value(register, 'failovers_total')).toBe(1);
		expect(await value(register, 'recoveries_total')).toBe(1);
		expect(result.written).toBe(1);
		for (const kind of ['destroyed', 'written', 'touched', 'restored', 'lost', 'failed'] as const) {
			expect(await value(register, 'write_back_sessions_total', { kind })).toBe(result[kind]);
		}

		await until(async () => (await value(register, 'write_back_pending_sessions')) === 0);
		// The probes that brought the store back were timed.
		expect(await commandsTimed(register, 'PING')).toBeGreaterThan(pingsBefore);
		await agent.get('/count').expect(200, /"views":4,.*"backend":"redis"/);
	}, 20_000);

	it('counts rate-limit decisions, of a limit built before the metrics, on Redis and during an outage', async () => {
		const store = await redisStore();
		const limiter = rateLimit({ store, windowMs: 60_000, limit: 3, logger: silentLogger });
		const { register } = metricsOf(store);
		const app = createLimitedApp(store, limiter);
		const { cookie } = await login(app);
		for (let call = 1; call <= 5; call++) await callApi(app, cookie).expect(call <= 3 ? 200 : 429);

		expect(await value(register, 'rate_limit_decisions_total', { outcome: 'allowed' })).toBe(3);
		expect(await value(register, 'rate_limit_decisions_total', { outcome: 'limited' })).toBe(2);

		const fellBack = nextEvent(store, 'fallback');
		await fixture.redis.kill();
		await callApi(app, cookie).expect(429);
		await fellBack;
		await callApi(app, cookie).expect(429);
		expect(store.backend).toBe('memory');
		expect(await value(register, 'rate_limit_decisions_total', { outcome: 'limited' })).toBe(4);
		expect(await value(register, 'rate_limit_decisions_total', { outcome: 'allowed' })).toBe(3);
	});

	it('counts login attempts by outcome and lockouts by scope', async () => {
		const store = await redisStore();
		const { register } = metricsOf(store);
		const { app } = createLoginApp(store, { maxFailures: 3 });
		await attempt(app, KNOWN_USER, PASSWORD).expect(200);
		for (let failure = 1; failure <= 3; failure++) await attempt(app, KNOWN_USER).expect(401);
		// The third failure locked alice out from this address.
		await attempt(app, KNOWN_USER, PASSWORD).expect(429);
		await attempt(app, KNOWN_USER, PASSWORD).expect(429);
		// Neither a success nor a failure: no attempt to judge.
		await request(app).post('/status/500').set('X-Forwarded-For', '203.0.113.9').send({ username: 'bob' }).expect(500);

		expect(await value(register, 'login_attempts_total', { outcome: 'success' })).toBe(1);
		expect(await value(register, 'login_attempts_total', { outcome: 'failure' })).toBe(3);
		expect(await value(register, 'login_attempts_total', { outcome: 'locked' })).toBe(2);
		expect(await value(register, 'login_attempts_total', { outcome: 'neutral' })).toBe(1);
		expect(await value(register, 'lockouts_total', { scope: 'username+ip' })).toBe(1);
		expect(await value(register, 'lockouts_total', { scope: 'username' })).toBe(0);
		expect(await value(register, 'lockouts_total', { scope: 'ip' })).toBe(0);
	});

	it('counts lockouts made in memory during an outage', async () => {
		const store = await redisStore();
		const { register } = metricsOf(store);
		const { app } = createLoginApp(store, { maxFailures: 2 });
		await fixture.redis.kill();
		await attempt(app, KNOWN_USER).expect(401);
		await attempt(app, KNOWN_USER).expect(401);
		await attempt(app, KNOWN_USER).expect(429);
		expect(store.backend).toBe('memory');
		expect(await value(register, 'lockouts_total', { scope: 'username+ip' })).toBe(1);
		expect(await value(register, 'login_attempts_total', { outcome: 'locked' })).toBe(1);
	});

	it('reports into every registry it was given, each with its own prefix, until closed', async () => {
		const store = await redisStore();
		const limiter = rateLimit({ store, windowMs: 60_000, limit: 1, logger: silentLogger });
		const app = createLimitedApp(store, limiter);
		const first = metricsOf(store);
		const register = new Registry();
		const second = collectMetrics({ store, register, prefix: 'app_sessions_' });
		fixture.afterTest(() => second.close());
		await callApi(app).expect(200);
		await callApi(app).expect(429);
		expect(await value(first.register, 'rate_limit_decisions_total', { outcome: 'limited' })).toBe(1);
		const text = await register.metrics();
		expect(text).toContain('app_sessions_rate_limit_decisions_total{outcome="limited"} 1');
		expect(text).not.toContain(PREFIX);

		second.close();
		expect(await register.getMetricsAsJSON()).toEqual([]);
		await callApi(app).expect(429);
		expect(await value(first.register, 'rate_limit_decisions_total', { outcome: 'limited' })).toBe(2);
	});

	it('refuses a registry that already has its names, and bad options, naming them', async () => {
		const store = new ResilientStore({ logger: silentLogger });
		fixture.afterTest(() => store.close());
		const { register } = metricsOf(store);
		expect(() => collectMetrics({ store, register })).toThrow(/already has a metric named resilient_session_backend/);
		expect(() => collectMetrics({ store, register, prefx: 'a_' } as never)).toThrow(
			new TypeError('resilient-session: collectMetrics() has no option `prefx` (did you mean `prefix`?)'),
		);
		expect(() => collectMetrics({ store, registry: register } as never)).toThrow(/no option `registry` \(did you mean `register`\?\)/);
		expect(() => collectMetrics({ store, register: {} as never })).toThrow(/`register` must be a prom-client Registry/);
		expect(() => collectMetrics({ store: {} as never, register })).toThrow(/`store` must be a ResilientStore/);
		expect(() => collectMetrics({ store, register, prefix: '9lives_' })).toThrow(/`prefix` must be letters/);
		expect(() => collectMetrics({ store, register, prefix: 'x_', durationBuckets: [0.1, 0.01] })).toThrow(
			/`durationBuckets` must be a non-empty array of increasing/,
		);
		expect(() => collectMetrics({ store, register, prefix: 'x_', durationBuckets: [0.001, 0.5] })).not.toThrow();
	});

	it('says what to install when an optional peer dependency is missing', () => {
		expect(() => loadOptional('resilient-session-no-such-package', 'collectMetrics()')).toThrow(
			'resilient-session: collectMetrics() needs the package `resilient-session-no-such-package`, an optional peer ' +
				'dependency: install it with `npm install resilient-session-no-such-package`',
		);
		expect(loadOptional<{ Registry: unknown }>('prom-client', 'collectMetrics()').Registry).toBe(Registry);
	});
});

describe('examples/grafana-dashboard.json', () => {
	it('plots only metrics collectMetrics() registers, through a Prometheus datasource variable', async () => {
		const dashboard = JSON.parse(readFileSync(join(__dirname, '..', 'examples', 'grafana-dashboard.json'), 'utf8'));
		const store = new ResilientStore({ logger: silentLogger });
		fixture.afterTest(() => store.close());
		const { register } = metricsOf(store);
		const registered = (await register.getMetricsAsJSON()).map((metric) => metric.name);
		const text = JSON.stringify(dashboard.panels);
		const used = new Set([...text.matchAll(/resilient_session_[a-z_]+/g)].map(([name]) => name.replace(/_(bucket|count|sum)$/, '')));
		expect(used.size).toBeGreaterThanOrEqual(8);
		for (const name of used) expect(registered).toContain(name);
		expect(dashboard.templating.list).toContainEqual(expect.objectContaining({ name: 'datasource', type: 'datasource', query: 'prometheus' }));
		for (const panel of dashboard.panels) expect(panel.datasource).toEqual({ type: 'prometheus', uid: '${datasource}' });
	});
});
