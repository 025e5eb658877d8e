/**
 * `npm run bench`: ResilientStore against the stores users would pick instead.
 *
 *   npm run bench                         everything (about 14 minutes)
 *   npm run bench -- --only failover      one or more parts: throughput, latency, store-ops, memory, failover, metrics
 *   npm run bench -- --sessions 5000      more logged-in users per server (default 64)
 *   npm run bench -- --quick              a short smoke run; writes no results
 *
 * Everything runs on 127.0.0.1 against a private redis-server (started here on a free
 * port, so `redis-server` must be on PATH), with bounded durations; every child process
 * is killed on exit. Results go to bench/results/ and the tables to stdout.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { defaultFailoverOptions, runFailover } from './failover.js';
import { failoverSvg } from './failover-chart.js';
import { runLatency } from './latency.js';
import { runMemory } from './memory.js';
import { metricsMarkdown, runMetricsOverhead } from './metrics-overhead.js';
import { killChildrenOnExit, ROOT } from './processes.js';
import { BenchRedis, freePort, redisServerVersion } from './redis-server.js';
import {
	type AllResults,
	evaluateTargets,
	failoverMarkdown,
	failoverSummary,
	latencyMarkdown,
	memoryMarkdown,
	type RunInfo,
	storeOpsMarkdown,
	targetsMarkdown,
	throughputMarkdown,
} from './report.js';
import { runStoreOps } from './store-ops.js';
import { runThroughput } from './throughput.js';

const PARTS = ['throughput', 'latency', 'store-ops', 'memory', 'failover', 'metrics'] as const;

type Part = (typeof PARTS)[number];

const RESULTS = path.join(ROOT, 'bench', 'results');

const USAGE = `Usage: npm run bench -- [options]

  --only <parts>         comma-separated: ${PARTS.join(', ')} (default: all)
  --rounds <n>           measured rounds per store and scenario (default 5; the latency
                         part's loopback rounds: 11, never fewer than 6 unless --quick)
  --round-seconds <s>    length of one throughput or loopback round (default 2)
  --connections <n>      autocannon connections (default 16)
  --sessions <n>         logged-in sessions per server that the session requests take turns
                         with, in the throughput part, the latency part's loopback step and
                         the metrics part (default 64; above ResilientStore's memory.max,
                         10,000, its warm copies no longer hold every session)
  --quick                short rounds, fewer repeats; writes no results
  --help                 this text`;

const parseOptions = () => {
	const { values } = parseArgs({
		options: {
			only: { type: 'string' },
			rounds: { type: 'string' },
			'round-seconds': { type: 'string' },
			connections: { type: 'string' },
			sessions: { type: 'string' },
			quick: { type: 'boolean', default: false },
			help: { type: 'boolean', default: false },
		},
	});
	if (values.help) {
		console.log(USAGE);
		process.exit(0);
	}

	const parts = values.only ? values.only.split(',').map((part) => part.trim()) : [...PARTS];
	const unknown = parts.filter((part) => !PARTS.includes(part as Part));
	if (unknown.length > 0) throw new Error(`unknown part(s) ${unknown.join(', ')}\n\n${USAGE}`);
	const number = (value: string | undefined, fallback: number) => {
		if (value === undefined) return fallback;
		const parsed = Number(value);
		if (!(parsed > 0)) throw new Error(`expected a positive number, got ${value}\n\n${USAGE}`);
		return parsed;
	};

	const quick = values.quick;
	const sessions = number(values.sessions, 64);
	if (!Number.isInteger(sessions)) throw new Error(`--sessions takes a whole number, got ${values.sessions}\n\n${USAGE}`);
	return {
		parts: new Set(parts as Part[]),
		quick,
		throughput: {
			rounds: number(values.rounds, quick ? 2 : 5),
			roundS: number(values['round-seconds'], quick ? 1 : 2),
			warmupS: quick ? 0.5 : 1,
			connections: number(values.connections, 16),
			sessions,
			censusRequests: quick ? 20 : 100,
			maxRepeats: quick ? 0 : 1,
		},
		latency: {
			linkDelayMs: 1,
			// The warm-up reads every session of the slow link's servers: they keep 64.
			sessions: 64,
			loopbackSessions: sessions,
			warmupRequests: quick ? 64 : 128,
			// Short rounds: a server waits through the other's rounds (two in a row, A B B A),
			// well under ResilientStore's nearCacheMaxLagMs (1 s), past which an idle
			// instance's first read goes to Redis.
			latencyRounds: quick ? 2 : 30,
			requestsPerRound: quick ? 20 : 10,
			loopbackRounds: quick ? 2 : Math.max(6, number(values.rounds, 11)),
			loopbackProcesses: quick ? 1 : 2,
			roundS: number(values['round-seconds'], quick ? 1 : 2),
			warmupS: quick ? 0.5 : 1,
			connections: number(values.connections, 16),
		},
		storeOps: { rounds: quick ? 2 : 5, callsPerRound: quick ? 500 : 3_000, sessions: 100, cpuRequestsPerRound: quick ? 2_000 : 20_000 },
		memory: { sessions: 10_000, repeats: quick ? 1 : 2 },
		metrics: {
			rounds: number(values.rounds, quick ? 2 : 15),
			roundS: number(values['round-seconds'], quick ? 1 : 2),
			warmupS: quick ? 0.5 : 1,
			connections: number(values.connections, 16),
			sessions,
		},
		failover: defaultFailoverOptions,
	};
};

const runInfo = (redisVersion: string): RunInfo => {
	const git = (...args: string[]) => {
		try {
			return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
		} catch {
			return undefined;
		}
	};

	const commit = git('rev-parse', '--short', 'HEAD');
	const dirty = git('status', '--porcelain', '--', 'lib');
	const cpus = os.cpus();
	return {
		date: new Date()
			.toISOString()
			.replace(/:\d\d\.\d+Z$/, ' UTC')
			.replace('T', ' '),
		commit: commit ? `commit ${commit}${dirty ? ' (with uncommitted changes in lib/)' : ''}` : 'an unknown commit',
		node: process.version,
		redis: redisVersion,
		cpus: `${cpus.length} × ${cpus[0]?.model.trim() ?? 'unknown CPU'}`,
		loadAverage: os
			.loadavg()
			.map((load) => load.toFixed(2))
			.join(' / '),
	};
};

const main = async (): Promise<void> => {
	const options = parseOptions();
	const redisVersion = redisServerVersion();
	if (!redisVersion) {
		console.error(
			'npm run bench needs redis-server on PATH (it starts a private one on a free port).\n' +
				'Install Redis, e.g. `apt-get install redis-server` (Debian/Ubuntu) or `brew install redis` (macOS), and run it again.',
		);
		process.exit(1);
	}

	killChildrenOnExit();
	const started = Date.now();
	const log = (line: string) => console.log(`[${((Date.now() - started) / 1000).toFixed(0).padStart(3)} s] ${line}`);
	const info = runInfo(redisVersion);
	log(
		`resilient-session benchmarks: ${[...options.parts].join(', ')}${options.quick ? ' (quick: no results written)' : ''}`,
	);
	log(`${info.cpus}; Node ${info.node}; redis-server ${info.redis}; load average ${info.loadAverage}`);
	if (os.loadavg()[0]! > 1) {
		log(`warning: the machine is already busy (load average ${os.loadavg()[0]!.toFixed(2)}): figures will be noisy`);
	}

	const results: { -readonly [K in keyof AllResults]: AllResults[K] } = {};
	const documents = new Map<string, string>();
	const needsRedis = ['throughput', 'latency', 'store-ops', 'memory', 'metrics'].some((part) => options.parts.has(part as Part));
	const redis = needsRedis ? await BenchRedis.start() : undefined;
	try {
		const urls = { redisUrl: redis?.url ?? '', downUrl: `redis://127.0.0.1:${await freePort()}` };
		if (redis && options.parts.has('throughput')) {
			log('throughput: starting one server per store');
			results.throughput = await runThroughput(redis, urls, options.throughput, log);
			documents.set('throughput.md', throughputMarkdown(results.throughput, info));
		}

		if (redis && options.parts.has('latency')) {
			results.latency = await runLatency(redis, urls, options.latency, log);
			documents.set('latency.md', latencyMarkdown(results.latency, info));
		}

		if (options.parts.has('store-ops')) {
			log('store-ops: get/set/touch one at a time');
			results.storeOps = await runStoreOps(urls, options.storeOps, log);
			documents.set('store-ops.md', storeOpsMarkdown(results.storeOps, info));
		}

		if (redis && options.parts.has('metrics')) {
			log('metrics: one server, its collectMetrics() turned on and off between rounds');
			documents.set('metrics.md', metricsMarkdown(await runMetricsOverhead(urls, options.metrics, log), info));
		}

		if (options.parts.has('memory')) {
			log(`memory: ${options.memory.sessions} sessions per store`);
			results.memory = await runMemory(urls, options.memory, log);
			documents.set('memory.md', memoryMarkdown(results.memory, info));
		}
	} finally {
		await redis?.stop();
	}

	if (options.parts.has('failover')) {
		log(
			`failover: ${options.failover.durationS} s of steady load, Redis killed at ${options.failover.killAtS} s, back at ${options.failover.restartAtS} s`,
		);
		results.failover = await runFailover(options.failover, log);
		documents.set('failover.md', failoverMarkdown(results.failover, info));
		documents.set('failover.svg', failoverSvg(results.failover));
	}

	const targets = evaluateTargets(results);
	if (PARTS.every((part) => options.parts.has(part)))
		documents.set('targets.md', targetsMarkdown(targets, info, results));

	if (!options.quick) {
		mkdirSync(RESULTS, { recursive: true });
		for (const [name, content] of documents) writeFileSync(path.join(RESULTS, name), content);
		log(`wrote ${[...documents.keys()].map((name) => `bench/results/${name}`).join(', ')}`);
	}

	log(`done in ${((Date.now() - started) / 1000).toFixed(0)} s`);
	console.log();
	for (const [name, content] of documents) {
		if (name.endsWith('.svg')) continue;
		// The failover table has a row per bucket: its summary is enough here.
		if (name === 'failover.md')
			console.log(['# Failover timeline', '', ...failoverSummary(results.failover!), ''].join('\n'));
		else console.log(content);
	}

	// A partial run: only the targets of the parts that ran.
	if (!documents.has('targets.md')) {
		console.log(
			targetsMarkdown(
				targets.filter((row) => row.measured !== 'not run'),
				info,
				results,
			),
		);
	}
	process.exit(0);
};

main().catch((error: unknown) => {
	console.error(error instanceof Error ? error.message : error);
	process.exit(1);
});
