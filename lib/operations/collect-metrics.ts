import type { LockoutScope } from '../login-guard/options.js';
import { checkObject, checkString, invalidOption, rejectUnknownOptions } from '../options/checks.js';
import { isResilientStore } from '../session/options.js';
import type { ResilientStore } from '../session/store.js';
import type { WriteBackResult } from '../session/write-back.js';
import { type LoginAttemptOutcome, observersOf, type RateLimitOutcome, type StoreObserver } from './observers.js';
import { loadPromClient, type PromClientModule } from './prom-client.js';

/**
 * What `collectMetrics()` needs of a prom-client `Registry` (`new Registry()`, or
 * prom-client's global `register`), written out so that the package's types do not
 * depend on prom-client.
 */
export interface MetricsRegistry {
	registerMetric(metric: any): void;
	getSingleMetric(name: string): unknown;
	removeSingleMetric(name: string): void;
}

/** Options of {@link collectMetrics}. */
export interface CollectMetricsOptions {
	/** The store to report on; rate limits and login guards built on it report too. Required. */
	readonly store: ResilientStore;
	/** The prom-client `Registry` to register the metrics on. Required. */
	readonly register: MetricsRegistry;
	/**
	 * Prepended to every metric name. Give each store its own when several share a registry.
	 * @default 'resilient_session_'
	 */
	readonly prefix?: string;
	/**
	 * Upper bounds, in seconds, of the buckets of the Redis command duration histogram.
	 * The default brackets a healthy link (a millisecond or two) and the store's default
	 * deadline (250 ms).
	 * @default [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]
	 */
	readonly durationBuckets?: readonly number[];
}

/** What {@link collectMetrics} returns. */
export interface StoreMetrics {
	/** Stops reporting on the store and removes the metrics from the registry. */
	close(): void;
}

/** Defaults of every {@link CollectMetricsOptions} that has one. */
export const collectMetricsDefaults = Object.freeze({
	prefix: 'resilient_session_',
	durationBuckets: Object.freeze([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]),
});

const KNOWN_OPTIONS = Object.freeze({
	store: true,
	register: true,
	prefix: true,
	durationBuckets: true,
} satisfies Record<keyof CollectMetricsOptions, true>);

/** A Prometheus metric name may hold letters, digits, `_` and `:`, and not start with a digit. */
const METRIC_NAME_PREFIX = /^(?:[a-zA-Z_:][a-zA-Z0-9_:]*)?$/;

const WRITE_BACK_KINDS = ['destroyed', 'written', 'touched', 'restored', 'lost', 'failed'] as const satisfies ReadonlyArray<
	keyof WriteBackResult
>;
const DECISIONS: readonly RateLimitOutcome[] = ['allowed', 'limited'];
const ATTEMPTS: readonly LoginAttemptOutcome[] = ['success', 'failure', 'locked', 'neutral'];
const SCOPES: readonly LockoutScope[] = ['username+ip', 'username', 'ip'];

const zeroes = <K extends string>(keys: readonly K[]): Record<K, number> =>
	Object.fromEntries(keys.map((key) => [key, 0])) as Record<K, number>;

interface MetricsConfig {
	readonly store: ResilientStore;
	readonly register: MetricsRegistry;
	readonly prefix: string;
	readonly durationBuckets: readonly number[];
}

