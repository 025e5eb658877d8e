/**
 * Latency with a distant Redis, and round trips per request: ResilientStore against
 * connect-redis on the four request kinds of the throughput part.
 *
 * 1. A distant Redis: both servers reach the benchmark's redis-server through a TCP proxy
 *    (the tests' `TcpProxy`, run in this process) that delays every chunk by 1 ms in each
 *    direction. Requests are sent one at a time, each timed on its own; the proxy counts
 *    the round trips each request causes (see `TcpProxy.roundTrips`), and apart from
 *    them the round trips of PINGs alone (`TcpProxy.pingRoundTrips`): ResilientStore's
 *    near cache proves its connection with one every half `nearCacheMaxLagMs` at most
 *    while it serves reads from copies, on a clock, whatever the number of requests.
 *    Rounds alternate the stores (A B, B A, …).
 * 2. Loopback requests/s: both servers on the redis-server directly, loaded by autocannon
 *    in rounds interleaved the same way; the ratio ResilientStore / connect-redis is taken
 *    per round, and its median reported.
 */
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { TcpProxy } from '../__tests__/helpers/tcp-proxy.js';
import { othersShare, sampleCpu } from './cpu-usage.js';
import { runLoad } from './load.js';
import { sleep } from './processes.js';
import { rateLimitUnavailable } from './rate-limits.js';
import { type BenchRedis, connectClient } from './redis-server.js';
import { logIn, type ServerProcess, startServer } from './server-process.js';
import { median, percentileOfSorted } from './stats.js';
import type { StoreKind, StoreUrls } from './stores.js';
import { type Scenario, SCENARIOS } from './throughput.js';

/** The two stores compared, ResilientStore first. */
export const LATENCY_KINDS = ['resilient', 'connect-redis'] as const satisfies readonly StoreKind[];

export type LatencyKind = (typeof LATENCY_KINDS)[number];

export interface LatencyOptions {
	/** Delay the proxy adds to every chunk, in each direction. */
	readonly linkDelayMs: number;
	/** Logged-in sessions per server that the session requests take turns with, Redis 2 ms away. */
	readonly sessions: number;
	/** The same on loopback. */
	readonly loopbackSessions: number;
	/** Requests per store and kind sent before measuring (every session is read in them). */
	readonly warmupRequests: number;
	readonly latencyRounds: number;
	/** Requests per store in one round, one at a time. */
	readonly requestsPerRound: number;
	readonly loopbackRounds: number;
	/**
	 * Server processes per store on loopback: two processes of the same code differ by up
	 * to ±8 % in requests/s on a small VM, which one pair would put straight into the ratio.
	 */
	readonly loopbackProcesses: number;
	readonly roundS: number;
	readonly warmupS: number;
	readonly connections: number;
}

/** One store on one request kind, over the delaying link. */
export interface LinkStoreResult {
	readonly kind: LatencyKind;
	readonly requests: number;
	readonly p50Ms: number;
	readonly p90Ms: number;
	/** Round trips counted by the proxy, over the requests; PINGs alone (see `pings`) left out. */
	readonly roundTripsPerRequest: number;
	/** Requests during which the proxy counted at least one round trip other than PINGs alone. */
	readonly requestsWithRoundTrips: number;
	/**
	 * Round trips of PINGs alone (`TcpProxy.pingRoundTrips`) during the store's rounds:
	 * ResilientStore's proof that its connection still delivers invalidations, sent on a
	 * clock while reads are served from copies, not per request.
	 */
	readonly pings: number;
	/** From the first round of the request kind to the end of its last, over both stores (ms). */
	readonly spanMs: number;
	readonly non2xx: number;
	/** ResilientStore: responses whose session was not served from Redis. */
	readonly notFromRedis: number;
	/** ResilientStore: times it fell back to memory meanwhile. */
	readonly fallbacks: number;
}

export interface LoopbackRound {
	readonly requestsPerSecond: Readonly<Record<LatencyKind, number>>;
	/** ResilientStore over connect-redis in this round. */
	readonly ratio: number;
	readonly othersCpu: number | undefined;
}

export interface LatencyScenarioResult {
	readonly scenario: Scenario;
	readonly skipped?: string;
	readonly link: Readonly<Record<LatencyKind, LinkStoreResult>>;
	/** ResilientStore's median latency over connect-redis's. */
	readonly latencyRatio: number;
	readonly loopback: readonly LoopbackRound[];
	/** Median of the per-round ratios. */
	readonly loopbackRatio: number;
	readonly loopbackRequestsPerSecond: Readonly<Record<LatencyKind, number>>;
	readonly loopbackNon2xx: Readonly<Record<LatencyKind, number>>;
	/** Times ResilientStore fell back to memory during the loopback rounds. */
	readonly loopbackFallbacks: number;
}

