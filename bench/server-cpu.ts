/**
 * `npm run bench:cpu`: what a request costs, store against store.
 *
 * On loopback the server under test is the bottleneck: its main thread runs near 100 % of
 * a core, so its requests/s is about one second over the main thread's CPU time per
 * request. That time is measured here directly, from the thread's own counters in
 * `/proc/<pid>/task/<pid>/stat` (Linux), which other processes on the machine do not
 * move the way they move requests/s; beside it, the whole server process's (the garbage
 * collector's threads too), Redis's (`INFO cpu`: a script costs it more than a plain
 * command) and the requests/s of the round.
 *
 * Each kind runs in `--processes` server processes of its own (`server.ts`, 64 logged-in
 * sessions): two processes of the same code differ by up to ±8 % in requests/s on a
 * small VM, so more than one per kind keeps that spread out of the ratios. Per scenario,
 * a warm-up per server, then rounds of a fixed number of requests (autocannon, 16
 * connections) to every process, the kinds' order alternating from round to round.
 * Reported per kind: the median over the rounds of each figure (the mean over its
 * processes), and its ratio to the first kind's in the same round.
 *
 * A ResilientStore kind may name a git revision, to compare the working tree with an
 * earlier commit in the same run (revisions.ts):
 *
 *   npm run bench:cpu
 *   npm run bench:cpu -- --kinds connect-redis,connect-redis-resp3,resilient --scenarios write --rounds 8
 *   npm run bench:cpu -- --kinds resilient@HEAD~1,resilient --processes 3
 *
 * Kinds: those of stores.ts (`connect-redis-resp3` is connect-redis on an RESP3 client).
 */
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { mainThreadMicros, pageFaultMicros, processUsage } from './cpu-usage.js';
import { killChildrenOnExit } from './processes.js';
import { BenchRedis, freePort } from './redis-server.js';
import { logIn, type ServerProcess, startServer } from './server-process.js';
import { median } from './stats.js';
import { commitOf, compiledRevision, parseKindAtRevision } from './revisions.js';
import { isStoreKind, STORE_LABELS, type StoreKind } from './stores.js';
import { SCENARIOS, type Scenario } from './throughput.js';

const USAGE = `Usage: npm run bench:cpu -- [options]

  --kinds <kinds>        comma-separated store kinds, the first the baseline (default connect-redis,resilient);
                         a ResilientStore kind at a git revision as resilient@<rev> (resilient@HEAD~1)
  --scenarios <ids>      comma-separated: ${SCENARIOS.map((scenario) => scenario.id).join(', ')} (default all)
  --rounds <n>           measured rounds per kind and scenario (default 6)
  --requests <n>         requests per round and server process (default 10000)
  --processes <n>        server processes per kind (default 1)`;

/**
 * What is measured: CPU µs per request of the server's main thread, of the whole server
 * process and of Redis; the server process's minor page faults per request (see
 * `pageFaultMicros`: V8 maps fresh pages into its heap as it grows, after giving back
 * those a full collection emptied); and requests/s.
 */
const COUNTED_METERS = ['main', 'process', 'redis', 'faults'] as const;
const METERS = [...COUNTED_METERS, 'rate'] as const;
type Meter = (typeof METERS)[number];
const METER_TITLES: Record<Meter, string> = {
	main: 'main thread µs/req',
	process: 'process µs/req',
	redis: 'redis-server µs/req',
	faults: 'page faults/req',
	rate: 'requests/s',
};

/** Decimals shown per meter: faults per request are a few at most. */
const DECIMALS: Record<Meter, number> = { main: 0, process: 0, redis: 0, faults: 2, rate: 0 };

/**
 * Sends `requests` requests of `scenario` to `server`, 16 at a time; resolves with the
 * requests/s between the first response and the last (autocannon's own duration of a
 * run of a fixed number of requests is whole seconds, and counts its start-up).
 */
const load = (server: ServerProcess, scenario: Scenario, cookies: readonly string[], requests: number) =>
	new Promise<number>((resolve, reject) => {
		let next = 0;
		const setupRequest = (request: autocannon.Request): autocannon.Request => ({
			...request,
			headers: { ...request.headers, cookie: cookies[next++ % cookies.length]! },
		});
		let [first, last, responses] = [0, 0, 0];
		const instance = autocannon(
			{
				url: `http://127.0.0.1:${server.port}`,
				connections: 16,
				amount: requests,
				requests: [{ method: scenario.method, path: scenario.path, ...(scenario.withSession ? { setupRequest } : {}) }],
			},
			(error: unknown, result: autocannon.Result) => {
				if (error) return reject(error);
				if (result.non2xx > 0) return reject(new Error(`${server.kind}: ${result.non2xx} non-2xx answers to ${scenario.path}`));
				resolve(((responses - 1) * 1000) / (last - first));
			},
		);
		instance.on('response', () => {
			last = performance.now();
			if (responses++ === 0) first = last;
		});
	});

/** A kind to measure: a store kind of stores.ts, ResilientStore's optionally at a git revision. */
interface Measured {
	readonly kind: StoreKind;
	readonly label: string;
	/** The folder of the revision's compiled package (revisions.ts); none for the working tree. */
	readonly compiledPackage?: string;
}

