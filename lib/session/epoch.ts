import { randomUUID } from 'node:crypto';
import type { OnceLogger } from '../logger.js';
import { isRedisFailure, type RedisClient } from '../redis/client.js';
import type { Failover } from '../redis/failover.js';

/**
 * Tells whether Redis lost its data (restarted without persistence, or flushed) since
 * the store last saw it: a random marker key the store keeps there, per key prefix, is
 * gone or replaced.
 */
export class EpochWatch {
	readonly #client: RedisClient;
	readonly #failover: Failover;
	readonly #log: OnceLogger;
	readonly #key: string;
	/** The marker last seen in Redis; a different or missing one means Redis lost its data. */
	#epoch: string | undefined;

	constructor(client: RedisClient, failover: Failover, prefix: string, log: OnceLogger) {
		this.#client = client;
		this.#failover = failover;
		this.#log = log;
		this.#key = `resilient-session:epoch:${prefix}`;
	}

	/** Learns the marker once Redis first answers, so that a later loss of data is noticed. */
	learn(isClosed: () => boolean): void {
		void this.#failover.whenReady().then(() => {
			if (this.#epoch === undefined && !isClosed()) return this.lostData();
		}).catch(() => {});
	}

	/** Whether Redis lost its data since the marker was last seen (and learns the current one). */
	async lostData(): Promise<boolean> {
		const failover = this.#failover;
		const client = this.#client;
		const fresh = randomUUID();
		try {
			const created = await failover.run('SET NX', () => client.set(this.#key, fresh, { condition: 'NX' }));
			const current = created ? fresh : ((await failover.run('GET', () => client.get(this.#key))) as string);
			const lost = this.#epoch !== undefined && current !== this.#epoch;
			this.#epoch = current;
			return lost;
		} catch (error) {
			if (isRedisFailure(error)) throw error;
			// Refused (an ACL that allows only the session prefix, say): the store works on,
			// without noticing that Redis lost its data.
			this.#log.warn(
				'epoch-refused',
				`resilient-session: Redis refused the marker key ${this.#key} (${(error as Error).message}): ` +
					'a Redis that restarts empty is not noticed, so sessions are not restored from memory',
			);
			return false;
		}
	}
}
