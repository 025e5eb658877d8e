/**
 * Throughput: Express 5 + express-session on each store, loaded by autocannon.
 *
 * Every store runs in its own server process for the whole run; autocannon runs here.
 * For each scenario: a warm-up per store, then rounds interleaved across stores
 * (A B C D E, A B C D E, …) so that drift of the machine falls on every store alike.
 * Per store: median requests/s over the rounds, median of the rounds' p50 and p99,
 * and Redis commands per request from `INFO commandstats` taken around every round.
 * A round during which other processes took more than 10 % of the CPU is measured again,
 * for every store, once at most per scenario.
 * Then a census: a few requests sent one at a time under `MONITOR`, which tells the
 * commands the app sent from those run inside Lua scripts (commandstats counts both).
 */
import { othersShare, sampleCpu } from './cpu-usage.js';
import { type LoadRequest, runLoad } from './load.js';
import { sleep } from './processes.js';
import { rateLimitUnavailable } from './rate-limits.js';
import { type BenchRedis, type CommandStats, commandDelta } from './redis-server.js';
import { logIn, type ServerProcess, startServer } from './server-process.js';
import { median } from './stats.js';
import { BASELINE, STORE_KINDS, STORE_LABELS, type StoreKind, type StoreUrls } from './stores.js';

export type ScenarioId = 'read' | 'write' | 'ratelimit' | 'login';

export interface Scenario {
	readonly id: ScenarioId;
	readonly title: string;
	readonly method: 'GET' | 'POST';
	readonly path: string;
	/** Whether requests carry the cookie of a logged-in session. */
	readonly withSession: boolean;
}

/** In the order they run: the login scenario last, as it fills the stores. */
export const SCENARIOS: readonly Scenario[] = [
	{ id: 'read', title: 'Read-only request on an existing session', method: 'GET', path: '/read', withSession: true },
	{ id: 'write', title: 'Request that modifies its session', method: 'POST', path: '/write', withSession: true },
	{ id: 'ratelimit', title: 'Rate-limited read-only request', method: 'GET', path: '/limited', withSession: true },
	{ id: 'login', title: 'Login: regenerate + set (a new session)', method: 'POST', path: '/login', withSession: false },
];

export interface ThroughputOptions {
	readonly rounds: number;
	readonly roundS: number;
	readonly warmupS: number;
	readonly connections: number;
	/** Logged-in sessions per store that the session scenarios take turns with. */
	readonly sessions: number;
	/** Requests sent one at a time under `MONITOR`, per Redis store and scenario. */
	readonly censusRequests: number;
	/** Disturbed rounds measured again, at most, per scenario. */
	readonly maxRepeats: number;
}

/** Other processes took more than this share of the CPU during a round: it is measured again. */
export const DISTURBED_SHARE = 0.1;

const isDisturbed = (round: RoundResult): boolean => round.othersCpu !== undefined && round.othersCpu > DISTURBED_SHARE;

export interface RoundResult {
	readonly requestsPerSecond: number;
	readonly responses: number;
	readonly non2xx: number;
	readonly errors: number;
	readonly p50Ms: number;
	readonly p99Ms: number;
	readonly commands: CommandStats;
	/** Share of the machine's CPU other processes took during the round (Linux only). */
	readonly othersCpu: number | undefined;
}

export interface StoreResult {
	readonly kind: StoreKind;
	readonly rounds: RoundResult[];
	/** Medians over the rounds. */
	readonly requestsPerSecond: number;
	readonly p50Ms: number;
	readonly p99Ms: number;
	/** Median requests/s over connect-redis's median in the same run. */
	readonly ratio: number;
	readonly non2xx: number;
	readonly errors: number;
	/** Redis commands per request, per command, over every measured round. */
	readonly commandsPerRequest: ReadonlyMap<string, number>;
	readonly totalCommandsPerRequest: number;
	/** What one request sends, seen by `MONITOR` (Redis stores only). */
	readonly census?: Census;
}

/** Commands per request, from `MONITOR` over requests sent one at a time. */
export interface Census {
	readonly requests: number;
	/** Sent by the app, per command. */
	readonly sent: ReadonlyMap<string, number>;
	readonly sentTotal: number;
	/** Run inside Lua scripts, per command. */
	readonly inScripts: ReadonlyMap<string, number>;
}

export interface ScenarioResult {
	readonly scenario: Scenario;
	/** Why the scenario did not run. */
	readonly skipped?: string;
	readonly stores: StoreResult[];
	/** Rounds measured again because other processes took the CPU meanwhile. */
	readonly repeatedRounds?: number;
}

export interface ThroughputResult {
	readonly options: ThroughputOptions;
	readonly scenarios: ScenarioResult[];
}

const summarize = (kind: StoreKind, rounds: RoundResult[]): Omit<StoreResult, 'ratio'> => {
	const responses = rounds.reduce((sum, round) => sum + round.responses, 0);
	const commands = new Map<string, number>();
	for (const round of rounds) {
		for (const [name, calls] of round.commands) commands.set(name, (commands.get(name) ?? 0) + calls);
	}

	const commandsPerRequest = new Map([...commands].map(([name, calls]) => [name, responses ? calls / responses : 0]));
	return {
		kind,
		rounds,
		requestsPerSecond: median(rounds.map((round) => round.requestsPerSecond)),
		p50Ms: median(rounds.map((round) => round.p50Ms)),
		p99Ms: median(rounds.map((round) => round.p99Ms)),
		non2xx: rounds.reduce((sum, round) => sum + round.non2xx, 0),
		errors: rounds.reduce((sum, round) => sum + round.errors, 0),
		commandsPerRequest,
		totalCommandsPerRequest: [...commandsPerRequest.values()].reduce((sum, value) => sum + value, 0),
	};
};

