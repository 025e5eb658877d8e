import type { Server } from 'node:http';
import express from 'express';
import type { SessionOptions } from 'express-session';
import request from 'supertest';
import { loginGuard, rateLimit, type RedisClient, type ResilientStore, silentLogger } from '../../lib/index.js';
import { createApp, newSid } from './app.js';
import { waitFor } from './redis-server.js';
import { listen } from './common.js';
import { Traffic } from './traffic.js';

/** The rate limit and the login lockout of the drill app. */
export const DRILL_LIMIT = 3;
export const DRILL_MAX_FAILURES = 2;

type Agent = ReturnType<typeof request.agent>;

/**
 * createApp's session routes on `store`, plus what must stay enforced through a failover:
 * - `GET /api`: rate-limited to {@link DRILL_LIMIT} a minute,
 * - `POST /guarded-login`: a login that always fails, behind a guard that locks after
 *   {@link DRILL_MAX_FAILURES} failures.
 */
export const createDrillApp = (store: ResilientStore, options: Partial<SessionOptions> = {}) => {
	const app = createApp(store, options);
	app.get('/api', rateLimit({ store, limit: DRILL_LIMIT, windowMs: 60_000 }), (_req, res) => {
		res.json({ ok: true });
	});
	app.post(
		'/guarded-login',
		express.json(),
		loginGuard({ store, maxFailures: DRILL_MAX_FAILURES, logger: silentLogger }),
		(_req, res) => void res.status(401).json({ error: 'Invalid username or password.' }),
	);
	return app;
};

export interface DrillOptions {
	readonly store: ResilientStore;
	/** The client the store was given: the drill reads Redis's truth through it. */
	readonly client: RedisClient;
	/** Users under steady traffic, logged in before the fault. */
	readonly users: readonly string[];
	/** Users who log in after the fault, while the failover is under way. */
	readonly lateUsers: readonly string[];
	/** Session ids to log users in with (a cluster drill picks ids on every master). */
	readonly sidOf?: ReadonlyMap<string, string>;
	/** The fault: kills a master (or the only Redis). */
	readonly kill: () => Promise<void>;
	/** Resolves once Redis serves again (a replica promoted, or the server restarted). */
	readonly served: () => Promise<void>;
	/** Traffic before the fault, in milliseconds. */
	readonly warmUpMs?: number;
}

/** What a drill saw, for assertions and figures. */
export interface DrillResult {
	readonly traffic: Traffic;
	readonly users: Array<{ user: string; id: string }>;
	readonly lateUsers: Array<{ user: string; id: string; backend: string }>;
	/** The session logged out during the failover, with its cookie. */
	readonly loggedOut: { id: string; cookie: string };
	/** Requests sent once Redis served again and answered from Redis. */
	readonly servedByRedisAfterward: number;
	/** Milliseconds from the kill to Redis serving again (promotion or restart). */
	readonly servedAfterMs: number;
	/** Milliseconds from the kill to the store's last return to Redis. */
	readonly backOnRedisAfterMs: number;
	/** After the drill: `/api` for the client limited before the fault, `/guarded-login` for the locked user. */
	readonly limitedStatus: number;
	readonly lockedStatus: number;
	/** What Redis holds under a session id now (`null`: nothing or a tombstone). */
	readonly inRedis: (sid: string) => Promise<Record<string, unknown> | null>;
}

/**
 * A failover drill through a real express-session app under steady traffic: users log in,
 * one client uses up its rate limit and one username gets locked out; then the fault,
 * during which more users log in and one logs out; then the wait until Redis serves again
 * and the store is back on it (for at least `settleMs`). The caller asserts on the result.
 */
