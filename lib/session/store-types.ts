import type { SessionData } from 'express-session';
import type { Backend } from '../redis/failover.js';

/** A snapshot of the store's state, from `ResilientStore.stats()`. */
export interface StoreStats {
	/** Where operations go right now. */
	readonly backend: Backend;
	/** Since when. */
	readonly since: Date;
	/** How many times the store fell back to memory. */
	readonly failovers: number;
	/** The last error Redis or its client gave. */
	readonly lastError: Error | undefined;
	/** Sessions written, touched or destroyed during the outage, waiting for Redis. */
	readonly pendingWriteBack: number;
	/** Of those, sessions destroyed. */
	readonly tombstones: number;
	/** Sessions held in memory (warm copies, and every session during an outage). */
	readonly memorySessions: number;
	/** Smoothed latency of Redis operations in milliseconds (undefined before the first). */
	readonly redisLatencyMs: number | undefined;
}

/** A session as `all()` lists it: with its id. */
export type SessionWithId = SessionData & { id: string };
