import { EventEmitter } from 'node:events';
import { BoundedMap } from '../lib/bounded-map.js';
import { ChangeJournal, mergeChanges } from '../lib/counting/change-journal.js';
import { MemoryCounts, type MemoryCountsOptions } from '../lib/counting/memory-counts.js';
import { windowModel } from '../lib/counting/window.js';
import { OnceLogger } from '../lib/logger.js';
import type { RedisClient } from '../lib/redis/client.js';
import { Failover } from '../lib/redis/failover.js';
import { newTicket } from '../lib/rate-limit/counter-store.js';
import { Tickets, TICKETS_SWEPT_FROM } from '../lib/rate-limit/tickets.js';
import { recordingLogger } from './helpers/common.js';

// Fast units, on fake timers: the memory side of the counting engine, rateLimit()'s tickets
// and the failover's decisions. Their Redis behaviour is covered by the suites that run real
// servers.

beforeEach(() => {
	jest.useFakeTimers({ now: 1_000_000 });
});

afterEach(() => {
	jest.useRealTimers();
});

const memoryOptions = (overrides: Partial<MemoryCountsOptions> = {}): MemoryCountsOptions => ({
	max: 100,
	whenFull: 'drop-oldest',
	fullMessage: 'memory full',
	journalFullMessage: 'journal full',
	...overrides,
});

describe('BoundedMap', () => {
	it('drops the least recently used first, and only what it may', () => {
		const map = new BoundedMap<number>(3);
		for (const [key, value] of [['a', 1], ['b', 2], ['c', 3]] as const) map.set(key, value);
		map.use('a');
		const dropped: string[] = [];
		expect(map.makeRoom(1, undefined, (key) => dropped.push(key))).toBe(true);
		expect(dropped).toEqual(['b']);
		expect(map.makeRoom(2, (key) => key !== 'c' && key !== 'a')).toBe(false);
		expect(map.peek('a')).toBe(1);
	});
});

describe('ChangeJournal', () => {
	it('adds changes of one key up, a reset wiping what came before it', () => {
		const log = recordingLogger();
		const journal = new ChangeJournal(10, new OnceLogger(log), 'journal full');
		journal.record('k', { kind: 'window', reset: false, added: 2, at: 5 });
		journal.record('k', { kind: 'window', reset: false, added: -1, at: 0 });
		expect(journal.take().get('k')).toEqual({ kind: 'window', reset: false, added: 1, at: 5 });
		expect(journal.size).toBe(0);
		expect(mergeChanges({ kind: 'w', reset: false, added: 3, at: 1 }, { kind: 'w', reset: true, added: 0, at: 2 })).toEqual({
			kind: 'w',
			reset: true,
			added: 0,
			at: 2,
		});
	});

	it('puts back what could not be merged before what came since', () => {
		const journal = new ChangeJournal(10, new OnceLogger(recordingLogger()), 'journal full');
		journal.record('k', { kind: 'window', reset: true, added: 0, at: 0 });
		const taken = journal.take();
		journal.record('k', { kind: 'window', reset: false, added: 1, at: 9 });
		journal.restore(taken);
		expect(journal.take().get('k')).toEqual({ kind: 'window', reset: true, added: 1, at: 9 });
	});

	it('drops the oldest change past its bound, warning once', () => {
		const log = recordingLogger();
		const journal = new ChangeJournal(2, new OnceLogger(log), 'journal full');
		for (const key of ['a', 'b', 'c', 'd']) journal.record(key, { kind: 'window', reset: false, added: 1, at: 1 });
		expect([...journal.take().keys()]).toEqual(['c', 'd']);
		expect(log.errors).toEqual(['journal full']);
	});
});

