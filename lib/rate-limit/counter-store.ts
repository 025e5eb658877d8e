import type {
	ClientRateLimitInfo,
	IncrementResponse,
	Options as ExpressRateLimitOptions,
	Store as CounterStore,
} from 'express-rate-limit';
import { CountingEngine } from '../counting/engine.js';
import type { RateLimitConfig } from './options.js';
import { type WindowCount, type WindowSet, windowSet } from './window-set.js';

/** The address ceiling of one request: its address key, its limit and the address's. */
export interface AddressCeiling {
	readonly address: string;
	readonly limit: number;
	readonly ceiling: number;
}

/** How many requests of one key may wait between their key and their count. */
const MAX_IN_FLIGHT_PER_KEY = 64;

/**
 * express-rate-limit's store interface on the counting engine: express-rate-limit keeps
 * the middleware (options, headers, checks), the engine counts, in Redis through the
 * store's failover or in memory.
 *
 * express-rate-limit hands a store the key alone, and the address ceiling needs the
 * request's address too. The key generator hands it over with {@link expectAddress};
 * express-rate-limit counts each request right after its key resolves, with nothing
 * awaited between, so counts take the addresses in the order keys were made.
 */
export class EngineCounterStore implements CounterStore {
	/** Counts are shared by every instance (express-rate-limit's double-count check uses it). */
	readonly localKeys = false;
	readonly prefix: string;
	readonly #engine: CountingEngine;
	readonly #set: WindowSet;
	readonly #ceilings = new Map<string, AddressCeiling[]>();

	constructor(config: RateLimitConfig) {
		const { store, prefix, maxMemoryKeys } = config;
		this.prefix = prefix;
		this.#set = windowSet(config.windowMs);
		this.#engine = new CountingEngine({
			store,
			subject: 'rate limit',
			sets: [this.#set],
			memory: {
				max: maxMemoryKeys,
				whenFull: 'drop-oldest',
				fullMessage:
					`resilient-session: rateLimit() counts ${maxMemoryKeys} clients in memory (\`maxMemoryKeys\`); ` +
					'the counts of the least recently seen are dropped',
				journalFullMessage:
					`resilient-session: rateLimit() recorded ${maxMemoryKeys} changes while Redis was unreachable ` +
					'(`maxMemoryKeys`); the oldest are dropped and will not reach Redis',
			},
			logger: config.logger,
		});
	}

	/** Whether Redis is out (never, on a store without Redis). */
	get inOutage(): boolean {
		return this.#engine.inOutage;
	}

	/** The next count of `key` also counts against the address ceiling `ceiling`. */
	expectAddress(key: string, ceiling: AddressCeiling): void {
		const waiting = this.#ceilings.get(key);
		if (!waiting) this.#ceilings.set(key, [ceiling]);
		else if (waiting.push(ceiling) > MAX_IN_FLIGHT_PER_KEY) waiting.shift();
	}

	init(_options: ExpressRateLimitOptions): void {}

	async increment(key: string): Promise<IncrementResponse> {
		const ceiling = this.#takeCeiling(key);
		if (!ceiling) {
			const [own] = (await this.#engine.run(this.#set.increment, [this.prefix + key])).value;
			return { totalHits: own!.count, resetTime: new Date(own!.resetAt) };
		}

		const keys = [this.prefix + key, `${this.prefix}addr:${ceiling.address}`];
		const [own, address] = (await this.#engine.run(this.#set.increment, keys)).value as [WindowCount, WindowCount];
		if (address.count <= ceiling.ceiling) return { totalHits: own.count, resetTime: new Date(own.resetAt) };
		// Over the address's ceiling: limited until the address's window ends, whatever the key's count.
		const overOwn = own.count > ceiling.limit;
		return {
			totalHits: Math.max(own.count, ceiling.limit + 1),
			resetTime: new Date(Math.max(address.resetAt, overOwn ? own.resetAt : 0)),
		};
	}

	async decrement(key: string): Promise<void> {
		await this.#engine.run(this.#set.decrement, [this.prefix + key]);
	}

	async resetKey(key: string): Promise<void> {
		await this.#engine.run(this.#set.reset, [this.prefix + key]);
	}

	async get(key: string): Promise<ClientRateLimitInfo | undefined> {
		const [counted] = (await this.#engine.run(this.#set.read, [this.prefix + key])).value;
		return counted!.count > 0 ? { totalHits: counted!.count, resetTime: new Date(counted!.resetAt) } : undefined;
	}

	/** Leaves the store's recovery (express-rate-limit's `shutdown`). */
	shutdown(): void {
		this.#engine.close();
	}

	#takeCeiling(key: string): AddressCeiling | undefined {
		const waiting = this.#ceilings.get(key);
		if (!waiting) return undefined;
		const ceiling = waiting.shift();
		if (waiting.length === 0) this.#ceilings.delete(key);
		return ceiling;
	}
}