export interface LatencyResult {
	readonly options: LatencyOptions;
	/** `PING` through the proxy from a client of this process: median round trip, in ms. */
	readonly linkPingMs: number;
	/** The same without the proxy. */
	readonly loopbackPingMs: number;
	readonly scenarios: LatencyScenarioResult[];
	/** Share of the CPU other processes took while the link part ran. */
	readonly linkOthersCpu: number | undefined;
}

interface Answer {
	readonly status: number;
	readonly ms: number;
	readonly backend: string | undefined;
}

const REQUEST_TIMEOUT_MS = 10_000;

/** One HTTP request at a time on a kept-alive connection to a server under test. */
class OneAtATime {
	readonly #agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

	constructor(readonly port: number) {}

	send(method: 'GET' | 'POST', path: string, cookie: string | undefined): Promise<Answer> {
		return new Promise((resolve, reject) => {
			const headers: Record<string, string> = {};
			if (cookie) headers.cookie = cookie;
			if (method === 'POST') headers['content-length'] = '0';
			const started = performance.now();
			const request = http.request(
				{ host: '127.0.0.1', port: this.port, method, path, agent: this.#agent, headers, timeout: REQUEST_TIMEOUT_MS },
				(response) => {
					response.resume();
					response.once('error', reject);
					response.once('end', () =>
						resolve({
							status: response.statusCode ?? 0,
							ms: performance.now() - started,
							backend: response.headers['x-backend'] as string | undefined,
						}),
					);
				},
			);
			request.once('timeout', () => request.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)));
			request.once('error', reject);
			request.end();
		});
	}

	close(): void {
		this.#agent.destroy();
	}
}

/** Median round trip of `PING` to `url`, in ms. */
const pingMs = async (url: string, count: number): Promise<number> => {
	const client = await connectClient(url);
	try {
		const times: number[] = [];
		for (let i = 0; i < count; i++) {
			const started = performance.now();
			await client.ping();
			times.push(performance.now() - started);
		}

		return median(times);
	} finally {
		client.destroy();
	}
};

/** Starts a server per compared store on `urls`, each with `sessions` logged-in users. */
const startServers = async (urls: StoreUrls, sessions: number) => {
	const started = await Promise.allSettled(LATENCY_KINDS.map((kind) => startServer(kind, urls)));
	const servers = new Map<LatencyKind, ServerProcess>();
	for (const outcome of started) {
		if (outcome.status === 'fulfilled') servers.set(outcome.value.kind as LatencyKind, outcome.value);
	}

	const failed = started.find((outcome) => outcome.status === 'rejected');
	const cookies = new Map<LatencyKind, string[]>();
	try {
		if (failed) throw failed.reason;
		for (const [kind, server] of servers) cookies.set(kind, await logIn(server.port, sessions));
	} catch (error) {
		await Promise.all([...servers.values()].map((server) => server.stop()));
		throw error;
	}

	return { servers, cookies, stop: () => Promise.all([...servers.values()].map((server) => server.stop())) };
};

/** `'fallback'` events a server reported from event number `from` on. */
const fallbacksSince = (server: ServerProcess | undefined, from: number): number =>
	server ? server.events.slice(from).filter((event) => event.event === 'fallback').length : 0;

const skipReason = (servers: ReadonlyMap<LatencyKind, ServerProcess>): string | undefined => {
	const unavailable = rateLimitUnavailable();
	if (unavailable) return unavailable;
	const without = [...servers.values()].find((server) => server.rateLimit !== 'available');
	return without && `${without.kind}: ${without.rateLimit}`;
};

/** Stores A B in odd rounds, B A in even ones. */
const roundOrder = (round: number): readonly LatencyKind[] =>
	round % 2 === 1 ? LATENCY_KINDS : [...LATENCY_KINDS].reverse();

