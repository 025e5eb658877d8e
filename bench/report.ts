/**
 * Turns the measurements into Markdown: one document per part (throughput, store
 * operations, memory, failover), and the project's targets with the measured value of
 * each, met or missed.
 */
import type { FailoverResult } from './failover.js';
import { LATENCY_KINDS, type LatencyResult } from './latency.js';
import type { MemoryRunResult } from './memory.js';
import { storeDefaults } from '../lib/index.js';
import { formatMs, formatNumber, markdownTable } from './stats.js';
import type { StoreOpsResult } from './store-ops.js';
import { BASELINE, STORE_LABELS, type StoreKind } from './stores.js';
import type { Census, ThroughputResult } from './throughput.js';

/** Where and on what the figures were measured. */
export interface RunInfo {
	readonly date: string;
	readonly commit: string;
	readonly node: string;
	readonly redis: string;
	readonly cpus: string;
	readonly loadAverage: string;
}

export const runInfoLine = (info: RunInfo): string =>
	`Measured ${info.date} at ${info.commit}; Node ${info.node}, redis-server ${info.redis}, ${info.cpus}; ` +
	`load average before the run ${info.loadAverage}.`;

const percent = (share: number): string => `${(share * 100).toFixed(share < 0.1 ? 1 : 0)} %`;

/** What other processes took of the machine's CPU meanwhile: the figures' reliability. */
export const othersCpuText = (shares: readonly (number | undefined)[]): string => {
	const measured = shares.filter((share): share is number => share !== undefined);
	if (measured.length === 0) return 'not measured (no /proc)';
	const mean = measured.reduce((sum, share) => sum + share, 0) / measured.length;
	const worst = Math.max(...measured);
	return measured.length === 1 ? percent(mean) : `mean ${percent(mean)}, worst round ${percent(worst)}`;
};

/** `1` → `1`, `0.5` → `0.5`, `1.004` → `1` (two decimals at most). */
const perRequest = (value: number): string => String(Number(value.toFixed(2)));

const commandList = (counts: ReadonlyMap<string, number>): string =>
	[...counts]
		.filter(([, value]) => value >= 0.005)
		.sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
		.map(([name, value]) => `${name.toUpperCase()} ${perRequest(value)}`)
		.join(' · ');

const censusCell = (census: Census | undefined): string => {
	if (!census) return '–';
	const sent = commandList(census.sent) || 'none';
	const scripts = commandList(census.inScripts);
	return scripts ? `${sent} (in scripts: ${scripts})` : sent;
};

const repeatedText = (repeated: number | undefined): string =>
	repeated ? `; ${repeated} round(s) measured again because other processes took over 10 % of the CPU.` : '.';

export const throughputMarkdown = (result: ThroughputResult, info: RunInfo): string => {
	const { options } = result;
	const lines = [
		'# Throughput',
		'',
		'Express 5 + express-session (`resave: false, saveUninitialized: false`) on each store, in a server',
		`process of its own, loaded by autocannon from another process with ${options.connections} connections on 127.0.0.1.`,
		`Each store: ${options.warmupS} s of warm-up, then ${options.rounds} rounds of ${options.roundS} s, interleaved`,
		'across stores (A B C D E, A B C D E, …); requests/s and latencies are medians over the rounds.',
		'Session requests take turns with ' + `${formatNumber(options.sessions)} logged-in sessions of about 260 bytes.`,
		'',
		'- **req/s**: responses per second; **vs connect-redis**: the ratio of the medians, in the same run.',
		'- **p50 / p99**: latency of 2xx responses seen by the load generator, in ms (median over rounds).',
		'- **cmds/req**: Redis commands per request under load, from `INFO commandstats` deltas (this counts',
		'  the commands Lua scripts run, too).',
		`- **sent per request**: what one request sends to Redis, from \`MONITOR\` over ${options.censusRequests} requests`,
		'  sent one at a time; commands run inside Lua scripts are listed apart. Each command sent is one',
		'  round trip unless the client pipelines them.',
		'- **non-2xx**: responses that were not 2xx, plus connection errors, over every round.',
		"- **other processes**: the share of the machine's CPU that processes other than the benchmark took",
		'  during the measured rounds (a round above 10 % is measured again for every store, once per scenario).',
		'',
		runInfoLine(info),
		'',
	];
	for (const { scenario, skipped, stores, repeatedRounds } of result.scenarios) {
		lines.push(`## ${scenario.title} (\`${scenario.method} ${scenario.path}\`)`, '');
		if (skipped) {
			lines.push(`Skipped: ${skipped}.`, '');
			continue;
		}

		lines.push(
			markdownTable(
				[
					'store',
					'req/s',
					`vs ${STORE_LABELS[BASELINE]}`,
					'p50 ms',
					'p99 ms',
					'cmds/req',
					'sent per request (MONITOR)',
					'non-2xx',
				],
				stores.map((store) => [
					STORE_LABELS[store.kind],
					formatNumber(store.requestsPerSecond),
					store.ratio.toFixed(2),
					formatMs(store.p50Ms),
					formatMs(store.p99Ms),
					perRequest(store.totalCommandsPerRequest),
					store.census ? censusCell(store.census) : store.totalCommandsPerRequest > 0.005 ? '–' : 'none',
					formatNumber(store.non2xx + store.errors),
				]),
				'lrrrrrlr',
			),
			'',
			`Other processes: ${othersCpuText(stores.flatMap((store) => store.rounds.map((round) => round.othersCpu)))}` +
				repeatedText(repeatedRounds),
			'',
		);
	}

	return lines.join('\n');
};

