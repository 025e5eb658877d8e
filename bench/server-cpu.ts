/**
 * `npm run bench:cpu`: the server's CPU per request, store against store.
 *
 * On loopback the server under test is the bottleneck: its main thread runs at 100 % of
 * a core, so its requests/s is one second over the main thread's CPU time per request.
 * That time is measured here directly, from the thread's own counters in
 * `/proc/<pid>/task/<pid>/stat` (Linux), which other processes on the machine do not
 * move the way they move requests/s. Each kind runs in a server process of its own
 * (`server.ts`, 64 logged-in sessions); per scenario, a warm-up per server, then rounds
 * of a fixed number of requests (autocannon, 16 connections), the servers' order
 * alternating from round to round. Reported per kind: the median over the rounds of the
 * main thread's CPU µs per request, and its ratio to the first kind's in the same round.
 *
 *   npm run bench:cpu
 *   npm run bench:cpu -- --kinds connect-redis,connect-redis-resp3,resilient --scenarios write --rounds 8
 *
 * Kinds: those of stores.ts (`connect-redis-resp3` is connect-redis on an RESP3 client).
 */
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { mainThreadMicros, processMicros } from './cpu-usage.js';
import { killChildrenOnExit } from './processes.js';
import { BenchRedis, freePort } from './redis-server.js';
import { logIn, type ServerProcess, startServer } from './server-process.js';
import { median } from './stats.js';
import { isStoreKind, STORE_LABELS, type StoreKind } from './stores.js';
import { SCENARIOS, type Scenario } from './throughput.js';

const USAGE = `Usage: npm run bench:cpu -- [options]

  --kinds <kinds>        comma-separated store kinds, the first the baseline (default connect-redis,resilient)
  --scenarios <ids>      comma-separated: ${SCENARIOS.map((scenario) => scenario.id).join(', ')} (default all)
  --rounds <n>           measured rounds per kind and scenario (default 6)
  --requests <n>         requests per round (default 10000)`;

/** What is measured per request: the server's main thread, the whole server process, Redis. */
const METERS = ['main', 'process', 'redis'] as const;
type Meter = (typeof METERS)[number];
const METER_TITLES: Record<Meter, string> = { main: 'main thread', process: 'server process', redis: 'redis-server' };

/** Sends `requests` requests of `scenario` to `server`, 16 at a time. */
const load = (server: ServerProcess, scenario: Scenario, cookies: readonly string[], requests: number) =>
	new Promise<void>((resolve, reject) => {
		let next = 0;
		const setupRequest = (request: autocannon.Request): autocannon.Request => ({
			...request,
			headers: { ...request.headers, cookie: cookies[next++ % cookies.length]! },
		});
		autocannon(
			{
				url: `http://127.0.0.1:${server.port}`,
				connections: 16,
				amount: requests,
				requests: [{ method: scenario.method, path: scenario.path, ...(scenario.withSession ? { setupRequest } : {}) }],
			},
			(error: unknown, result: autocannon.Result) => {
				if (error) return reject(error);
				if (result.non2xx > 0) return reject(new Error(`${server.kind}: ${result.non2xx} non-2xx answers to ${scenario.path}`));
				resolve();
			},
		);
	});

const main = async (): Promise<void> => {
	const { values } = parseArgs({
		options: {
			kinds: { type: 'string', default: 'connect-redis,resilient' },
			scenarios: { type: 'string' },
			rounds: { type: 'string', default: '6' },
			requests: { type: 'string', default: '10000' },
			help: { type: 'boolean', default: false },
		},
	});
	if (values.help) return console.log(USAGE);
	if (process.platform !== 'linux') throw new Error('bench:cpu reads /proc: it runs on Linux only');
	const kinds = values.kinds.split(',').map((kind) => kind.trim());
	const unknown = kinds.filter((kind) => !isStoreKind(kind));
	if (unknown.length > 0 || kinds.length === 0) throw new Error(`unknown store kind(s) ${unknown.join(', ')}\n\n${USAGE}`);
	const ids = values.scenarios?.split(',').map((id) => id.trim());
	const scenarios = ids ? SCENARIOS.filter((scenario) => ids.includes(scenario.id)) : SCENARIOS;
	if (ids && scenarios.length !== ids.length) throw new Error(`unknown scenario in ${values.scenarios}\n\n${USAGE}`);
	const rounds = Number(values.rounds);
	const requests = Number(values.requests);
	if (!(rounds > 0) || !(requests > 0)) throw new Error(`--rounds and --requests take positive numbers\n\n${USAGE}`);

	killChildrenOnExit();
	const redis = await BenchRedis.start();
	const urls = { redisUrl: redis.url, downUrl: `redis://127.0.0.1:${await freePort()}` };
	console.log(`server CPU per request (main thread), ${rounds} rounds of ${requests} requests, ${new Date().toISOString()}`);
	try {
		for (const scenario of scenarios) {
			// Fresh servers per scenario: what one scenario leaves in a process (a rate
			// limit's state, say) does not weigh on the next.
			const servers: ServerProcess[] = [];
			for (const kind of kinds as StoreKind[]) servers.push(await startServer(kind, urls));
			try {
				const cookies = await Promise.all(servers.map((server) => logIn(server.port, 64)));
				for (const [i, server] of servers.entries()) await load(server, scenario, cookies[i]!, 3_000);
				const perRequest = servers.map((): Record<Meter, number[]> => ({ main: [], process: [], redis: [] }));
				for (let round = 0; round < rounds; round++) {
					const order = servers.map((_, i) => i);
					if (round % 2 === 1) order.reverse();
					for (const i of order) {
						const { pid } = servers[i]!;
						const before = { main: mainThreadMicros(pid), process: processMicros(pid), redis: await redis.cpuMicros() };
						await load(servers[i]!, scenario, cookies[i]!, requests);
						const after = { main: mainThreadMicros(pid), process: processMicros(pid), redis: await redis.cpuMicros() };
						for (const meter of METERS) perRequest[i]![meter].push((after[meter] - before[meter]) / requests);
					}
				}

				console.log(`\n${scenario.title} (${scenario.method} ${scenario.path}), CPU µs per request`);
				console.log(`  ${''.padEnd(34)} ${METERS.map((meter) => METER_TITLES[meter].padStart(22)).join('')}`);
				for (const [i, kind] of kinds.entries()) {
					const cells = METERS.map((meter) => {
						const figure = median(perRequest[i]![meter]).toFixed(0).padStart(5);
						if (i === 0) return figure.padStart(22);
						const ratio = median(perRequest[i]![meter].map((micros, round) => micros / perRequest[0]![meter][round]!));
						return `${figure} (× ${ratio.toFixed(2)})`.padStart(22);
					});
					console.log(`  ${STORE_LABELS[kind as StoreKind].padEnd(34)} ${cells.join('')}`);
				}
			} finally {
				for (const server of servers) await server.stop();
			}
		}
	} finally {
		await redis.stop();
	}
};

main().catch((error: unknown) => {
	console.error(error instanceof Error ? error.message : error);
	process.exit(1);
});