const measuredKind = (spec: string): Measured => {
	const { kind, revision } = parseKindAtRevision(spec);
	if (!isStoreKind(kind)) throw new Error(`unknown store kind ${JSON.stringify(kind)}\n\n${USAGE}`);
	if (revision === undefined) return { kind, label: STORE_LABELS[kind] };
	if (!kind.startsWith('resilient')) throw new Error(`only ResilientStore kinds take a revision: ${spec}\n\n${USAGE}`);
	const commit = commitOf(revision);
	return { kind, label: `${STORE_LABELS[kind]} at ${revision} (${commit.slice(0, 7)})`, compiledPackage: compiledRevision(commit) };
};

const main = async (): Promise<void> => {
	const { values } = parseArgs({
		options: {
			kinds: { type: 'string', default: 'connect-redis,resilient' },
			scenarios: { type: 'string' },
			rounds: { type: 'string', default: '6' },
			requests: { type: 'string', default: '10000' },
			processes: { type: 'string', default: '1' },
			help: { type: 'boolean', default: false },
		},
	});
	if (values.help) return console.log(USAGE);
	if (process.platform !== 'linux') throw new Error('bench:cpu reads /proc: it runs on Linux only');
	const measured = values.kinds.split(',').map((spec) => measuredKind(spec.trim()));
	const ids = values.scenarios?.split(',').map((id) => id.trim());
	const scenarios = ids ? SCENARIOS.filter((scenario) => ids.includes(scenario.id)) : SCENARIOS;
	if (ids && scenarios.length !== ids.length) throw new Error(`unknown scenario in ${values.scenarios}\n\n${USAGE}`);
	const [rounds, requests, processes] = [values.rounds, values.requests, values.processes].map(Number) as [number, number, number];
	if (![rounds, requests, processes].every((n) => Number.isInteger(n) && n > 0)) {
		throw new Error(`--rounds, --requests and --processes take whole numbers above 0\n\n${USAGE}`);
	}

	killChildrenOnExit();
	const redis = await BenchRedis.start();
	const urls = { redisUrl: redis.url, downUrl: `redis://127.0.0.1:${await freePort()}` };
	console.log(
		`server CPU and requests/s per request kind, ${rounds} rounds of ${requests} requests, ` +
			`${processes} server process(es) per store, ${new Date().toISOString()}; ` +
			`a page fault costs this machine ${pageFaultMicros().toFixed(2)} µs`,
	);
	try {
		for (const scenario of scenarios) {
			// Fresh servers per scenario: what one scenario leaves in a process (a rate
			// limit's state, say) does not weigh on the next.
			const servers: ServerProcess[][] = [];
			for (const { kind, compiledPackage } of measured) {
				const pool: ServerProcess[] = [];
				for (let i = 0; i < processes; i++) pool.push(await startServer(kind, urls, compiledPackage));
				servers.push(pool);
			}

			try {
				const cookies = new Map<ServerProcess, string[]>();
				for (const server of servers.flat()) cookies.set(server, await logIn(server.port, 64));
				for (const server of servers.flat()) await load(server, scenario, cookies.get(server)!, 3_000);
				// Per kind and round: the mean over the kind's processes of each meter per request.
				const perRound = servers.map((): Record<Meter, number[]> => ({ main: [], process: [], redis: [], faults: [], rate: [] }));
				for (let round = 0; round < rounds; round++) {
					const order = servers.map((_, i) => i);
					if (round % 2 === 1) order.reverse();
					const sums = servers.map((): Record<Meter, number> => ({ main: 0, process: 0, redis: 0, faults: 0, rate: 0 }));
					for (let p = 0; p < processes; p++) {
						for (const i of order) {
							const server = servers[i]![p]!;
							const { pid } = server;
							const counted = async () => {
								const { micros, minorFaults } = processUsage(pid);
								return { main: mainThreadMicros(pid), process: micros, redis: await redis.cpuMicros(), faults: minorFaults };
							};
							const before = await counted();
							const rate = await load(server, scenario, cookies.get(server)!, requests);
							const after = await counted();
							for (const meter of COUNTED_METERS) sums[i]![meter] += (after[meter] - before[meter]) / requests;
							sums[i]!.rate += rate;
						}
					}

					for (const [i, sum] of sums.entries()) for (const meter of METERS) perRound[i]![meter].push(sum[meter] / processes);
				}

				console.log(`\n${scenario.title} (${scenario.method} ${scenario.path})`);
				console.log(`  ${''.padEnd(44)} ${METERS.map((meter) => METER_TITLES[meter].padStart(22)).join('')}`);
				for (const [i, { label }] of measured.entries()) {
					const cells = METERS.map((meter) => {
						const figure = median(perRound[i]![meter]).toFixed(DECIMALS[meter]).padStart(5);
						// A count that can be 0 for the baseline gets no ratio.
						if (i === 0 || meter === 'faults') return figure.padStart(22);
						const ratio = median(perRound[i]![meter].map((value, round) => value / perRound[0]![meter][round]!));
						return `${figure} (× ${ratio.toFixed(2)})`.padStart(22);
					});
					console.log(`  ${label.padEnd(44)} ${cells.join('')}`);
				}
			} finally {
				for (const server of servers.flat()) await server.stop();
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
