/**
 * Store operations without HTTP: `get`, `set` and `touch` called one at a time, each
 * timed on its own, on ResilientStore (on Redis) and on connect-redis, so that the
 * latency a store adds to a request shows without a load generator's queueing.
 *
 * Rounds are interleaved across the two stores after a warm-up round; percentiles are
 * over every timed call of every round, in microseconds.
 *
 * Then what a store's own work costs the CPU: the calls express-session makes for a
 * read-only request (`get`, then `touch`) and for one that changes its session (`get`,
 * then `set`), 16 requests at a time as under load, and the CPU time this process used
 * (all its threads; Redis's own is not counted) over the requests. Without HTTP, what
 * is left is the store, its Redis client and their garbage.
 */
import { performance } from 'node:perf_hooks';
import type { SessionData, Store } from 'express-session';
import { type CpuSample, othersShare, sampleCpu } from './cpu-usage.js';
import { latencySummary, median } from './stats.js';
import {
	BASELINE,
	buildStore,
	type BuiltStore,
	loggedInSession,
	newSessionId,
	type StoreKind,
	type StoreUrls,
} from './stores.js';

export const STORE_OPS_KINDS: readonly StoreKind[] = ['resilient', 'connect-redis'];

export const OPERATIONS = ['get', 'set', 'touch'] as const;

export type Operation = (typeof OPERATIONS)[number];

export interface StoreOpsOptions {
	readonly rounds: number;
	/** Timed calls of each operation per store and round. */
	readonly callsPerRound: number;
	/** Sessions the calls take turns with. */
	readonly sessions: number;
	/** Requests of each kind per store and round, in the CPU part. */
	readonly cpuRequestsPerRound: number;
}

/** The calls express-session makes to a store for a request, in the CPU part. */
export const CPU_REQUESTS = {
	read: ['get', 'touch'],
	write: ['get', 'set'],
} as const satisfies Record<string, readonly Operation[]>;

export type CpuRequest = keyof typeof CPU_REQUESTS;

/** Requests in flight at once in the CPU part, as the load generator's connections. */
export const CPU_CONCURRENCY = 16;

export interface CpuResult {
	readonly kind: StoreKind;
	readonly request: CpuRequest;
	/** CPU time of the process per request, median over the rounds. */
	readonly cpuUs: number;
	/** The median of the per-round ratios to connect-redis's. */
	readonly ratio: number;
}

export interface OperationResult {
	readonly kind: StoreKind;
	readonly operation: Operation;
	readonly calls: number;
	readonly p50Us: number;
	readonly p99Us: number;
	readonly maxUs: number;
	readonly meanUs: number;
}

export interface StoreOpsResult {
	readonly options: StoreOpsOptions;
	readonly results: OperationResult[];
	readonly cpu: CpuResult[];
	/** Share of the machine's CPU other processes took during the timed rounds (Linux only). */
	readonly othersCpu: number | undefined;
}

/** express-session's callback API as a promise, the way express-session itself calls stores. */
const call = (store: Store, operation: Operation, sid: string, session: SessionData): Promise<unknown> =>
	new Promise((resolve, reject) => {
		const done = (error?: unknown, value?: unknown) => (error ? reject(error) : resolve(value));
		if (operation === 'get') store.get(sid, done);
		else if (operation === 'set') store.set(sid, session, done);
		else store.touch!(sid, session, done);
	});

/** Times `count` calls of `operation`, one after another; returns their durations in µs. */
const timeCalls = async (
	built: BuiltStore,
	operation: Operation,
	sessions: ReadonlyArray<readonly [string, SessionData]>,
	count: number,
): Promise<number[]> => {
	const durations: number[] = [];
	for (let i = 0; i < count; i++) {
		const [sid, session] = sessions[i % sessions.length]!;
		const started = performance.now();
		await call(built.store, operation, sid, session);
		durations.push((performance.now() - started) * 1000);
	}

	return durations;
};

/**
 * Runs `count` requests of kind `request` on `built`, {@link CPU_CONCURRENCY} at a time;
 * resolves with the CPU time this process used per request, in µs.
 */
