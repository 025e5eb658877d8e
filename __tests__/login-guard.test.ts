import { performance } from 'node:perf_hooks';
import express, { type NextFunction, type Request, type Response } from 'express';
import request from 'supertest';
import {
	type LockoutInfo,
	loginGuard,
	type LoginGuardOptions,
	loginKeys,
	normalizeUsername,
} from '../lib/login-guard/login-guard.js';
import { silentLogger } from '../lib/logger.js';
import { ResilientStore } from '../lib/session/store.js';
import {
	attempt,
	CLIENT_IP,
	createLoginApp,
	KNOWN_USER,
	PASSWORD,
} from './helpers/login-guard-app.js';
import { fastFailover, nextEvent, recordingLogger, sleep } from './helpers/common.js';
import { RedisServer } from './helpers/redis-server.js';
import { TcpProxy } from './helpers/tcp-proxy.js';
import { redisLinkOf } from '../lib/redis/link.js';

const PREFIX = 'login-guard:';
const OTHER_IP = '198.51.100.7';

let redis: RedisServer;
const stores: ResilientStore[] = [];
const proxies: TcpProxy[] = [];

beforeAll(async () => {
	redis = await RedisServer.start();
});

afterEach(async () => {
	await Promise.all(stores.splice(0).map((store) => store.close()));
	await Promise.all(proxies.splice(0).map((proxy) => proxy.close()));
	if (!redis.running) await redis.restart();
	await redis.command('FLUSHALL');
	await redis.command('SCRIPT', 'FLUSH');
});

afterAll(async () => {
	await redis.kill();
});

/** A store on the file's redis-server (or on `url`), closed after the test. */
const redisStore = (url = redis.url, options = {}) => {
	const store = new ResilientStore({ url, logger: silentLogger, ...fastFailover, ...options });
	stores.push(store);
	return store;
};

const memoryStore = () => {
	const store = new ResilientStore({ logger: silentLogger });
	stores.push(store);
	return store;
};

const keysOf = (username: string, ip = CLIENT_IP) => loginKeys(PREFIX, username, ip);

/** Consecutive failures of `username` from `ip` as Redis holds them. */
const pairCount = async (username: string, ip = CLIENT_IP) =>
	Number((await redis.command('HGET', keysOf(username, ip).pair, 'n')) ?? 0);

const ipCount = async (ip = CLIENT_IP) => Number((await redis.command('GET', keysOf('x', ip).ip)) ?? 0);

/** Scripts Redis has run (by default EVALSHA and EVAL), from INFO commandstats. */
const scriptCalls = async (...commands: string[]) => {
	const info = String(await redis.command('INFO', 'commandstats'));
	const calls = (name: string) => Number(new RegExp(`cmdstat_${name}:calls=(\\d+)`).exec(info)?.[1] ?? 0);
	return (commands.length > 0 ? commands : ['evalsha', 'eval']).reduce((sum, name) => sum + calls(name), 0);
};

