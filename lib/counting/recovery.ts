import { randomUUID } from 'node:crypto';
import { isRedisFailure } from '../redis/client.js';
import type { Failover } from '../redis/failover.js';
import type { RedisLink } from '../redis/link.js';
import { debug } from '../logger.js';

/** What the recovery of a failover needs of each engine on it. */
export interface Recoverable {
	/** Merges memory into Redis; `lost`: Redis lost its data since it was last seen. */
	flush(lost: boolean): Promise<void>;
	/** Merges soon what arrived after the recovery step. */
	flushSoon(): void;
	/** A new outage: warnings may be logged again. */
	forgetWarnings(): void;
	/** Redis refused the marker key: a Redis that restarts empty cannot be noticed. */
	markerRefused(key: string, error: Error): void;
}

/**
 * The key whose value tells whether Redis lost its data: a random value set once; a
 * Redis that restarted empty (or was flushed) no longer has it.
 */
const EPOCH_KEY = 'resilient-session:epoch:counts';

/**
 * The engines on one failover, with one recovery step and one listener per event
 * between them, however many middlewares share the store.
 */
class Recovery {
	readonly engines = new Set<Recoverable>();
	readonly #link: RedisLink;
	readonly #removeStep: () => void;
	readonly #onFallback = () => {
		for (const engine of this.engines) engine.forgetWarnings();
	};

	readonly #onRecover = () => {
		for (const engine of this.engines) engine.flushSoon();
	};

	/** The epoch last seen; `undefined` until Redis first answered. */
	#epoch: string | undefined;

	constructor(link: RedisLink) {
		this.#link = link;
		const { failover } = link;
		failover.on('fallback', this.#onFallback);
		failover.on('recover', this.#onRecover);
		// Counts made in memory during the outage reach Redis before the store returns to
		// it. `pending` stays false: under steady traffic something new is always pending,
		// and the store would never return. What arrives between this flush and the
		// switch is merged right after ('recover').
		this.#removeStep = failover.addRecoveryStep({ flush: () => this.#flush(), pending: () => false });
		void failover
			.whenReady()
			.then(() => this.#redisLostData())
			.catch(() => {});
	}

	leave(engine: Recoverable): boolean {
		this.engines.delete(engine);
		if (this.engines.size > 0) return false;
		this.#removeStep();
		this.#link.failover.off('fallback', this.#onFallback);
		this.#link.failover.off('recover', this.#onRecover);
		return true;
	}

	async #flush(): Promise<void> {
		const lost = await this.#redisLostData();
		if (lost) debug('Redis lost its data: counts held in memory are merged back');
		for (const engine of [...this.engines]) await engine.flush(lost);
	}

	/** Whether the epoch changed since last seen; learns it. Refused (an ACL): never known lost. */
	async #redisLostData(): Promise<boolean> {
		const { failover, client } = this.#link;
		const fresh = randomUUID();
		let current: string;
		try {
			const created = await failover.run('SET NX', () => client.set(EPOCH_KEY, fresh, { condition: 'NX' }));
			current = created ? fresh : String(await failover.run('GET', () => client.get(EPOCH_KEY)));
		} catch (error) {
			if (isRedisFailure(error)) throw error;
			// Refused (an ACL that allows only the counts' prefixes, say): counting works on,
			// without noticing that Redis lost its data.
			for (const engine of this.engines) engine.markerRefused(EPOCH_KEY, error as Error);
			return false;
		}

		const lost = this.#epoch !== undefined && current !== this.#epoch;
		this.#epoch = current;
		return lost;
	}
}

const recoveries = new WeakMap<Failover, Recovery>();

/**
 * Adds `engine` to the recovery of `link`'s failover. Returns the function that takes
 * it out again; the last one out removes the recovery step and listeners.
 */
export const joinRecovery = (link: RedisLink, engine: Recoverable): (() => void) => {
	let recovery = recoveries.get(link.failover);
	if (!recovery) {
		recovery = new Recovery(link);
		recoveries.set(link.failover, recovery);
	}

	recovery.engines.add(engine);
	const joined = recovery;
	return () => {
		if (joined.leave(engine) && recoveries.get(link.failover) === joined) recoveries.delete(link.failover);
	};
};
