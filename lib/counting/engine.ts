import type { Backend } from '../redis/failover.js';
import { isCluster, isReplyError, type RedisClient } from '../redis/client.js';
import { redisLinkOf, type RedisLink } from '../redis/link.js';
import type { RedisScript, ScriptArgument } from '../redis/script.js';
import { type Logger, OnceLogger } from '../logger.js';
import type { Change } from './change-journal.js';
import { type Handover, MemoryCounts, type MemoryCountsOptions } from './memory-counts.js';
import { joinRecovery } from './recovery.js';

/** One script to run on Redis: every key in `keys` shares one hash tag. */
export interface ScriptCall {
	readonly script: RedisScript;
	readonly keys: readonly string[];
	readonly args: readonly ScriptArgument[];
}

/**
 * One thing a key set does (count, take back, read…), described for both sides: the
 * script calls that do it on Redis, and the same in memory.
 */
export interface CountOperation<Input, Output> {
	/** Names the operation in logs (`'check'`, `'increment'`…). */
	readonly name: string;
	/**
	 * The scripts to run, sent together (one round trip): usually one, or one per hash
	 * tag on a cluster, where keys of different tags cannot share a script.
	 */
	calls(input: Input, cluster: boolean): readonly ScriptCall[];
	/** Reads Redis's replies (one per call), keeping copies of the counts in `memory`. */
	fromRedis(replies: readonly unknown[], input: Input, memory: MemoryCounts, now: number): Output;
	/** Does the same in memory; `journal`: Redis must learn of it on recovery. */
	inMemory(memory: MemoryCounts, input: Input, now: number, journal: boolean): Output;
}

/**
 * A key set's description: its operations are built by the feature; what the engine
 * needs of it on recovery is how each kind of count it keeps merges into Redis.
 */
export interface KeySetDescription {
	/**
	 * By kind of count: the script call that merges a change made in memory into Redis,
	 * never below the count memory held (`handover.held`).
	 */
	readonly merges: Readonly<Record<string, (key: string, handover: Handover, now: number) => ScriptCall>>;
}

/** An operation's result and where it was counted. */
export interface Counted<Output> {
	readonly value: Output;
	readonly where: Backend;
	/** Counted in memory during an outage: Redis learns of it on recovery. */
	readonly journaled: boolean;
}

export interface CountingEngineOptions {
	/** The store whose Redis and failover the counts share. */
	readonly store: object;
	/** Names the feature in logs (`'rate limit'`, `'login'`). */
	readonly subject: string;
	readonly sets: readonly KeySetDescription[];
	readonly memory: MemoryCountsOptions;
	readonly logger: Logger;
}

/** Changes merged into Redis at a time on recovery (node-redis pipelines each batch). */
const MERGE_BATCH = 100;

/**
 * The one counting engine under `rateLimit()` and `loginGuard()`: it runs the
 * operations of a key set's description on Redis through the store's failover, or in
 * memory, and owns what follows from each of the three outcomes:
 *
 * - served by Redis: the operation keeps copies of the counts in memory;
 * - an outage (the failover says memory, or Redis just failed): counted in memory and
 *   journaled, to be merged into Redis on recovery;
 * - Redis refused the command (a reply error, such as `WRONGTYPE` or an ACL): logged
 *   once, counted in memory, and not journaled, since Redis would refuse the merge too.
 *
 * On recovery (one step per failover, for every engine on it) the journal is merged in
 * batches, never below what memory held; when Redis lost its data meanwhile (restarted
 * empty, or flushed), every count memory knew of is merged back as well.
 */
export class CountingEngine {
	readonly memory: MemoryCounts;
	readonly #link: RedisLink | undefined;
	readonly #cluster: boolean;
	readonly #subject: string;
	readonly #merges: KeySetDescription['merges'];
	readonly #log: OnceLogger;
	readonly #leave: (() => void) | undefined;
	#flushTimer: NodeJS.Timeout | undefined;

