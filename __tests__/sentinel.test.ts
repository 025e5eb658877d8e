import { createSentinel } from 'redis';
import { type RedisClient, ResilientStore, silentLogger } from '../lib/index.js';
import { runDrill } from './helpers/drill.js';
import { RedisSentinel, SENTINEL_MASTER_NAME } from './helpers/redis-sentinel.js';
import { fastFailover } from './helpers/stores.js';

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
		const { traffic } = result;

		// A replica now serves as master, and the store went there.
		expect(await sentinel.masterPort()).not.toBe(master.port);
		expect(traffic.failed).toEqual([]);
		// The master's death was seen: some requests were served from memory meanwhile.
		expect(traffic.samples.some((sample) => sample.body.backend === 'memory')).toBe(true);
		expect(traffic.samples.at(-1)!.body.backend).toBe('redis');
		expect(store.backend).toBe('redis');
		// Every user kept counting, and the new master has each final count.
		for (const { id } of result.users) {
			const counts = traffic.samples.filter((sample) => sample.body.id === id).map((sample) => sample.body.views);
			expect(counts.length).toBeGreaterThan(0);
			expect(counts).toEqual(counts.map((_, i) => i + 1));
			expect((await result.inRedis(id))?.views).toBe(counts.at(-1));
		}
		// Sessions created during the failover are on the new master; the logout stays done.
		for (const { user, id } of result.lateUsers) expect(await result.inRedis(id)).toMatchObject({ user });
		expect(await result.inRedis(result.loggedOut.id)).toBeNull();
		expect(await store.get(result.loggedOut.id)).toBeNull();
		// The rate limit and the lockout set before the failover still hold after it.
		expect(result.limitedStatus).toBe(429);
		expect(result.lockedStatus).toBe(429);
	});
});
