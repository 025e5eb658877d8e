/**
 * What the store's metrics cost on the request path: one ResilientStore server (Redis,
 * rate limit) loaded by autocannon in rounds, its metrics (`collectMetrics()`) turned on
 * and off between rounds, in the same process (same connections, same JIT state: the
 * metrics are the only difference). Rounds go in pairs whose order alternates (off on,
 * on off, …) so that drift of the machine falls on both alike; each pair gives the ratio
 * of requests/s with metrics to without, and the result is the median ratio per scenario.
 *
 * On a shared machine, the load of other processes moves requests/s from second to
 * second by far more than metrics could, so each round also measures the CPU time the
 * server spent per request (`process.cpuUsage()`), which other processes barely move.
 * The scenarios are those where metrics do something on every request: a write (one Redis
 * command, timed) and a rate-limited read (a command and a decision).
 */
import { Registry } from 'prom-client';
import { collectMetrics, ResilientStore, silentLogger } from '../lib/index.js';
import { observersOf } from '../lib/operations/observers.js';
import { type LoadRequest, runLoad } from './load.js';
import { sleep } from './processes.js';
import { type RunInfo, runInfoLine } from './report.js';
import { logIn, type ServerProcess, startServer } from './server-process.js';
import { median } from './stats.js';
import type { StoreUrls } from './stores.js';
import { SCENARIOS, type ScenarioId } from './throughput.js';

export interface MetricsOverheadOptions {
	readonly rounds: number;
	readonly roundS: number;
	readonly warmupS: number;
	readonly connections: number;
	readonly sessions: number;
}

/** One round: requests/s and server CPU microseconds per request. */
interface Measured {
	readonly rate: number;
	readonly cpuPerRequest: number;
}

export interface MetricsPair {
	readonly off: Measured;
	readonly on: Measured;
	/** Requests/s with metrics over requests/s without. */
	readonly rateRatio: number;
	/** CPU per request with metrics over CPU per request without. */
	readonly cpuRatio: number;
}

export interface MetricsScenarioResult {
	readonly id: ScenarioId;
	readonly title: string;
	readonly pairs: MetricsPair[];
	readonly medianOff: number;
	readonly medianOn: number;
	readonly medianRateRatio: number;
	readonly medianCpuOff: number;
	readonly medianCpuOn: number;
	readonly medianCpuRatio: number;
}

export interface MetricsOverheadResult {
	readonly options: MetricsOverheadOptions;
	readonly scenarios: MetricsScenarioResult[];
	/** What the metrics counted over the rounds they were on: proof that they were. */
	readonly scraped: { readonly redisCommands: number; readonly decisions: number };
	/** Nanoseconds per report, measured in this process: what metrics add to a request, alone. */
	readonly perCallNs: { readonly redisCommand: number; readonly decision: number; readonly withoutMetrics: number };
}

/** Nanoseconds per call of `call`, the median of 5 runs of a million calls after a warm-up. */
const nanosPerCall = (call: () => void): number => {
	const calls = 1_000_000;
	for (let i = 0; i < calls / 10; i++) call();
	const runs: number[] = [];
	for (let run = 0; run < 5; run++) {
		const started = process.hrtime.bigint();
		for (let i = 0; i < calls; i++) call();
		runs.push(Number(process.hrtime.bigint() - started) / calls);
	}

	return median(runs);
};

/** What one report costs: a Redis command timed into the histogram, a decision counted, and a report nobody watches. */
const measureCalls = async (): Promise<MetricsOverheadResult['perCallNs']> => {
	const store = new ResilientStore({ logger: silentLogger });
	const unwatched = new ResilientStore({ logger: silentLogger });
	try {
		const metrics = collectMetrics({ store, register: new Registry() });
		const observers = observersOf(store);
		const perCall = {
			redisCommand: nanosPerCall(() => observers.redisCommand('SET', 0.0012)),
			decision: nanosPerCall(() => observers.rateLimit('allowed')),
			withoutMetrics: nanosPerCall(() => observersOf(unwatched).rateLimit('allowed')),
		};
		metrics.close();
		return perCall;
	} finally {
		await Promise.all([store.close(), unwatched.close()]);
	}
};

const MEASURED: readonly ScenarioId[] = ['write', 'ratelimit'];

/** Sums the samples of `name` in a Prometheus text exposition. */
const sumOf = (text: string, name: string): number =>
	text
		.split('\n')
		.filter((line) => line.startsWith(name))
		.reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);