export const runDrill = async (options: DrillOptions): Promise<DrillResult> => {
	const { store, client, sidOf } = options;
	const cleanups: Array<() => unknown> = [];
	try {
		const app = createDrillApp(store, {
			// The session a login regenerates into gets the chosen id; the one it replaces a random one.
			genid: (req) => (req.session ? sidOf?.get(String(req.query.user)) : undefined) ?? newSid(),
		});
		const { server, url } = await listen(app);
		cleanups.push(() => new Promise((resolve) => (server as Server).close(resolve)));
		const login = async (user: string, agent: Agent = request.agent(url)) => {
			const res = await agent.post(`/login?user=${user}`).expect(200);
			return { agent, user, id: res.body.id as string, backend: res.body.backend as string, cookie: cookieOf(res) };
		};

		const users = await Promise.all(options.users.map((user) => login(user)));
		const doomed = await login('doomed');
		// Limits reached on Redis, which is what must carry them over a failover (counts made
		// on memory stay on memory): done again if the store fell back meanwhile (a loaded
		// machine can miss a deadline).
		const { limited, guess, statuses } = await onRedisThroughout(store, async () => {
			const agent = request.agent(url);
			await agent.post('/login?user=limited').expect(200);
			const statuses: number[] = [];
			for (let i = 0; i <= DRILL_LIMIT; i++) statuses.push((await agent.get('/api')).status);
			// A username of its own: an earlier drill on the same Redis must not have locked it.
			const credentials = { username: `mallory-${newSid()}`, password: 'guess' };
			for (let i = 0; i <= DRILL_MAX_FAILURES; i++) {
				statuses.push((await request(url).post('/guarded-login').send(credentials)).status);
			}
			return { limited: agent, guess: credentials, statuses };
		});
		const expected = [...Array(DRILL_LIMIT).fill(200), 429, ...Array(DRILL_MAX_FAILURES).fill(401), 429];
		if (statuses.join() !== expected.join()) throw new Error(`limits before the fault: ${statuses.join()}`);

		let lastRecover = 0;
		const onRecover = () => (lastRecover = Date.now());
		store.on('recover', onRecover);
		cleanups.push(() => store.off('recover', onRecover));
		const traffic = new Traffic(users.map((user) => user.agent)).start();
		cleanups.push(() => traffic.stop());
		await new Promise((resolve) => setTimeout(resolve, options.warmUpMs ?? 300));

		// The logout below must be of a session this instance holds: one in use. A session
		// unused since the store last returned to Redis has no copy in memory, so during the
		// failover express-session would not find it and would destroy a new one instead.
		await doomed.agent.get('/whoami').expect(200, /"user":"doomed"/);
		const killedAt = Date.now();
		await options.kill();
		const [lateUsers] = await Promise.all([
			Promise.all(options.lateUsers.map((user) => login(user))),
			doomed.agent.post('/logout').expect(200),
		]);
		await options.served();
		const servedAt = Date.now();
		// Back on Redis, and staying there a moment under traffic.
		await waitFor('the store to be back on Redis', async () => store.backend === 'redis', 20_000);
		await new Promise((resolve) => setTimeout(resolve, 500));
		await waitFor('the store to be back on Redis', async () => store.backend === 'redis', 20_000);
		await traffic.stop();
		// A deadline missed under load in the last moments of the traffic puts the store on
		// memory again, with the last writes waiting there: Redis is current once they are back.
		await waitFor(
			'the store to be on Redis with nothing left to write back',
			async () => store.backend === 'redis' && store.stats().pendingWriteBack === 0,
			20_000,
		);

		const inRedis = async (sid: string) => {
			const text = (await client.get(`sess:${sid}`)) as string | null;
			return text === null ? null : (JSON.parse(text) as Record<string, unknown> | null);
		};

		return {
			traffic,
			users: users.map(({ user, id }) => ({ user, id })),
			lateUsers: lateUsers.map(({ user, id, backend }) => ({ user, id, backend })),
			loggedOut: { id: doomed.id, cookie: doomed.cookie },
			servedByRedisAfterward: traffic.samples.filter((sample) => sample.at > servedAt && sample.body?.backend === 'redis')
				.length,
			servedAfterMs: servedAt - killedAt,
			backOnRedisAfterMs: Math.max(lastRecover, killedAt) - killedAt,
			limitedStatus: (await limited.get('/api')).status,
			lockedStatus: (await request(url).post('/guarded-login').send(guess)).status,
			inRedis,
		};
	} finally {
		for (const cleanup of cleanups.reverse()) await cleanup();
	}
};