/** Part 1: one request at a time through the delaying proxy. */
const measureLink = async (
	redis: BenchRedis,
	urls: StoreUrls,
	options: LatencyOptions,
	log: (line: string) => void,
) => {
	const proxy = await TcpProxy.start(redis.port);
	proxy.slow(options.linkDelayMs);
	const clients = new Map<LatencyKind, OneAtATime>();
	try {
		const loopbackPingMs = await pingMs(redis.url, 200);
		const linkPingMs = await pingMs(proxy.url, 200);
		log(`latency: PING ${linkPingMs.toFixed(2)} ms through the proxy, ${loopbackPingMs.toFixed(2)} ms without it`);
		const { servers, cookies, stop } = await startServers({ ...urls, redisUrl: proxy.url }, options.sessions);
		const cpuBefore = sampleCpu();
		const results = new Map<Scenario['id'], Record<LatencyKind, LinkStoreResult> | string>();
		try {
			for (const [kind, server] of servers) clients.set(kind, new OneAtATime(server.port));
			const next = new Map<LatencyKind, number>(LATENCY_KINDS.map((kind) => [kind, 0]));
			for (const scenario of SCENARIOS) {
				const skipped = scenario.id === 'ratelimit' ? skipReason(servers) : undefined;
				if (skipped) {
					results.set(scenario.id, skipped);
					continue;
				}

				const send = (kind: LatencyKind) => {
					const sessionCookies = cookies.get(kind)!;
					const index = next.get(kind)!;
					next.set(kind, index + 1);
					const cookie = scenario.withSession ? sessionCookies[index % sessionCookies.length] : undefined;
					return clients.get(kind)!.send(scenario.method, scenario.path, cookie);
				};

				// Taking turns, request by request: neither server sits idle through the other's
				// warm-up (a second at 2 ms a round trip), after which ResilientStore's first read
				// would wait for proof that Redis's invalidations still arrive (`nearCacheMaxLagMs`).
				for (let i = 0; i < options.warmupRequests; i++) for (const kind of LATENCY_KINDS) await send(kind);
				await sleep(20);
				const eventsBefore = new Map([...servers].map(([kind, server]) => [kind, server.events.length]));

				const samples = new Map(
					LATENCY_KINDS.map((kind) => [
						kind,
						{ times: [] as number[], trips: 0, pings: 0, withTrips: 0, non2xx: 0, notFromRedis: 0 },
					]),
				);
				// Round trips of commands: those of PINGs alone are counted apart.
				const commandTrips = () => proxy.roundTrips - proxy.pingRoundTrips;
				const spanStart = performance.now();
				for (let round = 1; round <= options.latencyRounds; round++) {
					for (const kind of roundOrder(round)) {
						const sample = samples.get(kind)!;
						const [first, firstPings] = [commandTrips(), proxy.pingRoundTrips];
						for (let i = 0; i < options.requestsPerRound; i++) {
							const before = commandTrips();
							const answer = await send(kind);
							sample.times.push(answer.ms);
							if (commandTrips() > before) sample.withTrips++;
							if (answer.status < 200 || answer.status >= 300) sample.non2xx++;
							if (kind === 'resilient' && answer.backend !== 'redis') sample.notFromRedis++;
						}

						// What a store sends after its last response still belongs to its requests.
						await sleep(20);
						sample.trips += commandTrips() - first;
						sample.pings += proxy.pingRoundTrips - firstPings;
					}
				}

				const spanMs = performance.now() - spanStart;

				const perStore = {} as Record<LatencyKind, LinkStoreResult>;
				for (const [kind, sample] of samples) {
					const sorted = [...sample.times].sort((a, b) => a - b);
					perStore[kind] = {
						kind,
						requests: sorted.length,
						p50Ms: median(sorted),
						p90Ms: percentileOfSorted(sorted, 90),
						roundTripsPerRequest: sample.trips / sorted.length,
						requestsWithRoundTrips: sample.withTrips,
						pings: sample.pings,
						spanMs,
						non2xx: sample.non2xx,
						notFromRedis: sample.notFromRedis,
						fallbacks: fallbacksSince(servers.get(kind), eventsBefore.get(kind)!),
					};
				}

				results.set(scenario.id, perStore);
				log(
					`latency: ${scenario.id}: ` +
						LATENCY_KINDS.map(
							(kind) =>
								`${kind} ${perStore[kind].p50Ms.toFixed(2)} ms, ${perStore[kind].roundTripsPerRequest.toFixed(2)} round trips`,
						).join('; '),
				);
			}
		} finally {
			for (const client of clients.values()) client.close();
			await stop();
		}

		return { linkPingMs, loopbackPingMs, results, othersCpu: othersShare(cpuBefore, sampleCpu()) };
	} finally {
		await proxy.close();
	}
};