export const storeOpsMarkdown = (result: StoreOpsResult, info: RunInfo): string =>
	[
		'# Store operations',
		'',
		'`get`, `set` and `touch` called directly (no HTTP), one at a time, each timed on its own, on',
		`ResilientStore on Redis and on connect-redis. ${result.options.rounds} rounds of ${result.options.callsPerRound} calls of each`,
		`operation per store after a warm-up round, interleaved; ${result.options.sessions} sessions of about 260 bytes.`,
		'Latencies in microseconds over every timed call.',
		'',
		runInfoLine(info),
		`Other processes took ${othersCpuText([result.othersCpu])} of the machine's CPU meanwhile.`,
		'',
		markdownTable(
			['store', 'operation', 'calls', 'p50 µs', 'p99 µs', 'mean µs', 'max µs'],
			result.results.map((row) => [
				STORE_LABELS[row.kind],
				row.operation,
				formatNumber(row.calls),
				formatNumber(row.p50Us),
				formatNumber(row.p99Us),
				formatNumber(row.meanUs),
				formatNumber(row.maxUs),
			]),
			'llrrrrr',
		),
		'',
		'**CPU per request, the store alone.** The calls express-session makes for a read-only request',
		'(`get`, then `touch`) and for one that changes its session (`get`, then `set`), 16 requests at',
		`a time, ${formatNumber(result.options.cpuRequestsPerRound)} per store, kind and round; ${result.options.rounds} rounds after a warm-up round,`,
		"the stores alternating. The CPU time of the benchmark's process (all its threads: the store, its",
		"Redis client, their garbage; not Redis's own) over the requests, median over the rounds; the ratio",
		"is the median of the per-round ratios to connect-redis's. No HTTP: a server's requests cost this",
		"plus what Express, express-session and Node's HTTP cost, which are the same for every store.",
		'',
		markdownTable(
			['store', 'request', 'CPU µs/request', `vs ${STORE_LABELS[BASELINE]}`],
			result.cpu.map((row) => [STORE_LABELS[row.kind], row.request, row.cpuUs.toFixed(1), row.ratio.toFixed(2)]),
			'llrr',
		),
		'',
	].join('\n');

export const memoryMarkdown = (result: MemoryRunResult, info: RunInfo): string => {
	const baseline = result.results.find((row) => row.kind === 'memorystore');
	return [
		'# Memory per session',
		'',
		`${formatNumber(result.options.sessions)} sessions of about 260 bytes (serialized) stored in each store, in a fresh`,
		'process with `--expose-gc`: heap used after full collections, before and after, divided by the',
		`number of sessions (median of ${result.options.repeats} runs). The marginal figure is the growth over the second`,
		'half only: the cost of one more session, without what is paid once (compiled code, buffers).',
		'',
		'- ResilientStore on Redis: its memory side, the warm copies of the sessions it wrote.',
		'- ResilientStore fallen back: its memory side plus the outage journal of what to write back.',
		'- connect-redis keeps nothing in process: its row shows what the method counts besides sessions.',
		'',
		runInfoLine(info),
		'',
		markdownTable(
			['store', 'bytes/session', 'marginal bytes/session', 'vs memorystore', 'sessions held in memory'],
			result.results.map((row) => [
				STORE_LABELS[row.kind],
				formatNumber(row.bytesPerSession),
				formatNumber(row.marginalBytesPerSession),
				baseline ? (row.bytesPerSession / baseline.bytesPerSession).toFixed(2) : '–',
				formatNumber(row.held),
			]),
			'lrrrr',
		),
		'',
	].join('\n');
};

