/**
 * Measures the heap one store takes for N sessions, in a fresh process started with
 * `--expose-gc` (by memory.ts): heap used after a full GC, before and after N sessions
 * of about 260 bytes are stored, divided by N.
 *
 * For ResilientStore on Redis that is its memory side (warm copies of the sessions it
 * wrote); fallen back, it is the memory side plus the outage journal of what to write
 * back. Redis's own memory is another process's and not counted.
 *
 * The heap is also taken halfway: the growth over the second half is the cost of one
 * more session, without what the first ones paid once (compiled code, buffers).
 *
 * Usage: memory-probe.ts <store kind> <redis url> <down url> <sessions>; reports
 * `{ type: 'result', bytes, secondHalfBytes, held }` over IPC.
 */
import type { SessionData, Store } from 'express-session';
import { sleep } from './processes.js';
import { buildStore, isStoreKind, loggedInSession, newSessionId } from './stores.js';

/** Stored at most this many at a time (the Redis stores pipeline them). */
const BATCH = 100;

const send = (message: object): void => {
	if (process.connected) process.send!(message);
};

const set = (store: Store, sid: string, session: SessionData): Promise<void> =>
	new Promise((resolve, reject) => store.set(sid, session, (error) => (error ? reject(error) : resolve())));

/**
 * Heap used once everything collectable is collected. Collected three times with a
 * pause between: node-redis 6 arms an `AbortSignal.timeout` for every command, and
 * its timer is released only by a finalizer, which runs after a collection.
 */
const heapAfterGc = async (): Promise<number> => {
	for (let i = 0; i < 3; i++) {
		await sleep(20);
		global.gc!();
	}

	return process.memoryUsage().heapUsed;
};

const main = async (): Promise<void> => {
	const [kind, redisUrl, downUrl, count] = process.argv.slice(2);
	const sessions = Number(count);
	if (!isStoreKind(kind) || !redisUrl || !downUrl || !(sessions > 0)) {
		throw new Error('usage: memory-probe.ts <store kind> <redis url> <down url> <sessions>');
	}

	if (typeof global.gc !== 'function') throw new Error('memory-probe.ts needs node --expose-gc');

	const built = await buildStore(kind, { redisUrl, downUrl });
	const storeSessions = async (from: number, to: number): Promise<void> => {
		for (let i = from; i <= to; i += BATCH) {
			const batch: Promise<void>[] = [];
			for (let j = i; j <= Math.min(i + BATCH - 1, to); j++) {
				batch.push(set(built.store, newSessionId(), loggedInSession(`user-${j}`)));
			}

			await Promise.all(batch);
		}
	};

	// One session first, so that what every store allocates once is not counted.
	await storeSessions(0, 0);
	const before = await heapAfterGc();
	const half = Math.floor(sessions / 2);
	await storeSessions(1, half);
	const middle = await heapAfterGc();
	await storeSessions(half + 1, sessions);
	const after = await heapAfterGc();
	// connect-redis holds its sessions in Redis only.
	const held =
		kind === 'connect-redis'
			? 0
			: (built.resilient?.stats().memorySessions ??
				(await new Promise<number>((resolve) => built.store.length!((_error, length) => resolve(length ?? 0)))));
	send({ type: 'result', bytes: after - before, secondHalfBytes: after - middle, held });
	await built.close();
	process.exit(0);
};

main().catch((error: unknown) => {
	send({ type: 'failed', error: error instanceof Error ? error.stack : String(error) });
	process.exit(1);
});
