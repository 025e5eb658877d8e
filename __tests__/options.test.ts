import { createClient } from 'redis';
import {
	loginGuard,
	rateLimit,
	ResilientStore,
	type ResilientStoreOptions,
	silentLogger,
	storeDefaults,
} from '../lib/index.js';
import { redisLinkOf } from '../lib/redis/link.js';

const create = (options: unknown) => () => new ResilientStore({ logger: silentLogger, ...(options as ResilientStoreOptions) });

describe('ResilientStore options', () => {
	const saved = process.env.REDIS_URL;
	afterEach(() => {
		if (saved === undefined) delete process.env.REDIS_URL;
		else process.env.REDIS_URL = saved;
	});

	it.each([
		[{ ttl: -1 }, /`ttl` must be a positive number of seconds or a function returning one; got -1/],
		[{ ttl: 0 }, /`ttl`.*got 0/],
		[{ ttl: '60' }, /`ttl`.*got "60"/],
		[{ url: 42 }, /`url` must be a redis:\/\/ or rediss:\/\/ URL; got 42/],
		[{ url: 'http://localhost:6379' }, /`url`.*got "http:\/\/localhost:6379"/],
		[{ client: {} }, /`client` must be a node-redis client.*got an object/],
		[{ client: 'redis://localhost' }, /`client` must be a node-redis client/],
		[{ timeoutMs: 0 }, /`timeoutMs` must be a whole number of at least 1; got 0/],
		[{ timeoutMs: 1.5 }, /`timeoutMs`.*got 1.5/],
		[{ memory: { max: 0 } }, /`memory.max` must be a whole number of at least 1; got 0/],
		[{ memory: 5 }, /`memory` must be an object; got 5/],
		[{ disableTTL: 'yes' }, /`disableTTL` must be true or false; got "yes"/],
		[{ prefix: 7 }, /`prefix` must be a string; got 7/],
		[{ serializer: { parse: JSON.parse } }, /`serializer` must be an object with parse\(\) and stringify\(\)/],
		[{ logger: { warn() {} } }, /`logger` must be an object with warn\(\) and error\(\)/],
		[{ recoverAfterProbes: 0 }, /`recoverAfterProbes`/],
		[{ userId: 'user.id' }, /`userId` must be a function; got "user.id"/],
		[{ maxSessionsPerUser: 0 }, /`maxSessionsPerUser` must be a whole number of at least 1; got 0/],
		[{ userID: () => 'ann' }, /ResilientStore has no option `userID` \(did you mean `userId`\?\)/],
	])('throws a TypeError naming the option for %j', (options, message) => {
		expect(create(options)).toThrow(TypeError);
		expect(create(options)).toThrow(message);
	});

	it.each([
		[{ timeout: 50 }, /ResilientStore has no option `timeout` \(did you mean `timeoutMs`\?\)/],
		[{ ttlSeconds: 60 }, /no option `ttlSeconds` \(did you mean `ttl`\?\)/],
		[{ disableTtl: true }, /no option `disableTtl` \(did you mean `disableTTL`\?\)/],
		[{ memory: { maxSessions: 5 } }, /`memory` has no option `maxSessions` \(did you mean `max`\?\)/],
	])('rejects the unknown option in %j, naming the closest real one', (options, message) => {
		expect(create(options)).toThrow(TypeError);
		expect(create(options)).toThrow(message);
	});

	it('refuses both `client` and `url`', () => {
		const client = createClient();
		expect(create({ client, url: 'redis://localhost' })).toThrow(/pass `client` or `url`, not both/);
	});

	it('checks REDIS_URL like `url`, naming it', () => {
		process.env.REDIS_URL = 'localhost:6379';
		expect(create({})).toThrow(/`REDIS_URL` must be a redis:\/\/ or rediss:\/\/ URL/);
	});

	it('runs on memory alone without client, url or REDIS_URL, warning once in production', async () => {
		delete process.env.REDIS_URL;
		const warn = jest.fn();
		const env = process.env.NODE_ENV;
		process.env.NODE_ENV = 'production';
		try {
			const store = new ResilientStore({ logger: { warn, error: jest.fn() } });
			expect(store.backend).toBe('memory');
			expect(redisLinkOf(store)).toBeUndefined();
			expect(warn).toHaveBeenCalledTimes(1);
			expect(warn.mock.calls[0][0]).toMatch(/no Redis configured/);
			await store.close();
		} finally {
			process.env.NODE_ENV = env;
		}
	});

	it('has frozen defaults with a bounded memory side', () => {
		expect(Object.isFrozen(storeDefaults)).toBe(true);
		expect(Object.isFrozen(storeDefaults.memory)).toBe(true);
		expect(Number.isFinite(storeDefaults.memory.max)).toBe(true);
		expect(storeDefaults.timeoutMs).toBeLessThan(1000);
		expect(storeDefaults).toMatchObject({ prefix: 'sess:', ttl: 86_400, scanCount: 100 });
	});

	it('rejects every method after close()', async () => {
		const store = new ResilientStore({ logger: silentLogger });
		await store.close();
		await expect(store.get('x')).rejects.toMatchObject({ code: 'ERR_RESILIENT_CLOSED' });
		const callback = jest.fn();
		await store.set('x', { cookie: {} } as never, callback);
		expect(callback.mock.calls[0][0]).toMatchObject({ code: 'ERR_RESILIENT_CLOSED' });
	});

	it('lets rateLimit() and loginGuard() take a store from another copy of the package', async () => {
		delete process.env.REDIS_URL;
		// As when an app loads both the CommonJS and the ES module build: another class.
		let Other: typeof ResilientStore | undefined;
		jest.isolateModules(() => {
			// eslint-disable-next-line @typescript-eslint/no-require-imports
			Other = (require('../lib/session/store.js') as { ResilientStore: typeof ResilientStore }).ResilientStore;
		});
		const store = new Other!({ logger: silentLogger });
		try {
			expect(store).not.toBeInstanceOf(ResilientStore);
			expect(() => rateLimit({ store, logger: silentLogger })).not.toThrow();
			expect(() => loginGuard({ store, logger: silentLogger })).not.toThrow();
			const lookalike = { get() {}, set() {}, destroy() {} };
			expect(() => loginGuard({ store: lookalike as never })).toThrow(/`store` must be a ResilientStore/);
		} finally {
			await store.close();
		}
	});
});

