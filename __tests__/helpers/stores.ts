import { ResilientStore, type ResilientStoreOptions, silentLogger } from '../../lib/index.js';
import { connected, fastFailover } from './common.js';
import { RedisServer } from './redis-server.js';
import { TcpProxy } from './tcp-proxy.js';

/** The modes every store behaviour must hold in. */
export type StoreMode = 'redis' | 'memory-only' | 'fallen-back';

/**
 * Creates stores and closes every one of them after the test file.
 * - `redis`: on the file's own redis-server,
 * - `memory-only`: no Redis configured at all,
 * - `fallen-back`: pointed at a proxy whose link is cut, so it has fallen back to memory.
 */
export class StoreFactory {
	readonly #stores: ResilientStore[] = [];

	constructor(
		readonly redis: RedisServer,
		readonly cutProxy: TcpProxy,
	) {}

	async create(mode: StoreMode, options: ResilientStoreOptions = {}): Promise<ResilientStore> {
		const base = { logger: silentLogger, ...fastFailover, ...options };
		const store =
			mode === 'redis'
				? new ResilientStore({ url: this.redis.url, ...base })
				: mode === 'fallen-back'
					? new ResilientStore({ url: this.cutProxy.url, ...base })
					: new ResilientStore(base);
		this.#stores.push(store);
		if (mode === 'redis') await connected(store);
		if (mode === 'fallen-back') {
			await store.get('trip-the-fallback');
			if (store.backend !== 'memory') throw new Error('the store did not fall back');
		}

		return store;
	}

	/** Tracks a store created elsewhere, to be closed with the others. */
	track(store: ResilientStore): ResilientStore {
		this.#stores.push(store);
		return store;
	}

	async closeAll(): Promise<void> {
		await Promise.all(this.#stores.splice(0).map((store) => store.close()));
	}
}

/** What {@link useStoreFactory} sets up: the file's redis-server, a cut proxy to it, the factory. */
export interface StoreFixture {
	redis: RedisServer;
	cutProxy: TcpProxy;
	stores: StoreFactory;
}

/**
 * Starts the test file's own redis-server and a proxy to it whose link is cut (for the
 * `fallen-back` mode), and after each test closes every store and empties Redis
 * (restarting it first if a test killed it). Read the fields inside tests and hooks.
 */
export const useStoreFactory = (): StoreFixture => {
	const fixture = {} as StoreFixture;
	beforeAll(async () => {
		delete process.env.REDIS_URL;
		fixture.redis = await RedisServer.start();
		fixture.cutProxy = await TcpProxy.start(fixture.redis.port);
		fixture.cutProxy.cut();
		fixture.stores = new StoreFactory(fixture.redis, fixture.cutProxy);
	});

	afterEach(async () => {
		await fixture.stores.closeAll();
		if (!fixture.redis.running) await fixture.redis.restart();
		await fixture.redis.command('FLUSHALL');
	});

	afterAll(async () => {
		await fixture.cutProxy.close();
		await fixture.redis.kill();
	});

	return fixture;
};