const eventName = (result: FailoverResult, bucketStart: number, bucketMs: number): string => {
	const events: Array<[number | undefined, string]> = [
		[result.killedAtMs, 'Redis killed'],
		[result.fallbackAtMs, "'fallback'"],
		[result.restartedAtMs, 'Redis accepts connections'],
		[result.recoverAtMs, "'recover'"],
	];
	return events
		.filter(([at]) => at !== undefined && at >= bucketStart && at < bucketStart + bucketMs)
		.map(([, name]) => name)
		.join(', ');
};

/** The failover figures, as list items. */
export const failoverSummary = (result: FailoverResult): string[] => {
	const seconds = (ms: number | undefined) => (ms === undefined ? 'never' : `${(ms / 1000).toFixed(2)} s`);
	const failed = Object.entries(result.failedByStatus)
		.map(([status, count]) => `${count} × ${status === '0' ? 'no answer' : status}`)
		.join(', ');
	return [
		`- Requests: ${formatNumber(result.requests)}, of which ${formatNumber(result.servedByMemory)} served from memory; non-2xx or failed: ${result.failed}${failed ? ` (${failed})` : ''}.`,
		`- Latency: p50 ${formatMs(result.p50Ms)} ms, p99 ${formatMs(result.p99Ms)} ms, worst ${formatMs(result.worstMs)} ms (deadline \`timeoutMs\` ${result.deadlineMs} ms; budget deadline + 50 ms = ${result.deadlineMs + 50} ms).`,
		`- Redis killed at ${seconds(result.killedAtMs)}; 'fallback' at ${seconds(result.fallbackAtMs)} (${result.killToFallbackMs === undefined ? 'none' : `${Math.round(result.killToFallbackMs)} ms after the kill`}).`,
		`- Redis accepting connections again at ${seconds(result.restartedAtMs)}; 'recover' at ${seconds(result.recoverAtMs)}: **${result.restartToRecoverMs === undefined ? 'no recovery' : `${Math.round(result.restartToRecoverMs)} ms`}** from Redis's return to the store back on Redis.`,
		`- Write-back on recovery: ${result.writeBack === undefined ? 'none reported' : `\`${JSON.stringify(result.writeBack)}\``}.`,
		`- Other processes took ${othersCpuText([result.othersCpu])} of the machine's CPU during the run.`,
	];
};

export const failoverMarkdown = (result: FailoverResult, info: RunInfo): string => {
	const { options } = result;
	return [
		'# Failover timeline',
		'',
		`ResilientStore (defaults) under a steady ${options.ratePerS} requests/s from ${options.workers} loops (one connection each):`,
		`${Math.round((1 - options.writeShare) * 100)} % read a logged-in session (\`GET /read\`, 401 without a login), ${Math.round(options.writeShare * 100)} % change it (\`POST /write\`),`,
		`over ${options.sessions} sessions. Its redis-server is killed (SIGKILL) at ${options.killAtS} s and started again, empty, at ${options.restartAtS} s.`,
		`Requests are counted in the ${options.bucketMs} ms bucket in which they were sent; a request unanswered after`,
		`${options.requestTimeoutMs} ms counts as failed. The backend is the \`X-Backend\` header the server sets once the session is loaded.`,
		'',
		runInfoLine(info),
		'',
		'![Failover timeline](failover.svg)',
		'',
		...failoverSummary(result),
		'',
		markdownTable(
			['t (s)', '2xx from Redis', '2xx from memory', 'non-2xx or failed', 'worst latency (ms)', 'event'],
			result.buckets.map((bucket) => [
				(bucket.startMs / 1000).toFixed(2),
				String(bucket.okRedis),
				String(bucket.okMemory),
				String(bucket.failed),
				formatMs(bucket.worstMs),
				eventName(result, bucket.startMs, options.bucketMs),
			]),
			'rrrrrl',
		),
		'',
	].join('\n');
};

