import type { SessionData } from 'express-session';
import { once } from 'node:events';
import http from 'node:http';
import type { Socket } from 'node:net';
import { promisify } from 'node:util';
import request from 'supertest';
import type { ResilientStore } from '../lib/index.js';
import { createApp, newSid, sessionData } from './helpers/app.js';
import { sleep } from './helpers/common.js';
import { type StoreMode, useStoreFactory } from './helpers/stores.js';

const fixture = useStoreFactory();

const data = (seconds = 60, extra: Record<string, unknown> = {}) => sessionData(seconds, extra) as unknown as SessionData;

/** Past a time to live of `seconds`, with a margin for Redis's and the LRU's clocks. */
const outlive = (seconds: number) => sleep(seconds * 1000 + 600);

describe.each<StoreMode>(['redis', 'memory-only', 'fallen-back'])('the store contract (%s)', (mode) => {
	let store: ResilientStore;

	beforeEach(async () => {
		store = await fixture.stores.create(mode);
	});

	it('serves from the backend its mode implies', () => {
		expect(store.backend).toBe(mode === 'redis' ? 'redis' : 'memory');
	});

	it('answers null for a session it does not have', async () => {
		expect(await store.get(newSid())).toBeNull();
	});

	it('reads back the session it stored', async () => {
		const sid = newSid();
		await store.set(sid, data(60, { user: 'alice', views: 3 }));
		expect(await store.get(sid)).toMatchObject({ user: 'alice', views: 3, cookie: { originalMaxAge: 60_000 } });
	});

	it('calls the express-session callback as well as returning a promise', async () => {
		const sid = newSid();
		await promisify<string, SessionData, void>((s, d, cb) => store.set(s, d, cb))(sid, data(60, { user: 'bob' }));
		const got = await promisify<string, SessionData | null | undefined>((s, cb) => store.get(s, cb))(sid);
		expect(got).toMatchObject({ user: 'bob' });
		const callback = jest.fn();
		await store.destroy(sid, callback);
		expect(callback).toHaveBeenCalledWith(null, undefined);
	});

	it("hands a session read to get's callback in the check phase, as express-session's MemoryStore does", async () => {
		const sid = newSid();
		await store.set(sid, data(60, { user: 'fay' }));
		// Served from memory here (a warm copy, or memory itself): no I/O to wait for.
		const callback = jest.fn();
		const returned = store.get(sid, callback);
		// Not at once, nor in a microtask or a process.nextTick: express-session would then
		// run the request's handlers in the middle of reading the next request.
		await new Promise((resolve) => process.nextTick(resolve));
		await Promise.resolve();
		expect(callback).not.toHaveBeenCalled();
		await returned;
		await new Promise((resolve) => setImmediate(resolve));
		expect(callback).toHaveBeenCalledTimes(1);
		expect(callback.mock.calls[0]![1]).toMatchObject({ user: 'fay' });
	});

	it('hands the reads it serves from memory in one turn to their callbacks one after another', async () => {
		const sids = [newSid(), newSid(), newSid()];
		for (const sid of sids) await store.set(sid, data(60, { user: sid }));
		// Each callback stands for a request's handlers, which start writing a response
		// that Node flushes in a tick: those writes leave together, after the last handler.
		const order: string[] = [];
		await Promise.all(
			sids.map(
				(sid, index) =>
					new Promise<void>((resolve) =>
						store.get(sid, (_error, session) => {
							order.push(`read ${index} ${session?.user === sid}`);
							process.nextTick(() => {
								order.push(`flushed ${index}`);
								resolve();
							});
						}),
					),
			),
		);
		expect(order).toEqual(['read 0 true', 'read 1 true', 'read 2 true', 'flushed 0', 'flushed 1', 'flushed 2']);
	});

	/**
	 * Serves `app` on a loopback port and counts the writes its connections hand to the
	 * kernel (a corked socket hands over everything written meanwhile at once).
	 */
	const countingFlushes = async (app: ReturnType<typeof createApp>) => {
		const server = app.listen(0, '127.0.0.1');
		await once(server, 'listening');
		const counter = { flushes: 0, server };
		server.on('connection', (socket: Socket) => {
			const hooks = socket as unknown as Record<'_write' | '_writev', (...args: unknown[]) => unknown>;
			for (const name of ['_write', '_writev'] as const) {
				const original = hooks[name];
				hooks[name] = function (this: unknown, ...args: unknown[]) {
					counter.flushes++;
					return original.apply(this, args);
				};
			}
		});
		return counter;
	};

	it.each([
		['a read-only request', 'GET', '/whoami'],
		['a request that changes its session', 'GET', '/count'],
		['a login', 'POST', '/login?user=gus'],
	] as const)('lets express-session write the response of %s in one piece', async (_name, method, path) => {
		const counter = await countingFlushes(createApp(store, { cookie: { maxAge: 3_600_000 } }));
		try {
			const agent = request.agent(counter.server);
			await agent.post('/login?user=gus').expect(200);
			await agent.get('/count').expect(200);
			counter.flushes = 0;
			// A read: the touch that ends it has nothing to send, and calls back before the
			// head is flushed. A save: the connection waits for it, corked.
			const response = method === 'GET' ? await agent.get(path).expect(200) : await agent.post(path).expect(200);
			expect(response.body.user ?? response.body.views).toBeDefined();
			expect(counter.flushes).toBe(1);
		} finally {
			counter.server.close();
		}
	});

	it('leaves the connection alone when a session is saved by hand after its response ended', async () => {
		const app = createApp(store);
		let corkedAfterEnd = -1;
		const saved = new Promise<void>((resolve) => {
			app.get('/late', (req, res) => {
				res.json({ ok: true });
				const socket = req.socket;
				const cork = socket.cork.bind(socket);
				corkedAfterEnd = 0;
				socket.cork = () => {
					corkedAfterEnd++;
					cork();
				};
				req.session.views = 7;
				req.session.save(() => resolve());
			});
		});
		const agent = request.agent(app);
		await agent.get('/late').expect(200);
		await saved;
		expect(corkedAfterEnd).toBe(0);
	});

	it('lets a response stream once the session saved by hand is stored', async () => {
		const app = createApp(store);
		app.get('/stream', (req, res) => {
			req.session.views = 1;
			req.session.save(() => {
				res.write('saved;');
				setTimeout(() => res.end('done'), 400);
			});
		});
		const server = app.listen(0, '127.0.0.1');
		await once(server, 'listening');
		try {
			const { port } = server.address() as { port: number };
			const started = Date.now();
			const arrivals: Array<[string, number]> = [];
			await new Promise<void>((resolve, reject) => {
				http.get({ host: '127.0.0.1', port, path: '/stream' }, (response) => {
					response.setEncoding('utf8');
					response.on('data', (chunk: string) => arrivals.push([chunk, Date.now() - started]));
					response.on('end', resolve);
				}).on('error', reject);
			});
			expect(arrivals.map(([chunk]) => chunk).join('')).toBe('saved;done');
			// The first part is not held back until the end of the response.
			expect(arrivals[0]![0]).toBe('saved;');
			expect(arrivals[0]![1]).toBeLessThan(300);
		} finally {
			server.close();
		}
	});

	it('destroys a session', async () => {
		const sid = newSid();
		await store.set(sid, data());
		await store.destroy(sid);
		expect(await store.get(sid)).toBeNull();
	});

	it('lists sessions with all(), ids() and length(), and clear() empties it', async () => {
		await store.clear();
		const [a, b] = [newSid(), newSid()];
		await store.set(a, data(60, { user: 'a' }));
		await store.set(b, data(60, { user: 'b' }));
		expect((await store.ids())!.sort()).toEqual([a, b].sort());
		expect(await store.length()).toBe(2);
		const all = await store.all();
		expect(Array.isArray(all)).toBe(true);
		expect(all!.map((s) => [s.id, s.user]).sort()).toEqual([
			[a, 'a'],
			[b, 'b'],
		].sort());
		await store.clear();
		expect(await store.length()).toBe(0);
		expect(await store.get(a)).toBeNull();
	});

	it('expires a session when its cookie expires', async () => {
		const sid = newSid();
		await store.set(sid, data(1));
		expect(await store.get(sid)).not.toBeNull();
		await outlive(1);
		expect(await store.get(sid)).toBeNull();
	});

	it('deletes a session whose cookie has already expired', async () => {
		const sid = newSid();
		await store.set(sid, data(60));
		await store.set(sid, data(-5));
		expect(await store.get(sid)).toBeNull();
	});

	it('extends the time to live on touch', async () => {
		const sid = newSid();
		await store.set(sid, data(1, { user: 'carol' }));
		await store.touch(sid, data(60));
		await outlive(1);
		expect(await store.get(sid)).toMatchObject({ user: 'carol' });
	});

	describe('with options', () => {
		it('takes ttl as a function of the session', async () => {
			const ttl = jest.fn(() => 1);
			const custom = await fixture.stores.create(mode, { ttl });
			const sid = newSid();
			// No cookie expiry: only the function can give a time to live.
			await custom.set(sid, { cookie: { originalMaxAge: null } } as unknown as SessionData);
			expect(ttl).toHaveBeenCalled();
			expect(await custom.get(sid)).not.toBeNull();
			await outlive(1);
			expect(await custom.get(sid)).toBeNull();
		});

		it('keeps the original time to live with disableTouch', async () => {
			const custom = await fixture.stores.create(mode, { disableTouch: true });
			const sid = newSid();
			await custom.set(sid, data(1));
			await custom.touch(sid, data(60));
			await outlive(1);
			expect(await custom.get(sid)).toBeNull();
		});

		it('keeps sessions past their cookie expiry with disableTTL', async () => {
			const custom = await fixture.stores.create(mode, { disableTTL: true });
			const sid = newSid();
			await custom.set(sid, data(1, { user: 'dave' }));
			await outlive(1);
			expect(await custom.get(sid)).toMatchObject({ user: 'dave' });
		});

		it('writes and reads through a custom serializer', async () => {
			const serializer = {
				stringify: (s: SessionData) => `v1:${JSON.stringify(s)}`,
				parse: (text: string) => JSON.parse(text.slice(3)) as SessionData,
			};
			const custom = await fixture.stores.create(mode, { serializer, prefix: 'custom:' });
			const sid = newSid();
			await custom.set(sid, data(60, { user: 'erin' }));
			expect(await custom.get(sid)).toMatchObject({ user: 'erin' });
			if (mode === 'redis') expect(await fixture.redis.command('GET', `custom:${sid}`)).toMatch(/^v1:\{/);
		});

		it('reads through a serializer whose parse answers with a promise, by promise and by callback', async () => {
			const serializer = {
				stringify: (s: SessionData) => JSON.stringify(s),
				parse: async (text: string) => JSON.parse(text) as SessionData,
			};
			const custom = await fixture.stores.create(mode, { serializer, prefix: 'async:' });
			const sid = newSid();
			await custom.set(sid, data(60, { user: 'fay' }));
			expect(await custom.get(sid)).toMatchObject({ user: 'fay' });
			const byCallback = await new Promise((resolve, reject) =>
				custom.get(sid, (error, session) => (error ? reject(error) : resolve(session))),
			);
			expect(byCallback).toMatchObject({ user: 'fay' });
			expect(await custom.get(newSid())).toBeNull();
		});
	});
});