describe('MemoryCounts', () => {
	const model = windowModel('window', 60_000);

	it('counts in a window that starts at the first count and forgets it when it ends', () => {
		const memory = new MemoryCounts(memoryOptions(), new OnceLogger(recordingLogger()));
		const first = memory.count('k', model, Date.now(), false);
		expect(first).toMatchObject({ count: 1, expiresAt: Date.now() + 60_000 });
		jest.advanceTimersByTime(59_999);
		expect(memory.count('k', model, Date.now(), false)).toMatchObject({ count: 2, expiresAt: first.expiresAt });
		jest.advanceTimersByTime(1);
		expect(memory.read('k', Date.now())).toBeUndefined();
		expect(memory.count('k', model, Date.now(), false).count).toBe(1);
	});

	it('journals what it counts during an outage, with the count it holds', () => {
		const memory = new MemoryCounts(memoryOptions(), new OnceLogger(recordingLogger()));
		memory.mirror('k', 'window', 4, Date.now(), Date.now() + 30_000, Date.now());
		memory.count('k', model, Date.now(), true);
		memory.uncount('other', 'window', Date.now(), true);
		const taken = memory.takeJournal(Date.now(), false);
		expect(taken.get('k')).toEqual({
			change: { kind: 'window', reset: false, added: 1, at: Date.now() },
			held: { count: 5, at: Date.now(), expiresAt: Date.now() + 30_000 },
		});
		expect(taken.get('other')).toMatchObject({ change: { added: -1 }, held: undefined });
		expect(memory.journalSize).toBe(0);
	});

	it('hands over every live copy as well when Redis lost its data', () => {
		const memory = new MemoryCounts(memoryOptions(), new OnceLogger(recordingLogger()));
		memory.mirror('copy', 'window', 3, Date.now(), Date.now() + 10_000, Date.now());
		memory.mirror('gone', 'window', 3, Date.now(), Date.now() + 1_000, Date.now());
		jest.advanceTimersByTime(1_000);
		expect([...memory.takeJournal(Date.now(), false).keys()]).toEqual([]);
		const taken = memory.takeJournal(Date.now(), true);
		expect([...taken.keys()]).toEqual(['copy']);
		expect(taken.get('copy')).toMatchObject({ change: { added: 0, reset: false }, held: { count: 3 } });
	});

	it('refuses room rather than drop a count made here, with whenFull: refuse', () => {
		const log = recordingLogger();
		const memory = new MemoryCounts(memoryOptions({ max: 2, whenFull: 'refuse' }), new OnceLogger(log));
		memory.count('a', model, Date.now(), false);
		memory.mirror('copy', 'window', 1, Date.now(), Date.now() + 60_000, Date.now());
		expect(memory.makeRoom(1, Date.now())).toBe(true);
		expect(memory.read('copy', Date.now())).toBeUndefined();
		memory.count('b', model, Date.now(), false);
		expect(memory.makeRoom(1, Date.now())).toBe(false);
		expect(log.errors).toEqual(['memory full']);
		// Once a count made here expires, it may go.
		jest.advanceTimersByTime(60_000);
		expect(memory.makeRoom(1, Date.now())).toBe(true);
	});

	it('drops the least recently used with whenFull: drop-oldest, warning once', () => {
		const log = recordingLogger();
		const memory = new MemoryCounts(memoryOptions({ max: 2 }), new OnceLogger(log));
		memory.count('a', model, Date.now(), false);
		memory.count('b', model, Date.now(), false);
		memory.count('a', model, Date.now(), false);
		memory.count('c', model, Date.now(), false);
		memory.count('d', model, Date.now(), false);
		expect(memory.read('a', Date.now())).toBeUndefined();
		expect(memory.read('c', Date.now())?.count).toBe(1);
		expect(log.warnings).toEqual(['memory full']);
	});
});

/** A stand-in for a client's health: the failover only reads `isReady`, pings and listens. */
class StandInClient extends EventEmitter {
	isReady = true;
	pings = 0;
	answer: 'pong' | 'hang' | 'fail' = 'pong';

	ping(): Promise<string> {
		this.pings++;
		if (this.answer === 'pong') return Promise.resolve('PONG');
		if (this.answer === 'fail') return Promise.reject(new Error('ECONNREFUSED'));
		return new Promise(() => {});
	}
}