const resultText = (row: TargetRow): string => (row.met === undefined ? '–' : row.met ? 'PASS' : '**FAIL**');

export interface TargetRow {
	readonly target: string;
	readonly measured: string;
	/** `undefined`: not measured in this run. */
	readonly met: boolean | undefined;
}

export interface AllResults {
	readonly throughput?: ThroughputResult;
	readonly latency?: LatencyResult;
	readonly storeOps?: StoreOpsResult;
	readonly memory?: MemoryRunResult;
	readonly failover?: FailoverResult;
}

/** Every target of the project, with what this run measured. */
export const evaluateTargets = (results: AllResults): TargetRow[] => {
	const rows: TargetRow[] = [];
	const notRun = (target: string) => rows.push({ target, measured: 'not run', met: undefined });

	const ratioTarget = 'requests/s on Redis ≥ 0.97 × connect-redis (same run)';
	if (results.throughput) {
		for (const { scenario, skipped, stores } of results.throughput.scenarios) {
			const resilient = stores.find((store) => store.kind === 'resilient');
			if (skipped || !resilient) {
				rows.push({ target: `${ratioTarget}: ${scenario.id}`, measured: `skipped (${skipped})`, met: undefined });
				continue;
			}

			const baseline = stores.find((store) => store.kind === BASELINE)!;
			rows.push({
				target: `${ratioTarget}: ${scenario.id}`,
				measured: `${resilient.ratio.toFixed(2)} (${formatNumber(resilient.requestsPerSecond)} vs ${formatNumber(baseline.requestsPerSecond)} req/s)`,
				met: resilient.ratio >= 0.97,
			});
		}

		const read = results.throughput.scenarios.find((s) => s.scenario.id === 'read');
		const census = (kind: StoreKind) => read?.stores.find((store) => store.kind === kind)?.census;
		const resilientCensus = census('resilient');
		const baselineCensus = census(BASELINE);
		rows.push(
			resilientCensus
				? {
						target: 'read-only request: one Redis round trip',
						measured: `${perRequest(resilientCensus.sentTotal)} command(s) sent (${commandList(resilientCensus.sent)}); connect-redis: ${baselineCensus ? `${perRequest(baselineCensus.sentTotal)} (${commandList(baselineCensus.sent)})` : '–'}`,
						met: resilientCensus.sentTotal <= 1.005,
					}
				: { target: 'read-only request: one Redis round trip', measured: 'not run', met: undefined },
		);
	} else {
		notRun(ratioTarget);
		notRun('read-only request: one Redis round trip');
	}

	if (results.latency) rows.push(...latencyTargets(results.latency));
	else notRun('Redis 2 ms away: latency and round trips; loopback requests/s ≥ 1.05 × connect-redis');

	const opsTarget = 'store.get/set/touch p99 < 1 ms (ResilientStore on Redis)';
	if (results.storeOps) {
		const resilient = results.storeOps.results.filter((row) => row.kind === 'resilient');
		const baseline = results.storeOps.results.filter((row) => row.kind === BASELINE);
		rows.push({
			target: opsTarget,
			measured: resilient
				.map((row) => {
					const other = baseline.find((candidate) => candidate.operation === row.operation);
					return `${row.operation} ${formatNumber(row.p99Us)} µs${other ? ` (connect-redis ${formatNumber(other.p99Us)})` : ''}`;
				})
				.join('; '),
			met: resilient.every((row) => row.p99Us < 1000),
		});
	} else {
		notRun(opsTarget);
	}

	const memoryTarget = 'memory side per session ≤ memorystore (same run)';
	if (results.memory) {
		const find = (kind: StoreKind) => results.memory!.results.find((row) => row.kind === kind);
		const memorystore = find('memorystore');
		const resilient = find('resilient');
		if (memorystore && resilient) {
			rows.push({
				target: memoryTarget,
				measured:
					`${formatNumber(resilient.bytesPerSession)} vs ${formatNumber(memorystore.bytesPerSession)} B/session ` +
					`(marginal ${formatNumber(resilient.marginalBytesPerSession)} vs ${formatNumber(memorystore.marginalBytesPerSession)})`,
				met: resilient.bytesPerSession <= memorystore.bytesPerSession,
			});
		} else {
			notRun(memoryTarget);
		}
	} else {
		notRun(memoryTarget);
	}

	if (results.failover) {
		const failover = results.failover;
		const budget = failover.deadlineMs + 50;
		rows.push(
			{
				target: 'failover: zero non-2xx',
				measured: `${failover.failed} of ${formatNumber(failover.requests)}`,
				met: failover.failed === 0,
			},
			{
				target: `failover: worst latency < timeoutMs + 50 ms (${budget} ms)`,
				measured: `${formatMs(failover.worstMs)} ms`,
				met: failover.worstMs < budget,
			},
			{
				target: 'failover: back on Redis ≤ 2 s after Redis returns',
				measured:
					failover.restartToRecoverMs === undefined ? 'no recovery' : `${formatNumber(failover.restartToRecoverMs)} ms`,
				met: failover.restartToRecoverMs !== undefined && failover.restartToRecoverMs <= 2000,
			},
		);
	} else {
		notRun('failover: zero non-2xx, worst latency, time to recover');
	}

	return rows;
};