	constructor(options: CountingEngineOptions) {
		this.#log = new OnceLogger(options.logger);
		this.#subject = options.subject;
		this.#merges = Object.assign({}, ...options.sets.map((set) => set.merges)) as KeySetDescription['merges'];
		this.memory = new MemoryCounts(options.memory, this.#log);
		this.#link = redisLinkOf(options.store);
		this.#cluster = this.#link !== undefined && isCluster(this.#link.client);
		this.#leave = this.#link && joinRecovery(this.#link, this);
	}

	/** Where counts go right now. */
	get backend(): Backend {
		return this.#link?.failover.backend ?? 'memory';
	}

	/** Whether the store's Redis is out right now (never, on a store without Redis). */
	get inOutage(): boolean {
		return this.#link?.failover.backend === 'memory';
	}

	/** Runs `operation` on Redis when the failover says Redis, else in memory. */
	run<I, O>(operation: CountOperation<I, O>, input: I): Promise<Counted<O>> {
		const link = this.#link;
		if (!link) return Promise.resolve(this.inMemory(operation, input, false));
		const calls = operation.calls(input, this.#cluster);
		return link.failover.attempt('EVALSHA', () => send(link.client, calls)).then(
			(attempt): Counted<O> => {
				if (!attempt.served) return this.inMemory(operation, input, true);
				const replies = calls.length === 1 ? [attempt.value] : (attempt.value as unknown[]);
				return { value: operation.fromRedis(replies, input, this.memory, Date.now()), where: 'redis', journaled: false };
			},
			(error: unknown) => {
				this.#log.error(
					`${operation.name}-refused`,
					`resilient-session: Redis refused a ${this.#subject} command, counting in memory: ${(error as Error)?.message}`,
					error,
				);
				return this.inMemory(operation, input, false);
			},
		);
	}

	/**
	 * Runs `operation` in memory (for instance to settle what was counted there).
	 * A change journaled while the store is back on Redis is merged soon.
	 */
	inMemory<I, O>(operation: CountOperation<I, O>, input: I, journal: boolean): Counted<O> {
		const value = operation.inMemory(this.memory, input, Date.now(), journal);
		if (journal && this.backend === 'redis') this.flushSoon();
		return { value, where: 'memory', journaled: journal };
	}

	markerRefused(key: string, error: Error): void {
		this.#log.warn(
			'marker-refused',
			`resilient-session: Redis refused the marker key ${key} (${error.message}): a Redis that restarts ` +
				`empty is not noticed, so ${this.#subject} counts held in memory are not merged back`,
		);
	}

	/** A new outage may report a full memory again, and a refusal. */
	forgetWarnings(): void {
		for (const key of ['memory-full', 'journal-full', 'merge-refused']) this.#log.forget(key);
	}

	/**
	 * Merges what memory holds for Redis: the journal, and with `lost` (Redis lost its
	 * data) every count memory knew of. Rejects, keeping what was not merged, if Redis fails.
	 */
	async flush(lost = false): Promise<void> {
		const link = this.#link;
		if (!link) return;
		const now = Date.now();
		const handovers = [...this.memory.takeJournal(now, lost)];
		if (handovers.length === 0) return;
		const left = new Map<string, Change>(handovers.map(([key, { change }]) => [key, change]));
		let failure: unknown;
		for (let start = 0; start < handovers.length && failure === undefined; start += MERGE_BATCH) {
			// Every merge of a batch settles before deciding: one still in flight when the
			// journal is restored would be applied twice.
			const batch = handovers.slice(start, start + MERGE_BATCH);
			const results = await Promise.allSettled(
				batch.map(([key, handover]) => {
					const call = this.#merges[handover.change.kind]!(key, handover, now);
					return link.failover.run('EVALSHA', () => call.script.run(link.client, call.keys, call.args));
				}),
			);
			results.forEach((result, index) => {
				const [key] = batch[index]!;
				if (result.status === 'fulfilled') left.delete(key);
				else if (isReplyError(result.reason)) {
					left.delete(key);
					this.#log.error(
						'merge-refused',
						`resilient-session: Redis refused a ${this.#subject} count: ${(result.reason as Error).message}`,
					);
				} else failure ??= result.reason;
			});
		}

		if (failure === undefined) return;
		this.memory.restoreJournal(left);
		throw failure;
	}

	/** Merges soon what is journaled (what arrived between the recovery flush and the switch). */
	flushSoon(): void {
		if (this.#flushTimer || this.memory.journalSize === 0) return;
		this.#flushTimer = setTimeout(() => {
			this.#flushTimer = undefined;
			// On failure the changes stay journaled, for the next recovery.
			if (this.backend === 'redis') this.flush().catch(() => {});
		}, 0);
		this.#flushTimer.unref();
	}

	/** Leaves the store's recovery: nothing is merged into Redis any more. */
	close(): void {
		clearTimeout(this.#flushTimer);
		this.#leave?.();
	}
}

/**
 * Sends `calls` together: one round trip (node-redis pipelines what is sent in one tick).
 * The reply of a single call comes as it is, not in an array of one.
 */
const send = (client: RedisClient, calls: readonly ScriptCall[]): Promise<unknown> =>
	calls.length === 1
		? calls[0]!.script.run(client, calls[0]!.keys, calls[0]!.args)
		: Promise.all(calls.map((call) => call.script.run(client, call.keys, call.args)));