export const runMetricsOverhead = async (
	urls: StoreUrls,
	options: MetricsOverheadOptions,
	log: (line: string) => void,
): Promise<MetricsOverheadResult> => {
	const server: ServerProcess = await startServer('resilient', urls);
	try {
		const cookies = await logIn(server.port, options.sessions);
		const scraped = { redisCommands: 0, decisions: 0 };
		const scenarios: MetricsScenarioResult[] = [];
		for (const scenario of SCENARIOS.filter((candidate) => MEASURED.includes(candidate.id))) {
			const request: LoadRequest = { method: scenario.method, path: scenario.path, cookies };
			const round = async (metrics: boolean, durationS: number): Promise<Measured> => {
				await server.setMetrics(metrics);
				const cpuBefore = await server.cpuMicros();
				const result = await runLoad({ port: server.port, request, durationS, connections: options.connections });
				// Let the last store calls of the round land before the next one starts.
				await sleep(50);
				const cpu = (await server.cpuMicros()) - cpuBefore;
				if (result.non2xx > 0 || result.errors > 0) {
					throw new Error(`${scenario.id}: ${result.non2xx} non-2xx answers, ${result.errors} errors`);
				}

				if (metrics) {
					// What this round's metrics counted: proof that they were on.
					const text = await (await fetch(`http://127.0.0.1:${server.port}/metrics`)).text();
					scraped.redisCommands += sumOf(text, 'resilient_session_redis_operation_duration_seconds_count');
					scraped.decisions += sumOf(text, 'resilient_session_rate_limit_decisions_total');
				}

				return { rate: result.requestsPerSecond, cpuPerRequest: cpu / result.responses };
			};

			await round(false, options.warmupS);
			await round(true, options.warmupS);
			const pairs: MetricsPair[] = [];
			for (let pair = 1; pair <= options.rounds; pair++) {
				const order = pair % 2 === 1 ? [false, true] : [true, false];
				const measured = new Map<boolean, Measured>();
				for (const metrics of order) measured.set(metrics, await round(metrics, options.roundS));
				const off = measured.get(false)!;
				const on = measured.get(true)!;
				pairs.push({ off, on, rateRatio: on.rate / off.rate, cpuRatio: on.cpuPerRequest / off.cpuPerRequest });
				log(
					`metrics: ${scenario.id} pair ${pair}/${options.rounds}: off ${Math.round(off.rate)}/s ` +
						`${Math.round(off.cpuPerRequest)} µs CPU/request, on ${Math.round(on.rate)}/s ` +
						`${Math.round(on.cpuPerRequest)} µs CPU/request`,
				);
			}

			scenarios.push({
				id: scenario.id,
				title: scenario.title,
				pairs,
				medianOff: median(pairs.map(({ off }) => off.rate)),
				medianOn: median(pairs.map(({ on }) => on.rate)),
				medianRateRatio: median(pairs.map(({ rateRatio }) => rateRatio)),
				medianCpuOff: median(pairs.map(({ off }) => off.cpuPerRequest)),
				medianCpuOn: median(pairs.map(({ on }) => on.cpuPerRequest)),
				medianCpuRatio: median(pairs.map(({ cpuRatio }) => cpuRatio)),
			});
		}

		if (scraped.redisCommands === 0 || scraped.decisions === 0) {
			throw new Error('the metrics counted nothing: the comparison would mean nothing');
		}

		return { options, scenarios, scraped, perCallNs: await measureCalls() };
	} finally {
		await server.stop();
	}
};

const ratio = (value: number) => `${value.toFixed(3)} ×`;

export const metricsMarkdown = (result: MetricsOverheadResult, info: RunInfo): string =>
	[
		'# Metrics overhead',
		'',
		runInfoLine(info),
		'',
		`One ResilientStore server on Redis, its \`collectMetrics()\` turned on and off between rounds: ` +
			`${result.options.rounds} pairs of ${result.options.roundS}-second rounds per scenario (order alternating), ` +
			`${result.options.connections} connections, ${result.options.sessions} logged-in sessions. ` +
			'Ratios: with metrics over without, median of the pairs’ ratios. ' +
			'CPU: the server process’s user + system time per request.',
		'',
		'| request | req/s off | req/s on | req/s ratio | CPU µs/request off | on | CPU ratio |',
		'|---|---:|---:|---:|---:|---:|---:|',
		...result.scenarios.map(
			(scenario) =>
				`| ${scenario.title} | ${Math.round(scenario.medianOff)} | ${Math.round(scenario.medianOn)} | ` +
				`**${ratio(scenario.medianRateRatio)}** | ${Math.round(scenario.medianCpuOff)} | ` +
				`${Math.round(scenario.medianCpuOn)} | **${ratio(scenario.medianCpuRatio)}** |`,
		),
		'',
		'Ratios of each pair (req/s; CPU):',
		'',
		...result.scenarios.map(
			(scenario) =>
				`- ${scenario.id}: ${scenario.pairs.map((pair) => pair.rateRatio.toFixed(3)).join(', ')}; ` +
				`${scenario.pairs.map((pair) => pair.cpuRatio.toFixed(3)).join(', ')}`,
		),
		'',
		`With metrics on, they counted ${result.scraped.redisCommands} timed Redis commands and ` +
			`${result.scraped.decisions} rate-limit decisions.`,
		'',
		`One report alone, in the benchmark's process: a Redis command timed into the histogram ` +
			`${result.perCallNs.redisCommand.toFixed(0)} ns, a rate-limit decision counted ` +
			`${result.perCallNs.decision.toFixed(0)} ns, a report on a store without metrics ` +
			`${result.perCallNs.withoutMetrics.toFixed(0)} ns.`,
		'',
	].join('\n');