describe('loginGuard on Redis', () => {
	it('locks a username+IP at maxFailures, counted across two instances sharing one Redis', async () => {
		const one = createLoginApp(redisStore());
		const two = createLoginApp(redisStore());
		for (let i = 0; i < 5; i++) await attempt((i % 2 === 0 ? one : two).app, KNOWN_USER).expect(401);

		const locked = await attempt(one.app, KNOWN_USER).expect(429);
		expect(locked.headers['retry-after']).toBe('30');
		expect(locked.body).toEqual({ error: 'Too many failed login attempts. Try again later.', retryAfter: 30 });
		// Locked on the other instance too, even with the right password.
		await attempt(two.app, KNOWN_USER, PASSWORD).expect(429);
		expect(one.handled.count + two.handled.count).toBe(5);
		expect(await pairCount(KNOWN_USER)).toBe(5);
		// Only that address is locked.
		await attempt(two.app, KNOWN_USER, PASSWORD, OTHER_IP).expect(200);
	});

	it('lengthens each further lockout by lockoutFactor, up to maxLockoutMs', async () => {
		const lockouts: number[] = [];
		const { app } = createLoginApp(redisStore(), {
			maxFailures: 2,
			lockoutMs: 300,
			lockoutFactor: 2,
			maxLockoutMs: 1_000,
			onLockout: (info) => void lockouts.push(info.lockoutMs),
		});
		await attempt(app, KNOWN_USER).expect(401);
		await attempt(app, KNOWN_USER).expect(401);
		await attempt(app, KNOWN_USER).expect(429);
		expect(lockouts).toEqual([300]);

		await sleep(350);
		await attempt(app, KNOWN_USER).expect(401);
		expect(lockouts).toEqual([300, 600]);
		await sleep(350);
		// Longer than the first lockout: still locked.
		await attempt(app, KNOWN_USER).expect(429);
		await sleep(300);
		await attempt(app, KNOWN_USER).expect(401);
		expect(lockouts).toEqual([300, 600, 1_000]);
		await attempt(app, KNOWN_USER).expect(429);
	});

	it('resets the username+IP count on success but never the per-IP count', async () => {
		const { app } = createLoginApp(redisStore(), { maxFailures: 3, maxFailuresPerIp: 6 });
		await attempt(app, KNOWN_USER).expect(401);
		await attempt(app, KNOWN_USER).expect(401);
		await attempt(app, KNOWN_USER, PASSWORD).expect(200);
		expect(await pairCount(KNOWN_USER)).toBe(0);
		expect(await ipCount()).toBe(2);

		// Without the reset the second of these would be locked (2 + 1 = maxFailures).
		await attempt(app, KNOWN_USER).expect(401);
		await attempt(app, KNOWN_USER).expect(401);
		await attempt(app, 'bob').expect(401);
		await attempt(app, 'carol').expect(401);
		expect(await ipCount()).toBe(6);
		// Six failures from this address: it is refused for any username.
		await attempt(app, 'dave').expect(429);
		await attempt(app, 'dave', 'wrong password', OTHER_IP).expect(401);
	});

	it('stops credential stuffing from one address at maxFailuresPerIp, across usernames', async () => {
		const lockouts: LockoutInfo[] = [];
		const { app, handled } = createLoginApp(redisStore(), {
			maxFailuresPerIp: 10,
			onLockout: (info) => void lockouts.push(info),
		});
		for (let i = 0; i < 10; i++) await attempt(app, `user${i}`, 'Summer2024!').expect(401);

		const refused = await attempt(app, 'user10', 'Summer2024!').expect(429);
		expect(Number(refused.headers['retry-after'])).toBeGreaterThan(86_000);
		expect(handled.count).toBe(10);
		expect(lockouts).toEqual([
			{
				scope: 'ip',
				username: 'user9',
				ip: CLIENT_IP,
				failures: 10,
				lockoutMs: expect.any(Number),
				backend: 'redis',
			},
		]);
		await attempt(app, 'user10', 'Summer2024!', OTHER_IP).expect(401);
	});

	it('locks a username attacked from many addresses at maxFailuresPerUsername', async () => {
		const { app } = createLoginApp(redisStore(), { maxFailuresPerUsername: 6 });
		for (let i = 1; i <= 6; i++) await attempt(app, KNOWN_USER, 'wrong password', `192.0.2.${i}`).expect(401);

		await attempt(app, KNOWN_USER, PASSWORD, '192.0.2.99').expect(429);
		// Other usernames from the same addresses are not affected.
		await attempt(app, 'bob', 'wrong password', '192.0.2.1').expect(401);
	});

	it('lets no more than maxFailures of many concurrent wrong passwords through', async () => {
		// About counting on a shared Redis, not failover: a deadline a busy machine cannot
		// miss, and both stores connected before the burst (else each counts on its own).
		const [a, b] = [redisStore(redis.url, { timeoutMs: 2_000 }), redisStore(redis.url, { timeoutMs: 2_000 })];
		await Promise.all([a.get('warm-up'), b.get('warm-up')]);
		expect([a.backend, b.backend]).toEqual(['redis', 'redis']);
		const one = createLoginApp(a);
		const two = createLoginApp(b);
		const responses = await Promise.all(
			Array.from({ length: 24 }, (_, i) => attempt((i % 2 === 0 ? one : two).app, KNOWN_USER)),
		);
		const statuses = responses.map((res) => res.status).sort();
		expect(statuses.filter((status) => status === 401)).toHaveLength(5);
		expect(statuses.filter((status) => status === 429)).toHaveLength(19);
		expect(one.handled.count + two.handled.count).toBe(5);
		expect(await pairCount(KNOWN_USER)).toBe(5);
	});

	it('keeps counting after SCRIPT FLUSH, without falling back', async () => {
		const store = redisStore();
		const { app } = createLoginApp(store);
		await attempt(app, KNOWN_USER).expect(401);
		await attempt(app, KNOWN_USER).expect(401);
		await redis.command('SCRIPT', 'FLUSH');
		const before = await scriptCalls('eval');

		for (let i = 0; i < 3; i++) await attempt(app, KNOWN_USER).expect(401);
		await attempt(app, KNOWN_USER).expect(429);
		expect(await pairCount(KNOWN_USER)).toBe(5);
		const after = await scriptCalls('eval');
		// Each script was sent whole (EVAL) once, then run by its SHA again: the two checks,
		// and the one that takes back the address's count of the refused attempt.
		expect(after - before).toBe(3);
		expect(store.backend).toBe('redis');
		expect(store.stats().failovers).toBe(0);
	});

	it('checks in one Redis round trip, records a failure in none and a success in one', async () => {
		const { app } = createLoginApp(redisStore());
		// The first use of each script on a server costs one more trip (NOSCRIPT, then EVAL).
		await attempt(app, 'warm-up').expect(401);
		await attempt(app, KNOWN_USER, PASSWORD).expect(200);

		let before = await scriptCalls();
		await attempt(app, KNOWN_USER).expect(401);
		// One script per hash tag (username, address), sent together.
		expect((await scriptCalls()) - before).toBe(2);

		before = await scriptCalls();
		await attempt(app, KNOWN_USER, PASSWORD).expect(200);
		expect((await scriptCalls()) - before).toBe(4);

		// Refused by the username's tag only: the address's reservation is taken back.
		for (let i = 0; i < 5; i++) await attempt(app, KNOWN_USER).expect(401);
		before = await scriptCalls();
		await attempt(app, KNOWN_USER).expect(429);
		expect((await scriptCalls()) - before).toBe(3);
	});

	it('takes one round trip of latency to check and one to record a success', async () => {
		const proxy = await TcpProxy.start(redis.port);
		proxies.push(proxy);
		const { app } = createLoginApp(redisStore(proxy.url, { timeoutMs: 2_000 }));
		await attempt(app, 'warm-up').expect(401);
		await attempt(app, KNOWN_USER, PASSWORD).expect(200);
		// 100 ms each way: one round trip is 200 ms.
		proxy.slow(100);

		let started = performance.now();
		await attempt(app, KNOWN_USER).expect(401);
		const failure = performance.now() - started;
		started = performance.now();
		await attempt(app, KNOWN_USER, PASSWORD).expect(200);
		const success = performance.now() - started;

		expect(failure).toBeGreaterThanOrEqual(195);
		expect(failure).toBeLessThan(390);
		expect(success).toBeGreaterThanOrEqual(395);
		expect(success).toBeLessThan(590);
	});

	it('keeps locking when Redis dies mid-attack, then carries the counts back to Redis', async () => {
		const store = redisStore();
		const { app, handled } = createLoginApp(store, { lockoutMs: 60_000 });
		await attempt(app, KNOWN_USER).expect(401);
		await attempt(app, KNOWN_USER).expect(401);
		expect(await pairCount(KNOWN_USER)).toBe(2);

		await Promise.all([nextEvent(store, 'fallback'), redis.kill()]);
		// Memory starts from the counts Redis last gave: three more, not five.
		for (let i = 0; i < 3; i++) await attempt(app, KNOWN_USER).expect(401);
		const locked = await attempt(app, KNOWN_USER, PASSWORD).expect(429);
		expect(locked.headers['retry-after']).toBe('60');
		expect(store.backend).toBe('memory');
		expect(handled.count).toBe(5);

		await Promise.all([nextEvent(store, 'recover'), redis.restart()]);
		// Redis came back empty; the counts of the outage were merged into it.
		expect(await pairCount(KNOWN_USER)).toBe(5);
		expect(await ipCount()).toBe(5);
		await attempt(app, KNOWN_USER, PASSWORD).expect(429);
		expect(store.backend).toBe('redis');
		// New attempts are counted in Redis again.
		await attempt(app, 'bob').expect(401);
		expect(await pairCount('bob')).toBe(1);
		expect(await ipCount()).toBe(6);
	});

	it('merges a failure made while the outage counts are merged once, not twice', async () => {
		// A deadline that waiting for the attempt below never misses.
		const store = redisStore(redis.url, { timeoutMs: 2_000 });
		const { app } = createLoginApp(store);
		await attempt(app, 'warm-up').expect(401);
		await Promise.all([nextEvent(store, 'fallback'), redis.kill()]);
		// Over a hundred counts (a merge batch) before alice's, so hers go in a later batch.
		for (let i = 0; i < 50; i++) await attempt(app, `user${i}`, 'x', OTHER_IP).expect(401);
		for (let i = 0; i < 3; i++) await attempt(app, KNOWN_USER).expect(401);

		// One more failure of alice while the first batch is on its way, and the result of
		// the second merge of her count, which carries that failure.
		// Scripts go to a plain client as `EVALSHA <sha> <number of keys> <keys…> <arguments…>`.
		const client = redisLinkOf(store)!.client as unknown as { sendCommand(args: string[]): Promise<unknown> };
		const sendCommand = client.sendCommand.bind(client);
		let injected: Promise<unknown> | undefined;
		let merges = 0;
		let secondMerge!: (done: Promise<unknown>) => void;
		const merged = new Promise<Promise<unknown>>((resolve) => (secondMerge = resolve));
		client.sendCommand = async (args) => {
			if (args[0] !== 'EVALSHA') return sendCommand(args);
			injected ??= attempt(app, KNOWN_USER).expect(401);
			await injected;
			const result = sendCommand(args);
			if (args[3] === keysOf(KNOWN_USER).pair && ++merges === 2) secondMerge(result.catch(() => {}));
			return result;
		};

		await Promise.all([nextEvent(store, 'recover'), redis.restart()]);
		await (await merged);
		expect(await pairCount(KNOWN_USER)).toBe(4);
	});

	it('answers from memory within the deadline, never 5xx, when Redis stalls', async () => {
		const proxy = await TcpProxy.start(redis.port);
		proxies.push(proxy);
		const store = redisStore(proxy.url);
		const { app } = createLoginApp(store, { maxFailures: 2 });
		await attempt(app, KNOWN_USER).expect(401);
		proxy.stall();

		const started = performance.now();
		await attempt(app, KNOWN_USER).expect(401);
		expect(performance.now() - started).toBeLessThan(1_000);
		expect(store.backend).toBe('memory');
		await attempt(app, KNOWN_USER).expect(429);
		await attempt(app, KNOWN_USER, PASSWORD, OTHER_IP).expect(200);
		proxy.pass();
	});
});