const resolveOptions = (options: CollectMetricsOptions): MetricsConfig => {
	const given = checkObject('options', options) as unknown as CollectMetricsOptions;
	rejectUnknownOptions('collectMetrics()', given, KNOWN_OPTIONS);
	if (!isResilientStore(given.store)) invalidOption('store', 'a ResilientStore', given.store);
	const register = given.register as Partial<MetricsRegistry> | undefined;
	if (
		register === null ||
		typeof register !== 'object' ||
		typeof register.registerMetric !== 'function' ||
		typeof register.getSingleMetric !== 'function' ||
		typeof register.removeSingleMetric !== 'function'
	) {
		invalidOption('register', "a prom-client Registry (`new Registry()` or prom-client's `register`)", register);
	}

	const prefix = checkString('prefix', given.prefix ?? collectMetricsDefaults.prefix);
	if (!METRIC_NAME_PREFIX.test(prefix)) {
		invalidOption('prefix', 'letters, digits, `_` and `:`, not starting with a digit', prefix);
	}

	const buckets = given.durationBuckets ?? collectMetricsDefaults.durationBuckets;
	const increasing = (bound: unknown, index: number) =>
		typeof bound === 'number' && Number.isFinite(bound) && bound > 0 && (index === 0 || bound > buckets[index - 1]!);
	if (!Array.isArray(buckets) || buckets.length === 0 || !buckets.every(increasing)) {
		invalidOption('durationBuckets', 'a non-empty array of increasing positive numbers of seconds', buckets);
	}

	return { store: given.store, register: register as MetricsRegistry, prefix, durationBuckets: buckets };
};

/** The Redis command histogram, as the tally uses it. */
interface DurationHistogram {
	labels(operation: string): { observe(seconds: number): void };
}

/**
 * The counts the metrics read, kept in plain numbers: reporting on the request path
 * costs an increment. The Redis command histogram is observed as commands end (its
 * buckets are prom-client's), through one bound child per operation.
 */
class Tally implements StoreObserver {
	readonly decisions = zeroes(DECISIONS);
	readonly attempts = zeroes(ATTEMPTS);
	readonly lockouts = zeroes(SCOPES);
	readonly writeBack = zeroes(WRITE_BACK_KINDS);
	recoveries = 0;
	readonly #durations: DurationHistogram;
	readonly #byOperation = new Map<string, ReturnType<DurationHistogram['labels']>>();

	constructor(durations: DurationHistogram) {
		this.#durations = durations;
	}

	redisCommand(operation: string, seconds: number): void {
		let child = this.#byOperation.get(operation);
		if (!child) {
			child = this.#durations.labels(operation);
			this.#byOperation.set(operation, child);
		}

		child.observe(seconds);
	}

	rateLimit(outcome: RateLimitOutcome): void {
		this.decisions[outcome]++;
	}

	loginAttempt(outcome: LoginAttemptOutcome): void {
		this.attempts[outcome]++;
	}

	lockout(scope: LockoutScope): void {
		this.lockouts[scope]++;
	}

	addWriteBack(result: WriteBackResult): void {
		for (const kind of WRITE_BACK_KINDS) this.writeBack[kind] += result[kind];
	}
}

/** A counter whose value is read at scrape time: `collect` sets it from what the package counted. */
type Collected = { reset(): void; inc(labels: Record<string, string>, value: number): void; inc(value: number): void };

const setCounts = (counter: Collected, label: string, counts: Record<string, number>): void => {
	counter.reset();
	for (const [value, count] of Object.entries(counts)) counter.inc({ [label]: value }, count);
};

/**
 * Registers Prometheus metrics of `store` on a prom-client `Registry`: its backend,
 * failovers, Redis command durations, write-back, memory, and the decisions of the rate
 * limits and login guards built on it (before or after this call). Exposing the
 * registry is the app's: `app.get('/metrics', async (req, res) => res.type(register.contentType).send(await register.metrics()))`.
 *
 * prom-client is an optional peer dependency, loaded here: without it this throws.
 *
 * @example
 * const register = new Registry();
 * collectMetrics({ store, register });
 */