describe('Tickets', () => {
	type Request = Parameters<Tickets['give']>[0];
	/** A request in the middleware, its response in the state given. */
	const inMiddleware = (response: { writableEnded: boolean; destroyed: boolean }) => {
		const request = {} as Request;
		return { request, ticket: newTicket(request, response as never) };
	};

	it('drops, once many are held, the tickets of requests whose response is over', () => {
		const tickets = new Tickets();
		const live = Array.from({ length: 10 }, () => inMiddleware({ writableEnded: false, destroyed: false }));
		const ended = Array.from({ length: 500 }, () => inMiddleware({ writableEnded: true, destroyed: false }));
		const gone = Array.from({ length: TICKETS_SWEPT_FROM - 511 }, () => inMiddleware({ writableEnded: false, destroyed: true }));
		for (const { request, ticket } of [...live, ...ended, ...gone]) tickets.give(request, ticket);
		expect(tickets.size).toBe(TICKETS_SWEPT_FROM - 1);

		const last = inMiddleware({ writableEnded: false, destroyed: false });
		tickets.give(last.request, last.ticket);
		expect(tickets.size).toBe(11);
		for (const { request, ticket } of [...live, last]) expect(tickets.of(request)).toBe(ticket);
		expect(tickets.of(ended[0]!.request)).toBeUndefined();
		expect(tickets.of(gone[0]!.request)).toBeUndefined();
	});

	it('looks again only once twice as many as were left are held', () => {
		const tickets = new Tickets();
		const held = Array.from({ length: TICKETS_SWEPT_FROM }, () => inMiddleware({ writableEnded: false, destroyed: false }));
		for (const { request, ticket } of held) tickets.give(request, ticket);
		// The first look found every one in flight: the next comes at twice as many.
		(held[0]!.ticket.response as { writableEnded: boolean }).writableEnded = true;
		for (let i = 0; i < TICKETS_SWEPT_FROM - 1; i++) {
			const more = inMiddleware({ writableEnded: false, destroyed: false });
			tickets.give(more.request, more.ticket);
		}
		expect(tickets.size).toBe(2 * TICKETS_SWEPT_FROM - 1);
		expect(tickets.of(held[0]!.request)).toBe(held[0]!.ticket);

		const last = inMiddleware({ writableEnded: false, destroyed: false });
		tickets.give(last.request, last.ticket);
		expect(tickets.size).toBe(2 * TICKETS_SWEPT_FROM - 1);
		expect(tickets.of(held[0]!.request)).toBeUndefined();
	});

	it('gives each ticket back once', () => {
		const tickets = new Tickets();
		const { request, ticket } = inMiddleware({ writableEnded: false, destroyed: false });
		tickets.give(request, ticket);
		expect(tickets.takeBack(request)).toBe(ticket);
		expect(tickets.takeBack(request)).toBeUndefined();
		expect(tickets.size).toBe(0);
	});
});

describe('Failover', () => {
	const failoverOf = (client: StandInClient) =>
		new Failover({
			client: client as unknown as RedisClient,
			timeoutMs: 100,
			probeIntervalMs: 50,
			recoverAfterProbes: 2,
			minFallbackMs: 500,
			log: new OnceLogger(recordingLogger()),
		});

	it('probes while on memory and returns after enough good probes, no sooner than minFallbackMs', async () => {
		const client = new StandInClient();
		const failover = failoverOf(client);
		const events: string[] = [];
		failover.on('fallback', () => events.push('fallback'));
		failover.on('recover', () => events.push('recover'));

		client.answer = 'fail';
		failover.trip(new Error('socket closed'));
		expect(await failover.attempt('GET', () => Promise.resolve('x'))).toEqual({ served: false });
		await jest.advanceTimersByTimeAsync(300);
		expect(failover.backend).toBe('memory');
		client.answer = 'pong';
		await jest.advanceTimersByTimeAsync(150);
		// Good probes, but minFallbackMs has not passed.
		expect(failover.backend).toBe('memory');
		await jest.advanceTimersByTimeAsync(200);
		expect(failover.backend).toBe('redis');
		expect(events).toEqual(['fallback', 'recover']);
		failover.close();
	});

	it('runs recovery steps before returning, stays on memory while one fails, and removes a step', async () => {
		const client = new StandInClient();
		const failover = failoverOf(client);
		const ran: string[] = [];
		let failing = true;
		failover.addRecoveryStep({
			flush: async () => {
				ran.push('kept');
				if (failing) throw new Error('Redis failed again');
			},
		});
		const remove = failover.addRecoveryStep({ flush: async () => void ran.push('removed') });
		remove();
		remove();

		failover.trip(new Error('socket closed'));
		await jest.advanceTimersByTimeAsync(600);
		expect(failover.backend).toBe('memory');
		failing = false;
		await jest.advanceTimersByTimeAsync(200);
		expect(failover.backend).toBe('redis');
		expect(ran).toContain('kept');
		expect(ran).not.toContain('removed');
		failover.close();
	});

	it('trips on a missed deadline and serves nothing late', async () => {
		const client = new StandInClient();
		const failover = failoverOf(client);
		const attempt = failover.attempt('GET', () => new Promise(() => {}));
		await jest.advanceTimersByTimeAsync(100);
		expect(await attempt).toEqual({ served: false });
		expect(failover.backend).toBe('memory');
		expect(failover.lastError?.message).toMatch(/GET/);
		failover.close();
	});
});
