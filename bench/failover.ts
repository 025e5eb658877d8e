/**
 * Failover timeline: steady load on ResilientStore while its Redis is killed (SIGKILL)
 * and, later, started again (empty, as a Redis without persistence comes back).
 *
 * The load is paced: requests are sent at a fixed rate from a few loops here (a bounded
 * HTTP loop, one connection per loop), to a server under test in its own process. Most requests read a logged-in session, some
 * change it; each is recorded with its start time, latency, status and the backend that
 * served it (`X-Backend`). The server reports the store's `fallback`, `recover` and
 * `writeback` events with their times.
 *
 * Per bucket of 250 ms: successful requests (by backend), non-2xx or failed requests,
 * worst latency. Also: time from the kill to the fallback, and from Redis accepting
 * connections again to the store's `recover` event.
 */
import http from 'node:http';
import { storeDefaults } from '../lib/index.js';
import { othersShare, sampleCpu } from './cpu-usage.js';
import { sleep, wallClockMs } from './processes.js';
import { BenchRedis, freePort } from './redis-server.js';
import { logIn, type StoreEvent, startServer } from './server-process.js';
import { latencySummary } from './stats.js';

export interface FailoverOptions {
	readonly durationS: number;
	readonly killAtS: number;
	readonly restartAtS: number;
	readonly bucketMs: number;
	/** Requests sent per second. */
	readonly ratePerS: number;
	/** Share of requests that change their session; the rest only read it. */
	readonly writeShare: number;
	/** Logged-in sessions the requests take turns with. */
	readonly sessions: number;
	/** Concurrent request loops, one connection each. */
	readonly workers: number;
	/** A request without an answer by then counts as failed. */
	readonly requestTimeoutMs: number;
}

export interface RequestRecord {
	/** Milliseconds since the start of the run, when the request was sent. */
	readonly startMs: number;
	readonly latencyMs: number;
	/** HTTP status, or 0 when the request failed without one. */
	readonly status: number;
	readonly backend: string | undefined;
	readonly write: boolean;
}

export interface Bucket {
	readonly startMs: number;
	readonly okRedis: number;
	readonly okMemory: number;
	readonly failed: number;
	readonly worstMs: number;
}

export interface FailoverResult {
	readonly options: FailoverOptions;
	readonly deadlineMs: number;
	readonly requests: number;
	readonly failed: number;
	/** Failed requests by status (`0`: no answer). */
	readonly failedByStatus: Record<string, number>;
	readonly worstMs: number;
	readonly p50Ms: number;
	readonly p99Ms: number;
	/** Times since the start of the run, in milliseconds. */
	readonly killedAtMs: number;
	readonly restartedAtMs: number;
	readonly fallbackAtMs: number | undefined;
	readonly recoverAtMs: number | undefined;
	/** From Redis accepting connections again to the store's `recover` event. */
	readonly restartToRecoverMs: number | undefined;
	readonly killToFallbackMs: number | undefined;
	readonly writeBack: unknown;
	readonly servedByMemory: number;
	readonly buckets: Bucket[];
	/** Share of the machine's CPU other processes took during the run (Linux only). */
	readonly othersCpu: number | undefined;
}

export const defaultFailoverOptions: FailoverOptions = Object.freeze({
	durationS: 14,
	killAtS: 3,
	restartAtS: 8,
	bucketMs: 250,
	ratePerS: 1_000,
	writeShare: 0.1,
	sessions: 64,
	workers: 16,
	requestTimeoutMs: 5_000,
});

/** Sends one request and records how it went; never rejects. */
const send = (
	agent: http.Agent,
	port: number,
	cookie: string,
	write: boolean,
	t0: number,
	timeoutMs: number,
): Promise<RequestRecord> =>
	new Promise((resolve) => {
		const started = wallClockMs();
		const finish = (status: number, backend: string | undefined) =>
			resolve({ startMs: started - t0, latencyMs: wallClockMs() - started, status, backend, write });
		const request = http.request(
			{
				agent,
				host: '127.0.0.1',
				port,
				method: write ? 'POST' : 'GET',
				path: write ? '/write' : '/read',
				headers: { cookie },
				timeout: timeoutMs,
			},
			(response) => {
				response.resume();
				response.once('end', () => finish(response.statusCode ?? 0, response.headers['x-backend'] as string));
				response.once('error', () => finish(0, undefined));
			},
		);
		request.once('timeout', () => request.destroy(new Error('timeout')));
		request.once('error', () => finish(0, undefined));
		request.end();
	});

/**
 * Sends about `ratePerS` requests a second for `durationS` from `workers` loops, each on
 * its own schedule, then waits for the last answers. A loop sends when its next request
 * is due, or as soon as its previous request is answered if that is later: below the
 * server's capacity the rate is steady whatever the answers do, and above it the queue
 * of waiting requests stays bounded.
 */