describe('loginGuard outcomes', () => {
	it('infers the outcome: 401 and 403 fail, 2xx and 3xx succeed, other statuses do not count', async () => {
		const { app } = createLoginApp(redisStore(), { maxFailures: 2 });
		const status = (code: number) => attempt(app, KNOWN_USER, 'x', CLIENT_IP, `/status/${code}`).expect(code);

		await status(403);
		expect(await pairCount(KNOWN_USER)).toBe(1);
		await status(500);
		await status(400);
		await status(429);
		expect(await pairCount(KNOWN_USER)).toBe(1);
		expect(await ipCount()).toBe(1);
		await status(302);
		expect(await pairCount(KNOWN_USER)).toBe(0);
		await status(204);
		await status(401);
		await status(401);
		await attempt(app, KNOWN_USER, 'x', CLIENT_IP, '/status/200').expect(429);
		expect(await ipCount()).toBe(3);
	});

	it('hands an error of the held-back res.end() to Express, still counting the attempt', async () => {
		// No express-session here: its own res.end() gives up for good once one call throws.
		const app = express();
		app.set('trust proxy', true);
		app.use(express.json());
		const errors: unknown[] = [];
		app.post('/login', loginGuard({ store: redisStore(), logger: silentLogger }), (_req, res) => {
			// Not a chunk Node can send: end() throws once the attempt is recorded.
			res.status(401).end(42 as never);
		});
		app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
			errors.push(error);
			res.status(500).json({ error: 'broken' });
		});

		await attempt(app, KNOWN_USER).expect(500, { error: 'broken' });
		expect(errors).toEqual([expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' })]);
		expect(await pairCount(KNOWN_USER)).toBe(1);
	});

	it('lets the handler decide with req.loginGuard.fail() and succeed()', async () => {
		const { app } = createLoginApp(redisStore(), { maxFailures: 2 });
		const failed = await attempt(app, ' Alice ', 'x', CLIENT_IP, '/explicit/fail').expect(200);
		expect(failed.body).toEqual({ username: 'alice', ip: CLIENT_IP });
		expect(await pairCount(KNOWN_USER)).toBe(1);

		await attempt(app, KNOWN_USER, 'x', CLIENT_IP, '/explicit/succeed').expect(401);
		expect(await pairCount(KNOWN_USER)).toBe(0);

		await attempt(app, KNOWN_USER, 'x', CLIENT_IP, '/explicit/fail').expect(200);
		await attempt(app, KNOWN_USER, 'x', CLIENT_IP, '/explicit/fail').expect(200);
		await attempt(app, KNOWN_USER, 'x', CLIENT_IP, '/explicit/succeed').expect(429);
	});

	it('answers unknown and known usernames identically', async () => {
		const { app } = createLoginApp(redisStore(), { maxFailures: 2 });
		const seen = (res: request.Response) => ({
			status: res.status,
			headers: {
				'content-type': res.headers['content-type'],
				'content-length': res.headers['content-length'],
				'retry-after': res.headers['retry-after'],
				'cache-control': res.headers['cache-control'],
				'set-cookie': res.headers['set-cookie'],
			},
			body: res.body,
		});

		for (let i = 0; i < 3; i++) {
			const known = seen(await attempt(app, KNOWN_USER));
			const unknown = seen(await attempt(app, 'no-such-user'));
			expect(unknown).toEqual(known);
			expect(known.status).toBe(i < 2 ? 401 : 429);
		}
	});

	it('counts usernames that differ in case, spacing or Unicode form as one account', async () => {
		const { app } = createLoginApp(redisStore(), { maxFailures: 3 });
		await attempt(app, 'Alice').expect(401);
		await attempt(app, '  alice\t').expect(401);
		await attempt(app, 'ＡＬＩＣＥ').expect(401);
		await attempt(app, 'alice', PASSWORD).expect(429);
		expect(await pairCount('alice')).toBe(3);
	});

	it('counts usernames with invisible or control characters as the plain name, with no fresh attempts', async () => {
		const { app, handled } = createLoginApp(redisStore(), { maxFailures: 2 });
		await attempt(app, 'admin').expect(401);
		await attempt(app, 'admin').expect(401);
		await attempt(app, 'admin').expect(429);
		// A zero-width space, a NUL, a soft hyphen, a zero-width joiner, a byte order mark.
		for (const lookalike of ['admin\u200b', 'admin\u0000', 'adm\u00adin', 'ad\u200dmin', '\ufeffADMIN']) {
			await attempt(app, lookalike).expect(429);
		}

		expect(handled.count).toBe(2);
		expect(normalizeUsername('Straße')).toBe(normalizeUsername('STRASSE'));
		// Nothing left but invisible characters: no username.
		await attempt(app, '\u200b\u00ad').expect(400);
	});

	it('answers 400 JSON for a missing, empty or non-string username, and counts nothing', async () => {
		const { app, handled } = createLoginApp(redisStore());
		const bodies = [{}, { username: 42 }, { username: ['alice'] }, { username: { $ne: '' } }, { username: '  ' }];
		for (const body of bodies) {
			const res = await request(app).post('/login').send(body).expect(400);
			expect(res.body).toEqual({ error: 'A username is required.' });
		}

		await request(app).post('/login').expect(400);
		await request(app).post('/login').set('Content-Type', 'application/json').send('["alice"]').expect(400);
		expect(handled.count).toBe(0);
		expect(await redis.command('KEYS', `${PREFIX}*`)).toEqual([]);
	});

	it('reads the username from another field or from a function', async () => {
		const byField = createLoginApp(redisStore(), { maxFailures: 1, username: 'email' });
		await request(byField.app).post('/login').send({ email: 'Alice@Example.com' }).expect(401);
		await request(byField.app).post('/login').send({ email: 'alice@example.com' }).expect(429);

		const byHeader = createLoginApp(redisStore(), { maxFailures: 1, username: (req) => req.get('x-user') });
		await request(byHeader.app).post('/login').set('X-User', 'bob').expect(401);
		await request(byHeader.app).post('/login').set('X-User', 'BOB').expect(429);
		await request(byHeader.app).post('/login').expect(400);
	});

	it('counts IPv6 clients per /56 subnet', async () => {
		const { app } = createLoginApp(redisStore(), { maxFailures: 2 });
		await attempt(app, KNOWN_USER, 'x', '2001:db8:1:100::1').expect(401);
		await attempt(app, KNOWN_USER, 'x', '2001:db8:1:1ff::2').expect(401);
		await attempt(app, KNOWN_USER, PASSWORD, '2001:db8:1:1ab:5:6:7:8').expect(429);
		await attempt(app, KNOWN_USER, PASSWORD, '2001:db8:1:200::1').expect(200);
	});
});

