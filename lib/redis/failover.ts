import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { type Settled, settleWithin } from './deadline.js';
import { isRedisTimeoutError, RedisUnavailableError } from '../errors.js';
import { debug, type OnceLogger } from '../logger.js';
import { canSend, isCluster, isRedisFailure, isReplyError, type RedisClient, refreshTopology } from './client.js';

/** Where operations go right now. */
export type Backend = 'redis' | 'memory';

/** What a feature must do when Redis returns (for sessions: the write-back of the outage). */
export interface RecoveryStep {
	/**
	 * Brings Redis up to date with what happened on memory. Runs before the switch back
	 * to Redis; rejects, to stay on memory, when Redis fails again meanwhile.
	 */
	flush(): Promise<void>;
	/**
	 * Whether something arrived during the flush that still has to go to Redis. If so,
	 * `flush` runs once more right after the switch: under steady traffic there is always
	 * something new, so waiting for an empty backlog would keep the store on memory for good.
	 * The feature serves such entries from memory until they are flushed.
	 */
	pending?(): boolean;
}

export interface FailoverOptions {
	readonly client: RedisClient;
	readonly timeoutMs: number;
	readonly probeIntervalMs: number;
	readonly recoverAfterProbes: number;
	readonly minFallbackMs: number;
	readonly log: OnceLogger;
	/** Drops a connection that stopped answering, for clients the store owns. */
	readonly resetConnection?: () => void;
}

/** Told how long each Redis command took (the store's metrics). */
export interface CommandObserver {
	/** A command of the store (`operation`: `'GET'`, `'EVALSHA'`, `'PING'`…) took `seconds`, answered or not. */
	redisCommand(operation: string, seconds: number): void;
}

/** The answer of {@link Failover.attempt}: Redis's value, or `served: false` to serve from memory. */
export type Attempt<T> = { readonly served: true; readonly value: T } | { readonly served: false };

const MISSED: Attempt<never> = Object.freeze({ served: false });

interface FailoverEvents {
	fallback: [error: Error];
	recover: [];
}

/**
 * The one place that decides whether Redis is used. Sessions, rate limits and login
 * tracking all ask it; none of them checks Redis's health on its own.
 *
 * - It trips to memory on a connection error, a dropped connection, or a deadline miss;
 *   a reply error (`WRONGTYPE`, …) is the caller's to handle and trips nothing.
 * - While on memory no request waits on Redis: {@link attempt} answers at once, and a
 *   background `PING` probes Redis every `probeIntervalMs`.
 * - It goes back to Redis after `recoverAfterProbes` consecutive good probes, at least
 *   `minFallbackMs` after the fallback, and only once every {@link RecoveryStep} has
 *   brought Redis up to date.
 */
