import request from 'supertest';

/** One request of a traffic run. */
export interface Sample {
	/** When the request was sent (epoch ms). */
	readonly at: number;
	readonly status: number;
	readonly ms: number;
	readonly body: any;
}

/** A request that takes longer than this counts as hung. */
const HUNG_MS = 5_000;

/**
 * Steady traffic from several logged-in clients against a real HTTP server, until
 * stopped, recording every answer: what a failover test asserts on (no 5xx, nothing
 * hung, worst latency).
 */
export class Traffic {
	readonly samples: Sample[] = [];
	#running = false;
	#loops: Array<Promise<void>> = [];

	constructor(
		readonly agents: Array<ReturnType<typeof request.agent>>,
		readonly path = '/count',
	) {}

	/** Starts one sequential request loop per agent. */
	start(): this {
		this.#running = true;
		this.#loops = this.agents.map(async (agent) => {
			while (this.#running) {
				const started = Date.now();
				try {
					const res = await agent.get(this.path).timeout(HUNG_MS);
					this.samples.push({ at: started, status: res.status, ms: Date.now() - started, body: res.body });
				} catch {
					this.samples.push({ at: started, status: 0, ms: Date.now() - started, body: undefined });
				}
			}
		});
		return this;
	}

	async stop(): Promise<void> {
		this.#running = false;
		await Promise.all(this.#loops);
	}

	get failed(): Sample[] {
		return this.samples.filter((sample) => sample.status !== 200);
	}

	get worstMs(): number {
		return Math.max(0, ...this.samples.map((sample) => sample.ms));
	}
}