export const collectMetrics = (options: CollectMetricsOptions): StoreMetrics => {
	const { store, register, prefix, durationBuckets } = resolveOptions(options);
	const { Counter, Gauge, Histogram }: PromClientModule = loadPromClient();
	const name = (suffix: string) => prefix + suffix;

	const durations = new Histogram({
		name: name('redis_operation_duration_seconds'),
		help: 'Time Redis commands of the store took, answered or not (a missed deadline counts as the deadline), in seconds, by operation.',
		labelNames: ['operation'],
		buckets: [...durationBuckets],
		registers: [],
	});
	const tally = new Tally(durations);

	const metrics = [
		new Gauge({
			name: name('backend'),
			help: 'Where the store serves sessions from right now: 1 for the backend in use, 0 for the other.',
			labelNames: ['backend'],
			registers: [],
			collect() {
				const backend = store.backend;
				this.set({ backend: 'redis' }, backend === 'redis' ? 1 : 0);
				this.set({ backend: 'memory' }, backend === 'memory' ? 1 : 0);
			},
		}),
		new Counter({
			name: name('failovers_total'),
			help: 'Times the store fell back from Redis to memory.',
			registers: [],
			collect() {
				this.reset();
				this.inc(store.stats().failovers);
			},
		}),
		new Counter({
			name: name('recoveries_total'),
			help: 'Times the store went back from memory to Redis.',
			registers: [],
			collect() {
				this.reset();
				this.inc(tally.recoveries);
			},
		}),
		durations,
		new Counter({
			name: name('write_back_sessions_total'),
			help: 'Sessions the write-back after an outage handled, by kind (destroyed, written, touched, restored, lost, failed).',
			labelNames: ['kind'],
			registers: [],
			collect() {
				setCounts(this as Collected, 'kind', tally.writeBack);
			},
		}),
		new Gauge({
			name: name('write_back_pending_sessions'),
			help: 'Sessions written, touched or destroyed on memory and waiting to be written back to Redis.',
			registers: [],
			collect() {
				this.set(store.stats().pendingWriteBack);
			},
		}),
		new Gauge({
			name: name('memory_sessions'),
			help: 'Sessions held in memory: warm copies while Redis is healthy, every session during an outage.',
			registers: [],
			collect() {
				this.set(store.stats().memorySessions);
			},
		}),
		new Counter({
			name: name('rate_limit_decisions_total'),
			help: 'Requests decided by the rate limits on the store, by outcome (allowed, limited).',
			labelNames: ['outcome'],
			registers: [],
			collect() {
				setCounts(this as Collected, 'outcome', tally.decisions);
			},
		}),
		new Counter({
			name: name('login_attempts_total'),
			help: 'Login attempts settled by the login guards on the store, by outcome (success, failure, locked, neutral).',
			labelNames: ['outcome'],
			registers: [],
			collect() {
				setCounts(this as Collected, 'outcome', tally.attempts);
			},
		}),
		new Counter({
			name: name('lockouts_total'),
			help: 'Lockouts started by failed logins, by scope (username+ip, username, ip).',
			labelNames: ['scope'],
			registers: [],
			collect() {
				setCounts(this as Collected, 'scope', tally.lockouts);
			},
		}),
	];

	// Registered all or none: a name already taken throws before anything is observed.
	// prom-client keeps each metric's name on it (its types do not say so).
	const names = metrics.map((metric) => (metric as unknown as { name: string }).name);
	const taken = names.find((metricName) => register.getSingleMetric(metricName));
	if (taken !== undefined) {
		throw new Error(
			`resilient-session: the registry already has a metric named ${taken}: give this store's metrics another \`prefix\``,
		);
	}

	for (const metric of metrics) register.registerMetric(metric);
	const onWriteBack = (result: WriteBackResult) => tally.addWriteBack(result);
	const onRecover = () => tally.recoveries++;
	store.on('writeback', onWriteBack);
	store.on('recover', onRecover);
	const stopObserving = observersOf(store).add(tally);

	return {
		close: () => {
			stopObserving();
			store.off('writeback', onWriteBack);
			store.off('recover', onRecover);
			metrics.forEach((metric, index) => {
				if (register.getSingleMetric(names[index]!) === metric) register.removeSingleMetric(names[index]!);
			});
		},
	};
};
