/**
 * Failover figures for three set-ups, through the same drill as the tests (an Express app
 * on express-session, rateLimit() and loginGuard(), steady traffic from logged-in users,
 * logins and a logout during the failover), with the store's default timing:
 *
 * - a single Redis killed (SIGKILL) and started again, empty, 2 s later;
 * - Redis Sentinel (one master, one replica, three sentinels, down-after 500 ms): the
 *   master killed, the replica promoted;
 * - Redis Cluster (three masters with a replica each, cluster-node-timeout 1,000 ms): one
 *   master killed, its replica promoted.
 *
 * Run: `npm run bench:promotion` (needs redis-server on PATH; about two minutes).
 * Prints one row per round and the median of each column.
 */
import { createClient, createCluster, createSentinel } from 'redis';
import { type RedisClient, ResilientStore, silentLogger } from '../lib/index.js';
import { type DrillResult, drillFigures, drillShortfalls, runDrill } from '../__tests__/helpers/drill.js';
import { RedisCluster } from '../__tests__/helpers/redis-cluster.js';
import { RedisSentinel, SENTINEL_MASTER_NAME } from '../__tests__/helpers/redis-sentinel.js';
import { RedisServer } from '../__tests__/helpers/redis-server.js';

const ROUNDS = Number(process.env.ROUNDS ?? 3);
const USERS = ['u1', 'u2', 'u3', 'u4', 'u5', 'u6'];
const LATE_USERS = ['late1', 'late2', 'late3'];
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const nodeOptions = { disableOfflineQueue: true, socket: { reconnectStrategy: () => 100 } };

type Figures = ReturnType<typeof drillFigures> & { shortfalls: string };

/** The figures of a drill, and what it did not keep (`none` when it kept everything). */
const figuresOf = async (result: DrillResult): Promise<Figures> => {
	const shortfalls = await drillShortfalls(result);
	return { ...drillFigures(result), shortfalls: shortfalls.join('; ') || 'none' };
};

const single = async (): Promise<Figures> => {
	const redis = await RedisServer.start();
	const store = new ResilientStore({ url: redis.url, logger: silentLogger });
	// The drill reads Redis's truth through a client of its own, which reconnects after the restart.
	const truth = createClient({ url: redis.url, socket: { reconnectStrategy: () => 100 } });
	truth.on('error', () => {});
	await truth.connect();
	try {
		await store.length();
		const result = await runDrill({
			store,
			client: truth as unknown as RedisClient,
			users: USERS,
			lateUsers: LATE_USERS,
			warmUpMs: 1_000,
			kill: () => redis.kill(),
			served: async () => {
				await sleep(2_000);
				await redis.restart();
			},
		});
		return await figuresOf(result);
	} finally {
		await store.close();
		truth.destroy();
		await redis.kill();
	}
};

const sentinel = async (): Promise<Figures> => {
	const setUp = await RedisSentinel.start({ replicas: 1 });
	const client = createSentinel({
		name: SENTINEL_MASTER_NAME,
		sentinelRootNodes: setUp.sentinelRootNodes,
		nodeClientOptions: nodeOptions,
		sentinelClientOptions: { socket: { reconnectStrategy: () => 100 } },
	});
	client.on('error', () => {});
	await client.connect();
	const store = new ResilientStore({ client: client as unknown as RedisClient, logger: silentLogger });
	try {
		const master = await setUp.master();
		const result = await runDrill({
			store,
			client: client as unknown as RedisClient,
			users: USERS,
			lateUsers: LATE_USERS,
			warmUpMs: 1_000,
			kill: () => master.kill(),
			served: async () => void (await setUp.promotedFrom(master.port)),
		});
		return await figuresOf(result);
	} finally {
		await store.close();
		client.destroy();
		await setUp.stop();
	}
};

const cluster = async (): Promise<Figures> => {
	const setUp = await RedisCluster.start({ replicas: 1, nodeTimeoutMs: 1_000 });
	const client = createCluster({ rootNodes: setUp.rootNodes, defaults: nodeOptions });
	client.on('error', () => {});
	await client.connect();
	const store = new ResilientStore({ client: client as unknown as RedisClient, logger: silentLogger });
	try {
		const slot = 0;
		const master = await setUp.masterOf(slot);
		const result = await runDrill({
			store,
			client: client as unknown as RedisClient,
			users: USERS,
			lateUsers: LATE_USERS,
			warmUpMs: 1_000,
			kill: () => master.kill(),
			served: async () => void (await setUp.promotedFrom(slot, master.port)),
		});
		return await figuresOf(result);
	} finally {
		await store.close();
		client.destroy();
		await setUp.stop();
	}
};

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

const main = async () => {
	const scenarios = { 'single Redis killed, restarted 2 s later': single, 'Sentinel promotion': sentinel, 'Cluster master promotion': cluster };
	const columns = ['requests', 'failed', 'worstMs', 'servedByMemory', 'servedAfterMs', 'backOnRedisAfterMs', 'shortfalls'] as const;
	console.log(`| set-up | round | ${columns.join(' | ')} |`);
	console.log(`| --- | ---: | ${columns.map(() => '---:').join(' | ')} |`);
	const all: Record<string, Figures[]> = {};
	for (let round = 1; round <= ROUNDS; round++) {
		for (const [name, scenario] of Object.entries(scenarios)) {
			const figures = await scenario();
			(all[name] ??= []).push(figures);
			console.log(`| ${name} | ${round} | ${columns.map((column) => figures[column]).join(' | ')} |`);
		}
	}

	for (const [name, runs] of Object.entries(all)) {
		const medians = columns.slice(0, -1).map((column) => median(runs.map((run) => run[column as Exclude<typeof column, 'shortfalls'>])));
		console.log(`| ${name} | median | ${medians.join(' | ')} | |`);
	}
};

main().catch((error: unknown) => {
	console.error(error);
	process.exitCode = 1;
});
