import { BoundedMap } from '../bounded-map.js';
import type { OnceLogger } from '../logger.js';

/** What has to be done in Redis for one session when it comes back. */
export type PendingKind = 'write' | 'touch';

/** A write or touch waiting for Redis: its sequence number, and when it happened (epoch ms). */
export interface PendingEntry {
	readonly kind: PendingKind;
	readonly seq: number;
	readonly at: number;
}

export interface JournalLimits {
	readonly maxTombstones: number;
	readonly maxPending: number;
}

/**
 * What happened to sessions while Redis was away, to be replayed on recovery:
 * destroys first (tombstones), then writes, then touches.
 *
 * Each entry carries a sequence number, so that a flush removes only what it wrote: a
 * session changed again while its write-back was in flight stays pending.
 *
 * Both maps are bounded. Past `maxPending` the oldest pending write is dropped (the
 * session itself is still served from memory while it is there); past `maxTombstones`
 * the oldest tombstone is dropped, and that session could come back after the outage.
 * Either is logged once per outage.
 */
export class OutageJournal {
	readonly #tombstones: BoundedMap<number>;
	readonly #pending: BoundedMap<PendingEntry>;
	readonly #log: OnceLogger;
	#cleared = false;
	#seq = 0;

	constructor(limits: JournalLimits, log: OnceLogger) {
		this.#tombstones = new BoundedMap(limits.maxTombstones);
		this.#pending = new BoundedMap(limits.maxPending);
		this.#log = log;
	}

	/** Sessions destroyed during the outage. */
	get tombstones(): number {
		return this.#tombstones.size;
	}

	/** Sessions written or touched during the outage. */
	get pending(): number {
		return this.#pending.size;
	}

	/** Whether `clear()` was called during the outage. */
	get cleared(): boolean {
		return this.#cleared;
	}

	get isEmpty(): boolean {
		return !this.#cleared && this.#tombstones.size === 0 && this.#pending.size === 0;
	}

	/** Whether `sid` was destroyed during this outage: it must not be written again. */
	isDestroyed(sid: string): boolean {
		return this.#tombstones.peek(sid) !== undefined;
	}

	destroyed(sid: string): void {
		this.#pending.delete(sid);
		this.#tombstones.set(sid, ++this.#seq);
		this.#tombstones.makeRoom(0, undefined, () =>
			this.#log.error(
				'tombstones-full',
				`resilient-session: more than ${this.#tombstones.max} sessions destroyed during the outage; ` +
					'the oldest may come back when Redis returns (raise maxTombstones)',
			),
		);
	}

	/** A write during the outage; ignored for a session destroyed during it, which stays destroyed. */
	written(sid: string): void {
		if (!this.isDestroyed(sid)) this.#note(sid, 'write');
	}

	touched(sid: string): void {
		if (!this.isDestroyed(sid) && this.#pending.peek(sid)?.kind !== 'write') this.#note(sid, 'touch');
	}

	/** Everything before this is superseded by a clear of the whole store. */
	clearedAll(): void {
		this.#tombstones.clear();
		this.#pending.clear();
		this.#cleared = true;
	}

	/** Tombstones to replay, each with the sequence number that {@link settleTombstone} takes. */
	tombstoneEntries(): Array<[sid: string, seq: number]> {
		return [...this.#tombstones.entries()];
	}

	pendingEntries(): Array<[sid: string, entry: PendingEntry]> {
		return [...this.#pending.entries()];
	}

	/** Whether the newest version of `sid` is in memory only, waiting to be written to Redis. */
	hasPendingWrite(sid: string): boolean {
		return this.#pending.peek(sid)?.kind === 'write';
	}

	/** Whether something of `sid` (a write or a touch) waits to be replayed. */
	isPending(sid: string): boolean {
		return this.#pending.peek(sid) !== undefined;
	}

	/** Whether entry `seq` is still the newest for `sid` (no later change superseded it). */
	isCurrent(sid: string, seq: number): boolean {
		return this.#pending.peek(sid)?.seq === seq;
	}

	/**
	 * A newer version of `sid` is on its way to Redis: an older one pending from the outage
	 * must not be written back after it. (If it fails to arrive, it is journaled anew.)
	 */
	superseded(sid: string): void {
		this.#pending.delete(sid);
	}

	/** Redis got the newest state of `sid` directly: nothing of it is left to replay. */
	settled(sid: string): void {
		this.#pending.delete(sid);
		this.#tombstones.delete(sid);
	}

	settleTombstone(sid: string, seq: number): void {
		if (this.#tombstones.peek(sid) === seq) this.#tombstones.delete(sid);
	}

	settlePending(sid: string, seq: number): void {
		if (this.#pending.peek(sid)?.seq === seq) this.#pending.delete(sid);
	}

	settleClear(): void {
		this.#cleared = false;
	}

	/** Starts a new outage: its bounds are reported again. */
	forgetWarnings(): void {
		this.#log.forget('tombstones-full');
		this.#log.forget('pending-full');
	}

	#note(sid: string, kind: PendingKind): void {
		this.#pending.set(sid, { kind, seq: ++this.#seq, at: Date.now() });
		this.#pending.makeRoom(0, undefined, () =>
			this.#log.warn(
				'pending-full',
				`resilient-session: more than ${this.#pending.max} sessions changed during the outage; ` +
					'the oldest changes will not be written back to Redis (raise memory.max)',
			),
		);
	}
}