export class Failover extends EventEmitter<FailoverEvents> {
	readonly #options: FailoverOptions;
	readonly #steps: RecoveryStep[] = [];
	/** Told how long each command took; set once metrics watch the store. */
	observer: CommandObserver | undefined;
	#backend: Backend = 'redis';
	#since = Date.now();
	#failovers = 0;
	#lastError: Error | undefined;
	#latencyMs: number | undefined;
	#answeredSentAt = 0;
	#goodProbes = 0;
	#probeTimer: NodeJS.Timeout | undefined;
	#closed = false;
	/** Until the client is first ready, requests wait for it up to this time. */
	readonly #startupDeadline: number;
	/** Resolves when the client can first take commands. */
	readonly #firstReady: Promise<void>;
	#resolveFirstReady: (() => void) | undefined;
	/** A client and a sentinel say 'ready'; a cluster only says 'connect'. */
	readonly #readyEvent: string;
	readonly #onClientError = (error: Error) => this.trip(error);
	readonly #onClientReady = () => {
		this.#resolveFirstReady?.();
		this.#resolveFirstReady = undefined;
	};

	constructor(options: FailoverOptions) {
		super();
		this.#options = options;
		this.#startupDeadline = Date.now() + options.timeoutMs;
		this.#readyEvent = isCluster(options.client) ? 'connect' : 'ready';
		this.#firstReady = canSend(options.client)
			? Promise.resolve()
			: new Promise((resolve) => {
					this.#resolveFirstReady = resolve;
				});
		// The listener also keeps an 'error' of the client from crashing the process.
		options.client.on('error', this.#onClientError);
		options.client.on(this.#readyEvent, this.#onClientReady);
	}

	/** Resolves once the client can first take commands (never, if it never connects). */
	whenReady(): Promise<void> {
		return this.#firstReady;
	}

	/** Where operations go right now. */
	get backend(): Backend {
		return this.#backend;
	}

	/** When the backend last changed. */
	get since(): Date {
		return new Date(this.#since);
	}

	/** How many times it fell back to memory. */
	get failovers(): number {
		return this.#failovers;
	}

	/** The last error that Redis or its client gave. */
	get lastError(): Error | undefined {
		return this.#lastError;
	}

	/** Smoothed latency of Redis operations, in milliseconds. */
	get latencyMs(): number | undefined {
		return this.#latencyMs;
	}

	/**
	 * When the newest command that Redis answered was sent (epoch ms). Whatever Redis
	 * pushed on the connection before that answer (invalidations) has arrived too.
	 */
	get answeredSentAt(): number {
		return this.#answeredSentAt;
	}

	/**
	 * Registers what must happen before going back to Redis. Steps run in order.
	 * Returns a function that removes the step again (its owner is done with the failover).
	 */
	addRecoveryStep(step: RecoveryStep): () => void {
		this.#steps.push(step);
		return () => {
			const index = this.#steps.indexOf(step);
			if (index !== -1) this.#steps.splice(index, 1);
		};
	}

	/**
	 * Runs `command` on Redis within the deadline when Redis is the backend. Resolves
	 * `served: false`, at once while on memory, or when Redis fails or misses the
	 * deadline (which trips the fallback). A reply error, or an error the caller's own
	 * code raised (see `markCallerError`), rejects.
	 */
	attempt<T>(operation: string, command: () => Promise<T>, timeoutMs?: number): Promise<Attempt<T>> {
		if (this.#backend === 'memory') return Promise.resolve(MISSED);
		// One promise for the whole attempt rather than one per step: every command that a
		// request sends takes this path.
		return new Promise((resolve, reject) => {
			const judged: Settled<T> = (failed, result) => {
				if (!failed) return resolve({ served: true, value: result as T });
				if (!isRedisFailure(result)) return reject(result);
				this.trip(result as Error);
				resolve(MISSED);
			};
			if (canSend(this.#options.client)) this.#send(operation, command, timeoutMs, judged);
			else {
				this.#runOnceReady(operation, command, timeoutMs).then(
					(value) => judged(false, value),
					(error: unknown) => judged(true, error),
				);
			}
		});
	}

	/**
	 * A `PING` through {@link attempt}: its answer proves the link, and a failure or a
	 * missed deadline trips the fallback, as any command would. Never rejects: a reply
	 * error (an ACL refusing `PING`) is Redis answering, and proves nothing more.
	 */
	async ping(): Promise<void> {
		await this.attempt('PING', () => this.#options.client.ping() as Promise<unknown>).catch(() => {});
	}

	/**
	 * Runs `command` within the deadline once the client can take it: right after start-up
	 * it waits for the first connection, up to the deadline. Trips nothing; rejects with
	 * `ERR_RESILIENT_UNAVAILABLE` when the client is not connected.
	 */
	runWhenReady<T>(operation: string, command: () => Promise<T>, timeoutMs?: number): Promise<T> {
		// The usual case goes on at once, without a promise of its own.
		if (canSend(this.#options.client)) return this.run(operation, command, timeoutMs);
		return this.#runOnceReady(operation, command, timeoutMs);
	}

	async #runOnceReady<T>(operation: string, command: () => Promise<T>, timeoutMs?: number): Promise<T> {
		if (!(await this.#waitForFirstReady())) {
			throw new RedisUnavailableError('the Redis client is not connected', { cause: this.#lastError });
		}

		return this.run(operation, command, timeoutMs);
	}

	/** Runs `command` within the deadline, whatever the backend; trips nothing. */
	run<T>(operation: string, command: () => Promise<T>, timeoutMs?: number): Promise<T> {
		return new Promise((resolve, reject) =>
			this.#send(operation, command, timeoutMs, (failed, result) => (failed ? reject(result) : resolve(result as T))),
		);
	}

	/**
	 * Sends `command` under the deadline and tells `settled` how it ended; records how long
	 * it took, and, answered, when it was sent (see {@link answeredSentAt}). A synchronous
	 * exception of `command` ends it as a rejection would.
	 */
	#send<T>(operation: string, command: () => Promise<T>, timeoutMs: number | undefined, settled: Settled<T>): void {
		const sentAt = Date.now();
		const started = performance.now();
		const ended = (answered: boolean): void => {
			const took = performance.now() - started;
			this.observer?.redisCommand(operation, took / 1000);
			if (!answered) return;
			if (sentAt > this.#answeredSentAt) this.#answeredSentAt = sentAt;
			this.#latencyMs = this.#latencyMs === undefined ? took : this.#latencyMs * 0.9 + took * 0.1;
		};
		let sent: Promise<T>;
		try {
			sent = command();
		} catch (error) {
			ended(false);
			return settled(true, error);
		}

		settleWithin(sent, timeoutMs ?? this.#options.timeoutMs, operation, (...outcome) => {
			ended(!outcome[0]);
			settled(...outcome);
		});
	}

	/** Falls back to memory because of `error`. Does nothing if already there. */
	trip(error: Error): void {
		this.#lastError = error;
		if (this.#backend === 'memory' || this.#closed) return;
		this.#backend = 'memory';
		this.#since = Date.now();
		this.#failovers++;
		this.#goodProbes = 0;
		this.#options.log.warn('fallback', `resilient-session: Redis failed, serving from memory: ${error.message}`);
		debug('fallback: %s', error.message);
		if (isRedisTimeoutError(error)) this.#options.resetConnection?.();
		this.emit('fallback', error);
		this.#scheduleProbe();
	}

	/** Stops probing and lets go of the client. */
	close(): void {
		this.#closed = true;
		clearTimeout(this.#probeTimer);
		this.#options.client.off?.('error', this.#onClientError);
		this.#options.client.off?.(this.#readyEvent, this.#onClientReady);
	}

	async #waitForFirstReady(): Promise<boolean> {
		const left = this.#startupDeadline - Date.now();
		if (left <= 0) return false;
		let timer: NodeJS.Timeout | undefined;
		await Promise.race([
			this.#firstReady,
			new Promise<void>((resolve) => {
				timer = setTimeout(resolve, left);
				timer.unref();
			}),
		]);
		clearTimeout(timer);
		return canSend(this.#options.client);
	}

	#scheduleProbe(): void {
		if (this.#closed) return;
		this.#probeTimer = setTimeout(() => void this.#probe(), this.#options.probeIntervalMs);
		this.#probeTimer.unref();
	}

	async #probe(): Promise<void> {
		const { client, recoverAfterProbes, minFallbackMs } = this.#options;
		if (this.#closed || this.#backend === 'redis') return;
		try {
			if (!canSend(client)) throw new RedisUnavailableError('the Redis client is not connected');
			await this.run('PING', () => client.ping());
			this.#goodProbes++;
		} catch (error) {
			this.#lastError = error as Error;
			this.#goodProbes = 0;
			if (isRedisTimeoutError(error)) this.#options.resetConnection?.();
			// A master of a cluster may have died and a replica taken over.
			refreshTopology(client);
		}

		if (this.#goodProbes >= recoverAfterProbes && Date.now() - this.#since >= minFallbackMs) {
			if (await this.#recover()) return;
			this.#goodProbes = 0;
			// The PING went to a node that answers; the write-back reached one that does not.
			refreshTopology(client);
		}

		this.#scheduleProbe();
	}

	/** Runs every recovery step, switches back to Redis, then flushes what arrived meanwhile. */
	async #recover(): Promise<boolean> {
		try {
			// A copy: a step may be removed while another one runs.
			for (const step of [...this.#steps]) await step.flush();
		} catch (error) {
			this.#lastError = error as Error;
			debug('recovery failed: %s', (error as Error).message);
			return false;
		}

		if (this.#closed) return true;
		this.#backend = 'redis';
		this.#since = Date.now();
		this.#options.log.forget('fallback');
		debug('recovered');
		this.emit('recover');
		for (const step of this.#steps) {
			if (!step.pending?.()) continue;
			step.flush().catch((error: unknown) => {
				if (!isReplyError(error)) this.trip(error as Error);
			});
		}

		return true;
	}
}
