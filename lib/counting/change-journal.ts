import type { OnceLogger } from '../logger.js';
import { BoundedMap } from '../bounded-map.js';

/** What changed in memory for one key while Redis could not be told. */
export interface Change {
	/** The kind of count (which merge carries it to Redis). */
	readonly kind: string;
	/** The count was reset (a success, `reset()`, `resetKey()`) before `added`. */
	readonly reset: boolean;
	/** Counted in memory (negative: taken back). */
	readonly added: number;
	/** Time of the last count (or of the reset, for a marker). */
	readonly at: number;
}

/** `newer` after `older`, as one change. */
export const mergeChanges = (older: Change, newer: Change): Change =>
	newer.reset
		? newer
		: { kind: newer.kind, reset: older.reset, added: older.added + newer.added, at: Math.max(older.at, newer.at) };

/**
 * The changes made in memory during an outage, one per key, for Redis to learn on
 * recovery. Bounded: past `max` keys the oldest change is dropped (and a warning
 * logged once per outage), so a flood of new keys during an outage costs no more
 * memory than the bound.
 */
export class ChangeJournal {
	readonly #changes: BoundedMap<Change>;
	readonly #log: OnceLogger;
	readonly #fullMessage: string;

	constructor(max: number, log: OnceLogger, fullMessage: string) {
		this.#changes = new BoundedMap(max);
		this.#log = log;
		this.#fullMessage = fullMessage;
	}

	get size(): number {
		return this.#changes.size;
	}

	record(key: string, change: Change): void {
		const older = this.#changes.peek(key);
		if (!older) this.#changes.makeRoom(1, undefined, () => this.#log.error('journal-full', this.#fullMessage));
		this.#changes.set(key, older ? mergeChanges(older, change) : change);
	}

	/** Forgets the changes of the keys `drop` selects (counts that were forgotten as a whole). */
	forget(drop: (key: string, change: Change) => boolean): void {
		for (const [key, change] of [...this.#changes.entries()]) if (drop(key, change)) this.#changes.delete(key);
	}

	/** Hands over every change and forgets them: changes made after this are journaled anew. */
	take(): Map<string, Change> {
		const taken = new Map(this.#changes.entries());
		this.#changes.clear();
		return taken;
	}

	/** Puts back changes that could not be merged, before any made since. */
	restore(changes: ReadonlyMap<string, Change>): void {
		for (const [key, older] of changes) {
			const newer = this.#changes.peek(key);
			this.#changes.set(key, newer ? mergeChanges(older, newer) : older);
		}
	}
}
