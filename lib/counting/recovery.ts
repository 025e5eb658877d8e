import { EpochWatch } from '../redis/epoch.js';
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

/** After a failure, the marker is learned again this much later. */
const EPOCH_RETRY_MS = 250;

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

	/** Notices a Redis that lost its data. Refused (an ACL): never known lost. */
	readonly #epoch: EpochWatch;

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
		// Refused (an ACL that allows only the counts' prefixes, say): counting works on,
		// without noticing that Redis lost its data.
		this.#epoch = new EpochWatch(link.client, failover, EPOCH_KEY, (key, error) => {
			for (const engine of this.engines) engine.markerRefused(key, error);
		});
		this.#epoch.learn(() => this.engines.size === 0, EPOCH_RETRY_MS);
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
		const lost = await this.#epoch.lostData();
		if (lost) debug('Redis lost its data: counts held in memory are merged back');
		for (const engine of [...this.engines]) await engine.flush(lost);
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
