import { createCluster } from 'redis';
import { createCluster as createClusterV5 } from 'redis5';
import { type RedisClient, ResilientStore, silentLogger, storeDefaults } from '../lib/index.js';
import { newSid } from './helpers/app.js';
import { type DrillResult, expectDrillSurvived, runDrill } from './helpers/drill.js';
import { RedisCluster } from './helpers/redis-cluster.js';
import { fastFailover } from './helpers/common.js';

// A real cluster of three masters, each with a replica that takes over about three seconds
// after its master stops answering (node timeout 2 s, then the election). A shorter node
// timeout fails over healthy masters of a loaded machine, losing their latest writes.
jest.setTimeout(60_000);

let cluster: RedisCluster;
const cleanups: Array<() => unknown> = [];

beforeAll(async () => {
	cluster = await RedisCluster.start({ replicas: 1, nodeTimeoutMs: 2_000 });
});

afterEach(async () => {
	for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

afterAll(() => cluster?.stop());

/** As the README asks of a client the caller owns: no offline queue, reconnects forever. */
const nodeDefaults = { disableOfflineQueue: true, socket: { reconnectStrategy: () => 100 } };

const storeOn = (client: { on(event: string, listener: () => void): unknown }) => {
	client.on('error', () => {});
	const store = new ResilientStore({ client: client as unknown as RedisClient, logger: silentLogger, ...fastFailover });
	cleanups.push(() => store.close());
	return store;
};

/**
 * Kills a master that has a replica, with users spread over every master (two each) and
 * late users likewise (one each), so that the dead shard holds sessions of both.
 */
const drillOnCluster = async (store: ResilientStore, client: RedisClient, tag: string): Promise<DrillResult> => {
	const keyOf = (sid: string) => `${storeDefaults.prefix}${sid}`;
	const [victimPort] = await cluster.mastersWithReplicas();
	const victim = cluster.nodes.find((node) => node.port === victimPort)!;
	const sids = await cluster.idsOnEveryMaster(3, keyOf, newSid);
	const [users, lateUsers, sidOf] = [[] as string[], [] as string[], new Map<string, string>()];
	for (const [port, ids] of sids) {
		ids.forEach((sid, i) => {
			const user = `${tag}-${port}-${i}`;
			(i < 2 ? users : lateUsers).push(user);
			sidOf.set(user, sid);
		});
	}

	const slot = await cluster.slotOf(keyOf(sids.get(victim.port)![0]!));
	return runDrill({
		store,
		client,
		users,
		lateUsers,
		sidOf,
		kill: () => victim.kill(),
		served: async () => void (await cluster.promotedFrom(slot, victim.port)),
	});
};

describe('on a Redis Cluster with replicas', () => {
	it('serves every request through a kill -9 of a master, and returns to Redis once its replica is promoted', async () => {
		const client = createCluster({ rootNodes: cluster.rootNodes, defaults: nodeDefaults });
		cleanups.push(() => client.destroy());
		const store = storeOn(client);
		await client.connect();
		const result = await drillOnCluster(store, client as unknown as RedisClient, 'v6');
		await expectDrillSurvived(result, () => cluster.describe());
		expect(await store.get(result.loggedOut.id)).toBeNull();
	});

	it('returns to Redis after a promotion with a redis v5 cluster client, which never reads the slots again by itself', async () => {
		const client = createClusterV5({ rootNodes: cluster.rootNodes, defaults: nodeDefaults });
		cleanups.push(() => client.destroy());
		const store = storeOn(client);
		await client.connect();
		const result = await drillOnCluster(store, client as unknown as RedisClient, 'v5');
		await expectDrillSurvived(result, () => cluster.describe());
		expect(await store.get(result.loggedOut.id)).toBeNull();
	});
});