const cpuPerRequest = async (
	built: BuiltStore,
	request: CpuRequest,
	sessions: ReadonlyArray<readonly [string, SessionData]>,
	count: number,
): Promise<number> => {
	let next = 0;
	const worker = async () => {
		while (next < count) {
			const [sid, session] = sessions[next++ % sessions.length]!;
			for (const operation of CPU_REQUESTS[request]) await call(built.store, operation, sid, session);
		}
	};
	const before = process.cpuUsage();
	await Promise.all(Array.from({ length: CPU_CONCURRENCY }, worker));
	const { user, system } = process.cpuUsage(before);
	return (user + system) / count;
};

/** The CPU part: rounds interleaved across the stores (A B, B A, …) after a warm-up round. */
const measureCpu = async (
	stores: readonly BuiltStore[],
	sessions: ReadonlyArray<readonly [string, SessionData]>,
	options: StoreOpsOptions,
	log: (line: string) => void,
): Promise<CpuResult[]> => {
	const perRound = new Map<string, number[]>();
	for (let round = 0; round <= options.rounds; round++) {
		for (const built of round % 2 === 0 ? stores : [...stores].reverse()) {
			for (const request of Object.keys(CPU_REQUESTS) as CpuRequest[]) {
				const us = await cpuPerRequest(built, request, sessions, options.cpuRequestsPerRound);
				const key = `${built.kind}:${request}`;
				if (round > 0) perRound.set(key, [...(perRound.get(key) ?? []), us]);
			}
		}

		if (round > 0) log(`store-ops: CPU round ${round}/${options.rounds}`);
	}

	return stores.flatMap((built) =>
		(Object.keys(CPU_REQUESTS) as CpuRequest[]).map((request) => {
			const own = perRound.get(`${built.kind}:${request}`)!;
			const baseline = perRound.get(`${BASELINE}:${request}`)!;
			return {
				kind: built.kind,
				request,
				cpuUs: median(own),
				ratio: median(own.map((us, round) => us / baseline[round]!)),
			};
		}),
	);
};

export const runStoreOps = async (
	urls: StoreUrls,
	options: StoreOpsOptions,
	log: (line: string) => void,
): Promise<StoreOpsResult> => {
	const stores: BuiltStore[] = [];
	try {
		for (const kind of STORE_OPS_KINDS) stores.push(await buildStore(kind, urls));
		const sessions = Array.from(
			{ length: options.sessions },
			(_, i) => [newSessionId(), loggedInSession(`user-${i}`)] as const,
		);
		for (const built of stores) {
			for (const [sid, session] of sessions) await call(built.store, 'set', sid, session);
		}

		const samples = new Map<string, number[]>();
		let cpuBefore: CpuSample | undefined;
		// Round 0 warms up and is not counted.
		for (let round = 0; round <= options.rounds; round++) {
			if (round === 1) cpuBefore = sampleCpu();
			for (const built of stores) {
				for (const operation of OPERATIONS) {
					const durations = await timeCalls(built, operation, sessions, options.callsPerRound);
					if (round === 0) continue;
					const key = `${built.kind}:${operation}`;
					samples.set(key, [...(samples.get(key) ?? []), ...durations]);
				}
			}

			if (round > 0) log(`store-ops: round ${round}/${options.rounds}`);
		}

		const cpu = await measureCpu(stores, sessions, options, log);
		const othersCpu = othersShare(cpuBefore, sampleCpu());
		const results: OperationResult[] = [];
		for (const built of stores) {
			for (const operation of OPERATIONS) {
				const durations = samples.get(`${built.kind}:${operation}`)!;
				const meanUs = durations.reduce((sum, value) => sum + value, 0) / durations.length;
				const { p50, p99, max } = latencySummary(durations);
				results.push({
					kind: built.kind,
					operation,
					calls: durations.length,
					p50Us: p50,
					p99Us: p99,
					maxUs: max,
					meanUs,
				});
			}
		}

		return { options, results, cpu, othersCpu };
	} finally {
		await Promise.all(stores.map((built) => built.close()));
	}
};