/** Runs `work` until the store stays on Redis all through it (at most five times). */
const onRedisThroughout = async <T>(store: ResilientStore, work: () => Promise<T>): Promise<T> => {
	for (let attempt = 1; ; attempt++) {
		await waitFor('the store to be on Redis', async () => store.backend === 'redis');
		const failovers = store.stats().failovers;
		const value = await work();
		if (store.stats().failovers === failovers && store.backend === 'redis') return value;
		if (attempt === 5) throw new Error('the store kept falling back to memory before the fault');
	}
};

/** The `name=value` of a response's session cookie. */
const cookieOf = (res: request.Response): string =>
	(res.headers['set-cookie'] as unknown as string[])[0]!.split(';')[0]!;

/** One line of figures from a drill. */
export const drillFigures = (result: DrillResult) => ({
	requests: result.traffic.samples.length,
	failed: result.traffic.failed.length,
	worstMs: result.traffic.worstMs,
	servedByMemory: result.traffic.samples.filter((sample) => sample.body?.backend === 'memory').length,
	servedAfterMs: result.servedAfterMs,
	backOnRedisAfterMs: result.backOnRedisAfterMs,
});

/** What a drill must show, as a list of what it did not (empty: all held). */
export const drillShortfalls = async (result: DrillResult): Promise<string[]> => {
	const shortfalls: string[] = [];
	const { traffic } = result;
	if (traffic.failed.length > 0) shortfalls.push(`${traffic.failed.length} failed requests`);
	if (result.servedByRedisAfterward === 0) shortfalls.push('not back on Redis');
	for (const { id } of result.users) {
		const counts = traffic.samples.filter((sample) => sample.body?.id === id).map((sample) => sample.body.views);
		if (counts.some((count, i) => count !== i + 1)) shortfalls.push(`session ${id} lost a count`);
		if ((await result.inRedis(id))?.views !== counts.at(-1)) shortfalls.push(`session ${id} is not current in Redis`);
	}

	for (const { user, id } of result.lateUsers) {
		if ((await result.inRedis(id))?.user !== user) shortfalls.push(`session of ${user}, written during the failover, is lost`);
	}

	if ((await result.inRedis(result.loggedOut.id)) !== null) shortfalls.push('the logout is undone');
	if (result.limitedStatus !== 429) shortfalls.push('the rate limit is lost');
	if (result.lockedStatus !== 429) shortfalls.push('the lockout is lost');
	return shortfalls;
};

/**
 * Asserts what a drill must show: no failed or hung request, the fault seen (requests served
 * from memory), requests served from Redis again once it served again, every user's count
 * kept and current in Redis, sessions written during the failover there, the logout done,
 * the rate limit and the lockout still in force. `describe` adds the set-up's state to a
 * logout found undone.
 */
export const expectDrillSurvived = async (result: DrillResult, describe?: () => Promise<string>): Promise<void> => {
	const { traffic } = result;
	expect(traffic.failed).toEqual([]);
	expect(traffic.samples.some((sample) => sample.body.backend === 'memory')).toBe(true);
	expect(result.servedByRedisAfterward).toBeGreaterThan(0);
	for (const { id } of result.users) {
		const counts = traffic.samples.filter((sample) => sample.body.id === id).map((sample) => sample.body.views);
		expect(counts.length).toBeGreaterThan(0);
		expect(counts).toEqual(counts.map((_, i) => i + 1));
		expect((await result.inRedis(id))?.views).toBe(counts.at(-1));
	}

	for (const { user, id } of result.lateUsers) expect(await result.inRedis(id)).toMatchObject({ user });
	const loggedOut = await result.inRedis(result.loggedOut.id);
	if (loggedOut !== null && describe) console.error(await describe());
	expect(loggedOut).toBeNull();
	expect(result.limitedStatus).toBe(429);
	expect(result.lockedStatus).toBe(429);
};