/** One line on how much other processes disturbed each part that ran. */
export const disturbanceLine = (results: AllResults): string => {
	const parts: string[] = [];
	if (results.throughput) {
		const shares = results.throughput.scenarios.flatMap((scenario) =>
			scenario.stores.flatMap((store) => store.rounds.map((round) => round.othersCpu)),
		);
		parts.push(`throughput ${othersCpuText(shares)}`);
	}

	if (results.latency) {
		const shares = results.latency.scenarios.flatMap((scenario) => scenario.loopback.map((round) => round.othersCpu));
		parts.push(
			`latency with Redis 2 ms away ${othersCpuText([results.latency.linkOthersCpu])}, loopback requests/s ${othersCpuText(shares)}`,
		);
	}

	if (results.storeOps) parts.push(`store operations ${othersCpuText([results.storeOps.othersCpu])}`);
	if (results.failover) parts.push(`failover ${othersCpuText([results.failover.othersCpu])}`);
	return `Other processes' share of the CPU while measuring: ${parts.join('; ')}.`;
};

export const targetsMarkdown = (rows: readonly TargetRow[], info: RunInfo, results: AllResults): string =>
	[
		'# Targets',
		'',
		runInfoLine(info),
		disturbanceLine(results),
		'',
		markdownTable(
			['target', 'measured', 'result'],
			rows.map((row) => [row.target, row.measured, resultText(row)]),
		),
		'',
	].join('\n');

const LINK_LABELS: Readonly<Record<string, string>> = {
	read: 'read-only request on a session this instance has seen',
	write: 'request that changes its session',
	ratelimit: 'rate-limited read',
	login: 'login',
};

/**
 * How often ResilientStore's near cache may prove its connection with a PING at most,
 * with the defaults: half of `nearCacheMaxLagMs`.
 */
const PING_EVERY_MS = storeDefaults.nearCacheMaxLagMs / 2;

const formatSeconds = (ms: number): string => (ms / 1000).toFixed(1);

/** Latency with Redis 2 ms away: ResilientStore's median at most this share of connect-redis's. */
export const LATENCY_TARGETS: Readonly<Record<string, number>> = { read: 0.35, write: 0.65, ratelimit: 0.55, login: 1 };

/** Loopback requests/s: ResilientStore at least this share of connect-redis's, every kind. */
export const LOOPBACK_TARGET = 1.05;

