/**
 * Run as its own process by lifecycle.test.ts: uses a store, closes it, and then must
 * exit by itself, with nothing left keeping the event loop alive.
 * Usage: close-and-exit.ts <redis-url | "memory">
 */
import { ResilientStore, silentLogger } from '../../lib/index.js';

const main = async () => {
	const target = process.argv[2];
	const store = new ResilientStore({ logger: silentLogger, ...(target === 'memory' ? {} : { url: target }) });
	const session = { cookie: { originalMaxAge: 60_000, expires: new Date(Date.now() + 60_000) } } as never;
	await store.set('sid', session);
	await store.get('sid');
	// Long enough for a client to be reconnecting, and for probes to be scheduled.
	await new Promise((resolve) => setTimeout(resolve, 700));
	await store.close();
	process.stdout.write(`closed on ${store.backend}\n`);
};

void main();
