import { createSentinel } from 'redis';
import { type RedisClient, ResilientStore, silentLogger } from '../lib/index.js';
import { expectDrillSurvived, runDrill } from './helpers/drill.js';
import { RedisSentinel, SENTINEL_MASTER_NAME } from './helpers/redis-sentinel.js';
import { fastFailover } from './helpers/common.js';

// A real Sentinel set-up: one master, one replica, three sentinels that promote the
// replica about a second after the master stops answering.
jest.setTimeout(60_000);

let sentinel: RedisSentinel;
let client: ReturnType<typeof createSentinel>;
let store: ResilientStore;

beforeAll(async () => {
	sentinel = await RedisSentinel.start({ replicas: 1 });
	client = createSentinel({
		name: SENTINEL_MASTER_NAME,
		sentinelRootNodes: sentinel.sentinelRootNodes,
		// As the README asks of a client the caller owns: no offline queue, reconnects forever.
		nodeClientOptions: { disableOfflineQueue: true, socket: { reconnectStrategy: () => 100 } },
		sentinelClientOptions: { socket: { reconnectStrategy: () => 100 } },
	});
	client.on('error', () => {});
	await client.connect();
	store = new ResilientStore({ client: client as unknown as RedisClient, logger: silentLogger, ...fastFailover });
});

afterAll(async () => {
	await store?.close();
	client?.destroy();
	await sentinel?.stop();
});

describe('on Redis Sentinel', () => {
	it('serves every request through a kill -9 of the master, and returns to Redis on the promoted replica', async () => {
		const master = await sentinel.master();
		const result = await runDrill({
			store,
			client: client as unknown as RedisClient,
			users: ['ann', 'ben', 'cid', 'dee'],
			lateUsers: ['eli', 'fay'],
			kill: () => master.kill(),
			served: async () => void (await sentinel.promotedFrom(master.port)),
		});
		// A replica now serves as master.
		expect(await sentinel.masterPort()).not.toBe(master.port);
		await expectDrillSurvived(result);
		expect(await store.get(result.loggedOut.id)).toBeNull();
	});
});