/** The targets the latency part measures. */
export const latencyTargets = (result: LatencyResult): TargetRow[] => {
	const rows: TargetRow[] = [];
	const away = `Redis ${2 * result.options.linkDelayMs} ms away`;
	for (const { scenario, skipped, link, latencyRatio } of result.scenarios) {
		const bound = LATENCY_TARGETS[scenario.id]!;
		const target =
			bound === 1
				? `${away}: ${LINK_LABELS[scenario.id]}, median latency ≤ connect-redis's`
				: `${away}: ${LINK_LABELS[scenario.id]}, median latency ≤ ${bound.toFixed(2)} × connect-redis`;
		if (scenario.id === 'read') {
			const zero = `${away}: ${LINK_LABELS.read}, 0 Redis round trips (the near cache's PINGs, on a clock, apart)`;
			const { pings, spanMs } = link.resilient;
			// The near cache sends a PING once a read is served past half of its lag bound
			// since Redis last answered: at most one per half bound of the time measured.
			const allowedPings = Math.floor(spanMs / PING_EVERY_MS) + 1;
			rows.push(
				skipped
					? { target: zero, measured: `skipped (${skipped})`, met: undefined }
					: {
							target: zero,
							measured:
								`${perRequest(link.resilient.roundTripsPerRequest)} per request (${link.resilient.requestsWithRoundTrips} of ${link.resilient.requests} requests made any); ` +
								`${pings} PING round trips in ${formatSeconds(spanMs)} s (at most ${allowedPings}: one per ${PING_EVERY_MS} ms); ` +
								`connect-redis ${perRequest(link['connect-redis'].roundTripsPerRequest)}`,
							// No round trip in the rounds, those after a round's last response included.
							met: link.resilient.roundTripsPerRequest === 0 && pings <= allowedPings,
						},
			);
		}

		rows.push(
			skipped
				? { target, measured: `skipped (${skipped})`, met: undefined }
				: {
						target,
						measured: `${latencyRatio.toFixed(2)} × (${formatMs(link.resilient.p50Ms)} vs ${formatMs(link['connect-redis'].p50Ms)} ms)`,
						met: latencyRatio <= bound,
					},
		);
	}

	for (const { scenario, skipped, loopbackRatio, loopbackRequestsPerSecond, loopback } of result.scenarios) {
		const target = `loopback requests/s ≥ ${LOOPBACK_TARGET.toFixed(2)} × connect-redis (median of per-round ratios): ${scenario.id}`;
		rows.push(
			skipped
				? { target, measured: `skipped (${skipped})`, met: undefined }
				: {
						target,
						measured: `${loopbackRatio.toFixed(2)} over ${loopback.length} rounds (medians ${formatNumber(loopbackRequestsPerSecond.resilient)} vs ${formatNumber(loopbackRequestsPerSecond['connect-redis'])} req/s)`,
						met: loopbackRatio >= LOOPBACK_TARGET,
					},
		);
	}

	return rows;
};