const steadyLoad = async (
	port: number,
	cookies: readonly string[],
	options: FailoverOptions,
	t0: number,
): Promise<RequestRecord[]> => {
	const agent = new http.Agent({ keepAlive: true, maxSockets: options.workers });
	const records: RequestRecord[] = [];
	const writeEvery = options.writeShare > 0 ? Math.round(1 / options.writeShare) : Infinity;
	const intervalMs = (1000 * options.workers) / options.ratePerS;
	const endAt = t0 + options.durationS * 1000;
	let sent = 0;
	const worker = async (index: number) => {
		// Workers start spread over one interval, not all at once.
		let dueAt = t0 + (index * intervalMs) / options.workers;
		while (dueAt < endAt) {
			const waitMs = dueAt - wallClockMs();
			if (waitMs > 0) await sleep(waitMs);
			const n = sent++;
			records.push(
				await send(agent, port, cookies[n % cookies.length]!, n % writeEvery === 0, t0, options.requestTimeoutMs),
			);
			dueAt = Math.max(dueAt + intervalMs, wallClockMs());
		}
	};

	await Promise.all(Array.from({ length: options.workers }, (_, index) => worker(index)));
	agent.destroy();
	return records.sort((a, b) => a.startMs - b.startMs);
};

const bucketize = (records: readonly RequestRecord[], options: FailoverOptions): Bucket[] => {
	const count = Math.ceil((options.durationS * 1000) / options.bucketMs);
	const buckets = Array.from({ length: count }, (_, i) => ({
		startMs: i * options.bucketMs,
		okRedis: 0,
		okMemory: 0,
		failed: 0,
		worstMs: 0,
	}));
	for (const record of records) {
		const bucket = buckets[Math.min(count - 1, Math.floor(record.startMs / options.bucketMs))]!;
		if (record.status >= 200 && record.status < 300) {
			if (record.backend === 'memory') bucket.okMemory++;
			else bucket.okRedis++;
		} else {
			bucket.failed++;
		}

		bucket.worstMs = Math.max(bucket.worstMs, record.latencyMs);
	}

	return buckets;
};

const eventAt = (events: readonly StoreEvent[], name: string, after: number): StoreEvent | undefined =>
	events.find((event) => event.event === name && event.at >= after);

export const runFailover = async (options: FailoverOptions, log: (line: string) => void): Promise<FailoverResult> => {
	const redis = await BenchRedis.start();
	const server = await startServer('resilient', {
		redisUrl: redis.url,
		downUrl: `redis://127.0.0.1:${await freePort()}`,
	});
	try {
		const cookies = await logIn(server.port, options.sessions);
		// Warm-up: the same mix for a second, not recorded.
		await steadyLoad(server.port, cookies, { ...options, durationS: 1 }, wallClockMs());

		const cpuBefore = sampleCpu();
		const t0 = wallClockMs();
		let killedAt = Number.NaN;
		let restartedAt = Number.NaN;
		const faults = (async () => {
			await sleep(t0 + options.killAtS * 1000 - wallClockMs());
			killedAt = wallClockMs();
			await redis.kill();
			log(`failover: Redis killed at ${((killedAt - t0) / 1000).toFixed(2)} s`);
			await sleep(t0 + options.restartAtS * 1000 - wallClockMs());
			await redis.restart();
			restartedAt = wallClockMs();
			log(`failover: Redis accepting connections again at ${((restartedAt - t0) / 1000).toFixed(2)} s`);
		})();
		const records = await steadyLoad(server.port, cookies, options, t0);
		const othersCpu = othersShare(cpuBefore, sampleCpu());
		await faults;
		// A recovery still under way when the load ends is given a little longer.
		const waitUntil = wallClockMs() + 3_000;
		while (!eventAt(server.events, 'recover', restartedAt) && wallClockMs() < waitUntil) await sleep(20);

		const fallback = eventAt(server.events, 'fallback', killedAt);
		const recover = eventAt(server.events, 'recover', restartedAt);
		const writeBack = eventAt(server.events, 'writeback', restartedAt);
		const failedRecords = records.filter((record) => record.status < 200 || record.status >= 300);
		const failedByStatus: Record<string, number> = {};
		for (const record of failedRecords) failedByStatus[record.status] = (failedByStatus[record.status] ?? 0) + 1;
		const { p50, p99, max } = latencySummary(records.map((record) => record.latencyMs));
		return {
			options,
			deadlineMs: storeDefaults.timeoutMs,
			requests: records.length,
			failed: failedRecords.length,
			failedByStatus,
			worstMs: max,
			p50Ms: p50,
			p99Ms: p99,
			killedAtMs: killedAt - t0,
			restartedAtMs: restartedAt - t0,
			fallbackAtMs: fallback && fallback.at - t0,
			recoverAtMs: recover && recover.at - t0,
			restartToRecoverMs: recover && recover.at - restartedAt,
			killToFallbackMs: fallback && fallback.at - killedAt,
			writeBack: writeBack?.detail,
			servedByMemory: records.filter((record) => record.backend === 'memory').length,
			buckets: bucketize(records, options),
			othersCpu,
		};
	} finally {
		await server.stop();
		await redis.stop();
	}
};