/** Part 2: requests/s on loopback, per-round ratios. */
const measureLoopback = async (urls: StoreUrls, options: LatencyOptions, log: (line: string) => void) => {
	const started: Array<Awaited<ReturnType<typeof startServers>>> = [];
	const results = new Map<
		Scenario['id'],
		{ rounds: LoopbackRound[]; non2xx: Record<LatencyKind, number>; fallbacks: number } | string
	>();
	try {
		for (let i = 0; i < options.loopbackProcesses; i++) started.push(await startServers(urls, options.loopbackSessions));
		for (const scenario of SCENARIOS) {
			const skipped = scenario.id === 'ratelimit' ? skipReason(started[0]!.servers) : undefined;
			if (skipped) {
				results.set(scenario.id, skipped);
				continue;
			}

			const load = (group: (typeof started)[number], kind: LatencyKind, durationS: number) =>
				runLoad({
					port: group.servers.get(kind)!.port,
					request: {
						method: scenario.method,
						path: scenario.path,
						cookies: scenario.withSession ? group.cookies.get(kind) : undefined,
					},
					durationS,
					connections: options.connections,
				});

			for (const group of started) for (const kind of LATENCY_KINDS) await load(group, kind, options.warmupS);
			const eventsBefore = started.map((group) => group.servers.get('resilient')!.events.length);
			const rounds: LoopbackRound[] = [];
			const non2xx: Record<LatencyKind, number> = { resilient: 0, 'connect-redis': 0 };
			for (let round = 1; round <= options.loopbackRounds; round++) {
				const requestsPerSecond = {} as Record<LatencyKind, number>;
				const cpuBefore = sampleCpu();
				for (const kind of roundOrder(round)) {
					// The mean over the store's processes, each loaded in turn.
					let sum = 0;
					for (const group of started) {
						const result = await load(group, kind, options.roundS);
						sum += result.requestsPerSecond;
						non2xx[kind] += result.non2xx + result.errors;
					}

					requestsPerSecond[kind] = sum / started.length;
				}

				const ratio = requestsPerSecond.resilient / requestsPerSecond['connect-redis'];
				rounds.push({ requestsPerSecond, ratio, othersCpu: othersShare(cpuBefore, sampleCpu()) });
				log(
					`latency: loopback ${scenario.id}: round ${round}/${options.loopbackRounds}: ` +
						`resilient ${Math.round(requestsPerSecond.resilient)}/s, connect-redis ${Math.round(requestsPerSecond['connect-redis'])}/s, ratio ${ratio.toFixed(2)}`,
				);
			}

			results.set(scenario.id, {
				rounds,
				non2xx,
				fallbacks: started.reduce(
					(sum, group, i) => sum + fallbacksSince(group.servers.get('resilient'), eventsBefore[i]!),
					0,
				),
			});
		}
	} finally {
		await Promise.all(started.map((group) => group.stop()));
	}

	return results;
};

export const runLatency = async (
	redis: BenchRedis,
	urls: StoreUrls,
	options: LatencyOptions,
	log: (line: string) => void,
): Promise<LatencyResult> => {
	log(`latency: Redis ${2 * options.linkDelayMs} ms away, one request at a time`);
	const link = await measureLink(redis, urls, options, log);
	log(`latency: loopback requests/s, ${options.loopbackRounds} interleaved rounds per kind`);
	const loopback = await measureLoopback(urls, options, log);

	const scenarios = SCENARIOS.map((scenario): LatencyScenarioResult => {
		const linkResult = link.results.get(scenario.id);
		const loopbackResult = loopback.get(scenario.id);
		if (typeof linkResult !== 'object' || typeof loopbackResult !== 'object') {
			const skipped =
				(typeof linkResult === 'string' ? linkResult : undefined) ??
				(typeof loopbackResult === 'string' ? loopbackResult : 'not measured');
			return {
				scenario,
				skipped,
				link: {} as Record<LatencyKind, LinkStoreResult>,
				latencyRatio: Number.NaN,
				loopback: [],
				loopbackRatio: Number.NaN,
				loopbackRequestsPerSecond: { resilient: Number.NaN, 'connect-redis': Number.NaN },
				loopbackNon2xx: { resilient: 0, 'connect-redis': 0 },
				loopbackFallbacks: 0,
			};
		}

		const { rounds, non2xx, fallbacks } = loopbackResult;
		return {
			scenario,
			link: linkResult,
			latencyRatio: linkResult.resilient.p50Ms / linkResult['connect-redis'].p50Ms,
			loopback: rounds,
			loopbackRatio: median(rounds.map((round) => round.ratio)),
			loopbackRequestsPerSecond: {
				resilient: median(rounds.map((round) => round.requestsPerSecond.resilient)),
				'connect-redis': median(rounds.map((round) => round.requestsPerSecond['connect-redis'])),
			},
			loopbackNon2xx: non2xx,
			loopbackFallbacks: fallbacks,
		};
	});

	return {
		options,
		linkPingMs: link.linkPingMs,
		loopbackPingMs: link.loopbackPingMs,
		scenarios,
		linkOthersCpu: link.othersCpu,
	};
};