describe('unknown options of the middlewares', () => {
	let store: ResilientStore;
	beforeAll(() => {
		store = new ResilientStore({ logger: silentLogger });
	});
	afterAll(() => store.close());

	it.each([
		[{ maxFailure: 3 }, /loginGuard\(\) has no option `maxFailure` \(did you mean `maxFailures`\?\)/],
		[{ lockout: 1000 }, /loginGuard\(\) has no option `lockout` \(did you mean `lockoutMs`\?\)/],
		[{ memory: { maximum: 5 } }, /loginGuard\(\) `memory` has no option `maximum` \(did you mean `max`\?\)/],
	])('loginGuard() rejects %j, naming the closest real option', (options, message) => {
		expect(() => loginGuard({ store, logger: silentLogger, ...options } as never)).toThrow(TypeError);
		expect(() => loginGuard({ store, logger: silentLogger, ...options } as never)).toThrow(message);
	});

	it.each([
		[{ window: 1000 }, /rateLimit\(\) has no option `window` \(did you mean `windowMs`\?\)/],
		[{ max: 5 }, /rateLimit\(\) has no option `max` \(use `limit`\)/],
	])('rateLimit() rejects %j the same way', (options, message) => {
		expect(() => rateLimit({ store, logger: silentLogger, ...options } as never)).toThrow(TypeError);
		expect(() => rateLimit({ store, logger: silentLogger, ...options } as never)).toThrow(message);
	});
});
