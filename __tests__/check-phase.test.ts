import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { inCheckPhase } from '../lib/callback.js';

/** Resolves in the check phase after the next one: every call queued before has run. */
const twoCheckPhases = () => new Promise((resolve) => setImmediate(() => setImmediate(resolve)));

describe('inCheckPhase()', () => {
	it('runs the calls in the order they were queued, after the ticks and microtasks of the turn', async () => {
		const order: string[] = [];
		inCheckPhase(() => order.push('first'));
		process.nextTick(() => order.push('tick'));
		void Promise.resolve().then(() => order.push('microtask'));
		inCheckPhase(() => order.push('second'));
		expect(order).toEqual([]);
		await twoCheckPhases();
		expect(order.slice(0, 2).sort()).toEqual(['microtask', 'tick']);
		expect(order.slice(2)).toEqual(['first', 'second']);
	});

	it('runs every call queued before the check phase before any tick one of them queues', async () => {
		// Each of these would write the start of a response (Node flushes it in a tick):
		// the writes then leave one after another, after the last call.
		const order: string[] = [];
		for (const name of ['a', 'b', 'c']) {
			inCheckPhase(() => {
				order.push(name);
				process.nextTick(() => order.push(`${name} flushed`));
			});
		}

		await twoCheckPhases();
		expect(order).toEqual(['a', 'b', 'c', 'a flushed', 'b flushed', 'c flushed']);
	});

	it('leaves a call queued by one of the calls for the next check phase', async () => {
		const order: string[] = [];
		inCheckPhase(() => {
			order.push('outer');
			inCheckPhase(() => order.push('inner'));
		});
		// Queued after the outer call: runs in the same check phase, right after it.
		await new Promise((resolve) => setImmediate(resolve));
		expect(order).toEqual(['outer']);
		await twoCheckPhases();
		expect(order).toEqual(['outer', 'inner']);
	});

	it('throws what a call throws, as setImmediate would, and still runs the calls after it', () => {
		const run = spawnSync(process.execPath, ['--import', 'tsx', path.join(__dirname, 'helpers', 'check-phase-throw.ts')], {
			encoding: 'utf8',
			timeout: 15_000,
		});
		expect(run.status).toBe(0);
		expect(JSON.parse(run.stdout)).toEqual(['first', 'uncaught: thrown by the second', 'third']);
	});
});
