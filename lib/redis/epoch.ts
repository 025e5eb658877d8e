import { randomUUID } from 'node:crypto';
import { isRedisFailure, type RedisClient } from './client.js';
import type { Failover } from './failover.js';

/**
 * Tells whether Redis lost its data (restarted without persistence, or flushed) since it
 * was last seen: a random marker kept under `key` is gone or replaced. The sessions and
 * the counts each keep one, so that each notices a loss at its own recovery step.
 */
export class EpochWatch {
	readonly #client: RedisClient;
	readonly #failover: Failover;
	readonly #refused: (key: string, error: Error) => void;
	readonly key: string;
	/** The marker last seen in Redis; a different or missing one means Redis lost its data. */
	#epoch: string | undefined;

	/** `refused`: Redis refused the marker (an ACL, say): a loss of data cannot be noticed. */
	constructor(client: RedisClient, failover: Failover, key: string, refused: (key: string, error: Error) => void) {
		this.#client = client;
		this.#failover = failover;
		this.key = key;
		this.#refused = refused;
	}

	/**
	 * Learns the marker once Redis first answers, so that a later loss of data is noticed;
	 * again after a failure, until it is learned or `isClosed()`.
	 */
	learn(isClosed: () => boolean, retryMs: number): void {
		const learn = async (): Promise<void> => {
			if (this.#epoch !== undefined || isClosed()) return;
			try {
				await this.lostData();
			} catch {
				setTimeout(() => void learn(), retryMs).unref();
			}
		};

		void this.#failover.whenReady().then(learn);
	}

	/**
	 * Whether Redis lost its data since the marker was last seen; learns the current one.
	 * Rejects when Redis fails; a refusal is reported and counts as no loss.
	 */
	async lostData(): Promise<boolean> {
		const failover = this.#failover;
		const client = this.#client;
		const fresh = randomUUID();
		let current: string;
		try {
			const created = await failover.run('SET NX', () => client.set(this.key, fresh, { condition: 'NX' }));
			current = created ? fresh : String(await failover.run('GET', () => client.get(this.key)));
		} catch (error) {
			if (isRedisFailure(error)) throw error;
			this.#refused(this.key, error as Error);
			return false;
		}

		const lost = this.#epoch !== undefined && current !== this.#epoch;
		this.#epoch = current;
		return lost;
	}
}