/** Stores whose requests reach Redis, for the `MONITOR` census. */
const REDIS_KINDS: readonly StoreKind[] = ['resilient', 'connect-redis'];

/** Sends `count` requests one after another under `MONITOR`; what did each send to Redis? */
const takeCensus = async (redis: BenchRedis, port: number, request: LoadRequest, count: number): Promise<Census> => {
	const monitor = await redis.monitor();
	for (let i = 0; i < count; i++) {
		const cookie = request.cookies?.[i % request.cookies.length];
		const response = await fetch(`http://127.0.0.1:${port}${request.path}`, {
			method: request.method,
			headers: cookie ? { cookie } : {},
		});
		await response.arrayBuffer();
	}

	const commands = await monitor.stop();
	const perRequest = (fromScript: boolean) => {
		const counts = new Map<string, number>();
		for (const command of commands) {
			if (command.fromScript === fromScript) counts.set(command.name, (counts.get(command.name) ?? 0) + 1);
		}

		return new Map([...counts].map(([name, calls]) => [name, calls / count]));
	};

	const sent = perRequest(false);
	return {
		requests: count,
		sent,
		sentTotal: [...sent.values()].reduce((sum, value) => sum + value, 0),
		inScripts: perRequest(true),
	};
};

/** Why the rate-limited scenario cannot run on every server, or `undefined`. */
const rateLimitSkipReason = (servers: readonly ServerProcess[]): string | undefined => {
	const unavailable = rateLimitUnavailable();
	if (unavailable) return unavailable;
	const without = servers.find((server) => server.rateLimit !== 'available');
	return without && `${STORE_LABELS[without.kind]}: ${without.rateLimit}`;
};

export const runThroughput = async (
	redis: BenchRedis,
	urls: StoreUrls,
	options: ThroughputOptions,
	log: (line: string) => void,
): Promise<ThroughputResult> => {
	const servers = new Map<StoreKind, ServerProcess>();
	const scenarios: ScenarioResult[] = [];
	try {
		const started = await Promise.allSettled(STORE_KINDS.map((kind) => startServer(kind, urls)));
		for (const outcome of started) if (outcome.status === 'fulfilled') servers.set(outcome.value.kind, outcome.value);
		const failed = started.find((outcome) => outcome.status === 'rejected');
		if (failed) throw failed.reason;

		const cookies = new Map<StoreKind, string[]>();
		for (const [kind, server] of servers) cookies.set(kind, await logIn(server.port, options.sessions));

		for (const scenario of SCENARIOS) {
			const skipped = scenario.id === 'ratelimit' ? rateLimitSkipReason([...servers.values()]) : undefined;
			if (skipped) {
				log(`${scenario.id}: skipped (${skipped})`);
				scenarios.push({ scenario, skipped, stores: [] });
				continue;
			}

			const requestFor = (kind: StoreKind): LoadRequest => ({
				method: scenario.method,
				path: scenario.path,
				cookies: scenario.withSession ? cookies.get(kind) : undefined,
			});
			const load = (kind: StoreKind, durationS: number) =>
				runLoad({
					port: servers.get(kind)!.port,
					request: requestFor(kind),
					durationS,
					connections: options.connections,
				});

			for (const kind of STORE_KINDS) await load(kind, options.warmupS);

			const rounds = new Map<StoreKind, RoundResult[]>(STORE_KINDS.map((kind) => [kind, []]));
			let repeated = 0;
			const measure = async (kind: StoreKind): Promise<RoundResult> => {
				const before = await redis.commandStats();
				const cpuBefore = sampleCpu();
				const result = await load(kind, options.roundS);
				const othersCpu = othersShare(cpuBefore, sampleCpu());
				// Responses may end before their last store call does (express-session
				// sends the body's end only after touch/set); let those land.
				await sleep(50);
				return { ...result, commands: commandDelta(before, await redis.commandStats()), othersCpu };
			};

			// A round during which other processes took a good part of the CPU is measured
			// again as a whole (every store, so that all keep the same conditions), within a
			// budget per scenario.
			let repeatsLeft = options.maxRepeats;
			for (let round = 1; round <= options.rounds; round++) {
				const results = new Map<StoreKind, RoundResult>();
				for (const kind of STORE_KINDS) results.set(kind, await measure(kind));
				const line = STORE_KINDS.map((kind) => {
					const result = results.get(kind)!;
					const note = isDisturbed(result) ? ` (other processes ${Math.round(result.othersCpu! * 100)} % CPU)` : '';
					return `${kind} ${Math.round(result.requestsPerSecond)}/s${note}`;
				}).join(', ');
				if ([...results.values()].some(isDisturbed) && repeatsLeft > 0) {
					repeatsLeft--;
					repeated++;
					round--;
					log(`${scenario.id}: round ${round + 1} measured again: ${line}`);
					continue;
				}

				for (const [kind, result] of results) rounds.get(kind)!.push(result);
				log(`${scenario.id}: round ${round}/${options.rounds}: ${line}`);
			}

			const censuses = new Map<StoreKind, Census>();
			for (const kind of REDIS_KINDS) {
				censuses.set(kind, await takeCensus(redis, servers.get(kind)!.port, requestFor(kind), options.censusRequests));
			}

			const summaries = STORE_KINDS.map((kind) => ({
				...summarize(kind, rounds.get(kind)!),
				census: censuses.get(kind),
			}));
			const baseline = summaries.find((summary) => summary.kind === BASELINE)!.requestsPerSecond;
			scenarios.push({
				scenario,
				stores: summaries.map((summary) => ({ ...summary, ratio: summary.requestsPerSecond / baseline })),
				repeatedRounds: repeated,
			});
		}
	} finally {
		await Promise.all([...servers.values()].map((server) => server.stop()));
	}

	return { options, scenarios };
};