describe('loginGuard hooks and administration', () => {
	it('calls onLockout, and logs what a failing hook throws without breaking the request', async () => {
		const logger = recordingLogger();
		const { errors } = logger;
		const calls: LockoutInfo[] = [];
		const { app } = createLoginApp(redisStore(), {
			maxFailures: 1,
			logger,
			onLockout: (info) => {
				calls.push(info);
				if (info.username === KNOWN_USER) throw new Error('pager is down');
				return Promise.reject(new Error('webhook refused'));
			},
		});
		await attempt(app, KNOWN_USER).expect(401);
		await attempt(app, 'bob').expect(401);
		await attempt(app, KNOWN_USER).expect(429);

		const lockout = { scope: 'username+ip', ip: CLIENT_IP, failures: 1, lockoutMs: 30_000, backend: 'redis' };
		expect(calls).toEqual([
			{ ...lockout, username: KNOWN_USER },
			{ ...lockout, username: 'bob' },
		]);
		expect(errors).toEqual([
			expect.stringContaining('pager is down'),
			expect.stringContaining('webhook refused'),
		]);
	});

	it('reset(username, ip) unlocks one address; reset(username) unlocks every address', async () => {
		const { app, guard } = createLoginApp(redisStore(), { maxFailures: 2, maxFailuresPerIp: 3 });
		for (const ip of [CLIENT_IP, OTHER_IP]) {
			await attempt(app, KNOWN_USER, 'x', ip).expect(401);
			await attempt(app, KNOWN_USER, 'x', ip).expect(401);
			await attempt(app, KNOWN_USER, PASSWORD, ip).expect(429);
		}

		await attempt(app, 'bob', 'x').expect(401);
		// CLIENT_IP has 3 failures: refused for any username.
		await attempt(app, 'carol', 'x').expect(429);

		await guard.reset('ALICE ', CLIENT_IP);
		expect(await ipCount()).toBe(0);
		await attempt(app, KNOWN_USER, 'x').expect(401);
		await attempt(app, KNOWN_USER, PASSWORD, OTHER_IP).expect(429);

		await guard.reset(KNOWN_USER);
		await attempt(app, KNOWN_USER, PASSWORD, OTHER_IP).expect(200);
		await attempt(app, KNOWN_USER, PASSWORD).expect(200);
		await expect(guard.reset('  ')).rejects.toThrow(TypeError);
	});

	it('adds one set of failover listeners to a store, however many guards share it', () => {
		const store = redisStore();
		const failover = redisLinkOf(store)!.failover;
		const listeners = () => [failover.listenerCount('fallback'), failover.listenerCount('recover')];
		const before = listeners();
		for (let i = 0; i < 20; i++) loginGuard({ store, logger: silentLogger, prefix: `guard-${i}:` });
		expect(listeners()).toEqual(before.map((count) => count + 1));
	});

	it('carries the outage counts of every guard on one store back to Redis', async () => {
		const store = redisStore();
		const one = createLoginApp(store);
		const two = createLoginApp(store, { prefix: 'second:' });
		await attempt(one.app, 'warm-up').expect(401);
		await Promise.all([nextEvent(store, 'fallback'), redis.kill()]);
		await attempt(one.app, KNOWN_USER).expect(401);
		await attempt(two.app, KNOWN_USER).expect(401);
		await attempt(two.app, KNOWN_USER).expect(401);

		await Promise.all([nextEvent(store, 'recover'), redis.restart()]);
		expect(await pairCount(KNOWN_USER)).toBe(1);
		expect(Number(await redis.command('HGET', loginKeys('second:', KNOWN_USER, CLIENT_IP).pair, 'n'))).toBe(2);
	});

	it('counts in memory with the same limits on a memory-only store', async () => {
		const { app, guard, handled } = createLoginApp(memoryStore(), { maxFailures: 3 });
		const responses = await Promise.all(Array.from({ length: 10 }, () => attempt(app, KNOWN_USER)));
		expect(responses.filter((res) => res.status === 401)).toHaveLength(3);
		expect(responses.filter((res) => res.status === 429)).toHaveLength(7);
		expect(handled.count).toBe(3);

		await guard.reset(KNOWN_USER);
		await attempt(app, KNOWN_USER).expect(401);
		await attempt(app, KNOWN_USER, PASSWORD).expect(200);
		await attempt(app, KNOWN_USER).expect(401);
		await attempt(app, KNOWN_USER).expect(401);
		await attempt(app, KNOWN_USER).expect(401);
		await attempt(app, KNOWN_USER).expect(429);
	});

	it('refuses new usernames rather than forget counts when memory is full', async () => {
		const logger = recordingLogger();
		const { errors } = logger;
		const { app } = createLoginApp(memoryStore(), { maxFailures: 2, memory: { max: 6 }, logger });
		// Each new username takes two counts (username+IP, username), the address one.
		await attempt(app, KNOWN_USER).expect(401);
		await attempt(app, 'bob').expect(401);
		await attempt(app, 'carol').expect(429);
		// Counts already held go on.
		await attempt(app, KNOWN_USER).expect(401);
		await attempt(app, KNOWN_USER).expect(429);
		expect(errors).toEqual([expect.stringContaining('memory.max')]);
	});

	it('throws a TypeError naming each bad option', () => {
		const store = memoryStore();
		const cases: Array<[string, unknown]> = [
			['options', undefined],
			['store', {}],
			['store', { store: {} }],
			['maxFailures', { store, maxFailures: 0 }],
			['lockoutMs', { store, lockoutMs: 1.5 }],
			['lockoutFactor', { store, lockoutFactor: 0.5 }],
			['maxLockoutMs', { store, lockoutMs: 10_000, maxLockoutMs: 5_000 }],
			['failureWindowMs', { store, failureWindowMs: '1d' }],
			['maxFailuresPerUsername', { store, maxFailuresPerUsername: -1 }],
			['usernameWindowMs', { store, usernameWindowMs: Number.NaN }],
			['maxFailuresPerIp', { store, maxFailuresPerIp: 0 }],
			['ipWindowMs', { store, ipWindowMs: 0 }],
			['ipv6Subnet', { store, ipv6Subnet: 129 }],
			// express-rate-limit's rule, as rateLimit() applies it: 32 to 64.
			['ipv6Subnet', { store, ipv6Subnet: 128 }],
			['ipv6Subnet', { store, ipv6Subnet: 16 }],
			['username', { store, username: 42 }],
			['prefix', { store, prefix: '{login}:' }],
			['message', { store, message: 429 }],
			['onLockout', { store, onLockout: 'page me' }],
			['memory.max', { store, memory: { max: 0 } }],
			['logger', { store, logger: {} }],
		];
		for (const [option, options] of cases) {
			expect(() => loginGuard(options as LoginGuardOptions)).toThrow(TypeError);
			expect(() => loginGuard(options as LoginGuardOptions)).toThrow(`\`${option}\``);
		}
	});

	it('warns when maxFailuresPerUsername exceeds the 100 NIST allows', () => {
		const logger = recordingLogger();
		const { warnings } = logger;
		loginGuard({ store: memoryStore(), logger, maxFailuresPerUsername: 500 });
		loginGuard({ store: memoryStore(), logger });
		expect(warnings).toEqual([expect.stringContaining('NIST SP 800-63B')]);
	});
});
