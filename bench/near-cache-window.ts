/**
 * How long the near cache can serve a session after another instance changed it.
 *
 *   npx tsx bench/near-cache-window.ts [--changes 500]
 *
 * Two stores (instances A and B) on one private redis-server. B holds a current copy of a
 * session; A changes it; from the moment A's write is acknowledged, B reads the session
 * as fast as it can (one read per turn of the event loop, each served by its copy while
 * that copy is current) until it sees the change. Reported: how many of B's reads were
 * stale, and how long after the acknowledgement the change was seen.
 */
import { parseArgs } from 'node:util';
import type { SessionData } from 'express-session';
import { ResilientStore, silentLogger } from '../lib/index.js';
import { BenchRedis } from './redis-server.js';
import { formatMs, latencySummary } from './stats.js';

const { values } = parseArgs({ options: { changes: { type: 'string', default: '500' } } });
const changes = Number(values.changes);

const session = (version: number) =>
	({
		cookie: { originalMaxAge: 3_600_000, expires: new Date(Date.now() + 3_600_000).toISOString(), path: '/' },
		version,
	}) as unknown as SessionData & { version: number };

const turn = () => new Promise((resolve) => setImmediate(resolve));

const main = async () => {
	const redis = await BenchRedis.start();
	const a = new ResilientStore({ url: redis.url, logger: silentLogger });
	const b = new ResilientStore({ url: redis.url, logger: silentLogger });
	try {
		await Promise.all([a.length(), b.length()]);
		const sid = 'near-cache-window';
		await a.set(sid, session(0));
		const windows: number[] = [];
		let staleReads = 0;
		let hits = 0;
		for (let version = 1; version <= changes; version++) {
			// B reads the session from Redis once: from then on its copy is current.
			await b.get(sid);
			await a.set(sid, session(version));
			const acknowledged = performance.now();
			for (;;) {
				const read = (await b.get(sid)) as (SessionData & { version: number }) | null;
				if (read?.version === version) break;
				staleReads++;
				await turn();
			}

			windows.push(performance.now() - acknowledged);
			// A read while nothing changes: served by the copy.
			if (((await b.get(sid)) as unknown as { version: number }).version === version) hits++;
		}

		const { p50, p99, max } = latencySummary(windows);
		console.log(`changes made on A, read on B: ${changes}`);
		console.log(`stale reads on B after A's write was acknowledged: ${staleReads} (${(staleReads / changes).toFixed(2)} per change)`);
		console.log(`change seen on B after the acknowledgement: p50 ${formatMs(p50)}, p99 ${formatMs(p99)}, max ${formatMs(max)}`);
		console.log(`backends at the end: A ${a.backend}, B ${b.backend}; B's reads between changes checked: ${hits}`);
	} finally {
		await Promise.all([a.close(), b.close()]);
		await redis.kill();
	}
};

main().catch((error: unknown) => {
	console.error(error);
	process.exitCode = 1;
});