export const latencyMarkdown = (result: LatencyResult, info: RunInfo): string => {
	const { options } = result;
	const label = (kind: (typeof LATENCY_KINDS)[number]) => STORE_LABELS[kind];
	const measured = result.scenarios.filter((scenario) => !scenario.skipped);
	const lines = [
		'# Latency with a distant Redis, and round trips per request',
		'',
		`ResilientStore and connect-redis 9, each behind Express 5 + express-session as in the throughput part, with`,
		options.loopbackSessions === options.sessions
			? `${formatNumber(options.sessions)} logged-in sessions per server.`
			: `${formatNumber(options.sessions)} logged-in sessions per server with Redis 2 ms away, ${formatNumber(options.loopbackSessions)} on loopback.`,
		'',
		`**Redis ${2 * options.linkDelayMs} ms away.** Both servers reach redis-server through a TCP proxy that delays every chunk by`,
		`${options.linkDelayMs} ms in each direction (Node timers: a little more in practice; \`PING\` through it took a median`,
		`${formatMs(result.linkPingMs)} ms in this run, ${formatMs(result.loopbackPingMs)} ms without it). Requests are sent one at a time on a kept-alive`,
		`connection: after ${options.warmupRequests} warm-up requests per store and kind, the stores taking turns request by request`,
		`(every session is read by its server before measuring), ${options.latencyRounds} rounds of ${options.requestsPerRound} requests per store, the stores`,
		"alternating (A B, B A, …): neither server idles past ResilientStore's `nearCacheMaxLagMs` (1 s), after which its",
		'first read would go to Redis.',
		'',
		'- **p50 / p90 ms**: latency of one request at the client, from sending it to the end of the response.',
		'- **round trips/req**: round trips to Redis counted by the proxy, over the requests. On each connection,',
		'  data from the client counts as one round trip when everything sent before on that connection has had',
		'  an answer; commands sent on before an answer arrives (pipelined, in one write or several) count once.',
		'  Two connections waiting on Redis at the same time count twice. What a store sends after the response',
		'  (until the next round) counts for its requests.',
		'- **with any**: requests during which at least one round trip was counted.',
		`- **PINGs alone**: round trips in which a store sent nothing but \`PING\`, during its rounds, and the time from the`,
		`  first round of the request kind to the end of its last (both stores'). ResilientStore's near cache proves that its`,
		`  connection still delivers invalidations with one, once a read is served past half of \`nearCacheMaxLagMs\` since`,
		`  Redis last answered: at most one per ${PING_EVERY_MS} ms with the defaults, whatever the number of requests, and none`,
		'  while other commands answer. No request waits for it. They are left out of the two columns before.',
		'',
		`**Loopback requests/s.** ${options.loopbackProcesses} server process(es) per store, on redis-server directly, each loaded in turn by autocannon with ${options.connections} connections:`,
		`${options.warmupS} s of warm-up per process, then ${options.loopbackRounds} rounds of ${options.roundS} s per process, the stores alternating (A B, B A, …).`,
		"A store's requests/s in a round is the mean over its processes (two processes of the same code differ by up to ±8 % here);",
		'the ratio is taken in each round, between the two stores measured back to back; its median is reported.',
		'',
		runInfoLine(info),
		`Other processes took ${othersCpuText([result.linkOthersCpu])} of the machine's CPU while Redis was away, and ` +
			`${othersCpuText(result.scenarios.flatMap((scenario) => scenario.loopback.map((round) => round.othersCpu)))} during the loopback rounds.`,
		'',
		`## Redis ${2 * options.linkDelayMs} ms away, one request at a time`,
		'',
		markdownTable(
			[
				'request',
				...LATENCY_KINDS.flatMap((kind) => [
					`${label(kind)} p50 ms`,
					'p90 ms',
					'round trips/req',
					'with any',
					'PINGs alone',
				]),
				'p50 vs connect-redis',
				'target',
			],
			measured.map(({ scenario, link, latencyRatio }) => [
				`${LINK_LABELS[scenario.id]} (\`${scenario.method} ${scenario.path}\`)`,
				...LATENCY_KINDS.flatMap((kind) => [
					formatMs(link[kind].p50Ms),
					formatMs(link[kind].p90Ms),
					perRequest(link[kind].roundTripsPerRequest),
					`${link[kind].requestsWithRoundTrips}/${link[kind].requests}`,
					`${link[kind].pings} in ${formatSeconds(link[kind].spanMs)} s`,
				]),
				latencyRatio.toFixed(2),
				`≤ ${LATENCY_TARGETS[scenario.id]!.toFixed(2)}`,
			]),
			'lrrrrrrrrrrrr',
		),
		'',
	];
	const problems = measured.flatMap(({ scenario, link, loopbackFallbacks }) => [
		...LATENCY_KINDS.flatMap((kind) => [
			...(link[kind].non2xx ? [`${label(kind)}, ${scenario.id}: ${link[kind].non2xx} non-2xx responses`] : []),
			...(link[kind].fallbacks
				? [`${label(kind)}, ${scenario.id}: fell back to memory ${link[kind].fallbacks} time(s) while Redis was away`]
				: []),
			...(link[kind].notFromRedis
				? [`${label(kind)}, ${scenario.id}: ${link[kind].notFromRedis} responses not served from Redis`]
				: []),
		]),
		...(loopbackFallbacks
			? [`${label('resilient')}, ${scenario.id}: fell back to memory ${loopbackFallbacks} time(s) during the loopback rounds`]
			: []),
	]);
	if (problems.length > 0) lines.push(...problems.map((problem) => `- ${problem}`), '');
	for (const { scenario, skipped } of result.scenarios) {
		if (skipped) lines.push(`${LINK_LABELS[scenario.id]}: skipped (${skipped}).`, '');
	}

	lines.push(
		'## Loopback requests/s',
		'',
		markdownTable(
			[
				'request',
				`${label('resilient')} req/s`,
				`${label('connect-redis')} req/s`,
				'ratio (median of rounds)',
				'per-round ratios',
				'non-2xx',
			],
			measured.map(({ scenario, loopback, loopbackRatio, loopbackRequestsPerSecond, loopbackNon2xx }) => [
				`${LINK_LABELS[scenario.id]} (\`${scenario.method} ${scenario.path}\`)`,
				formatNumber(loopbackRequestsPerSecond.resilient),
				formatNumber(loopbackRequestsPerSecond['connect-redis']),
				loopbackRatio.toFixed(2),
				loopback.map((round) => round.ratio.toFixed(2)).join(' '),
				`${loopbackNon2xx.resilient} / ${loopbackNon2xx['connect-redis']}`,
			]),
			'lrrrlr',
		),
		'',
		'## Targets',
		'',
		markdownTable(
			['target', 'measured', 'result'],
			latencyTargets(result).map((row) => [row.target, row.measured, resultText(row)]),
		),
		'',
	);
	return lines.join('\n');
};
