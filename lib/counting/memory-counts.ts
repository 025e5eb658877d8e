import type { OnceLogger } from '../logger.js';
import { BoundedMap } from '../bounded-map.js';
import { type Change, ChangeJournal } from './change-journal.js';

/**
 * `count` rounded to a millionth, as Redis keeps the rate limit's counts: fractional
 * costs added one by one then never drift from what Redis holds.
 */
export const roundCount = (count: number): number => Math.round(count * 1_000_000) / 1_000_000;

/** One count held in memory. */
export interface Entry {
	readonly kind: string;
	/** How much was counted. */
	count: number;
	/** When the last count was made (0: not known). */
	at: number;
	/** `at` before the last count, to take it back. */
	previousAt: number;
	/** When the count is forgotten. */
	expiresAt: number;
	/** Counted here, not copied from Redis: forgetting it would forget counts. */
	held: boolean;
}

/** How one kind of count lives in memory: part of a key set's description. */
export interface CountModel {
	readonly kind: string;
	/** When a count that is `entry` now expires, after a count at `now`. */
	expiresAt(entry: Readonly<Entry>, now: number): number;
}

/** A change handed over for merging, with the count memory held when it was handed over. */
export interface Handover {
	readonly change: Change;
	readonly held: Readonly<Pick<Entry, 'count' | 'at' | 'expiresAt'>> | undefined;
}

/** What to do when memory is full of counts made here. */
export type WhenFull = 'refuse' | 'drop-oldest';

export interface MemoryCountsOptions {
	/** The most counts held. */
	readonly max: number;
	/**
	 * `'refuse'`: a count made here (during an outage, or on a store without Redis) is
	 * never dropped for a new one; the new one is refused instead (the login guard: an
	 * attacker must not flood memory to win attempts). `'drop-oldest'`: the least recently
	 * used goes (the rate limit, which must answer every request).
	 */
	readonly whenFull: WhenFull;
	/** Logged once per outage when memory is full. */
	readonly fullMessage: string;
	/** Logged once per outage when the journal of changes is full. */
	readonly journalFullMessage: string;
}

/** Entries looked at, least recently used first, to find one that may be dropped. */
const DROP_SCAN = 64;

/**
 * The counts of one feature in this process: copies of recent Redis counts while Redis
 * is healthy (so that an outage starts from them, not from zero, and a Redis that
 * restarts empty gets them back), the counts themselves during an outage, with the
 * journal of what changed, to merge into Redis on recovery.
 */
export class MemoryCounts {
	readonly #entries: BoundedMap<Entry>;
	readonly #journal: ChangeJournal;
	readonly #options: MemoryCountsOptions;
	readonly #log: OnceLogger;

	constructor(options: MemoryCountsOptions, log: OnceLogger) {
		this.#options = options;
		this.#log = log;
		this.#entries = new BoundedMap(options.max);
		this.#journal = new ChangeJournal(options.max, log, options.journalFullMessage);
	}

	get size(): number {
		return this.#entries.size;
	}

	get journalSize(): number {
		return this.#journal.size;
	}

	/** The live count of `key`, now the most recently used. */
	read(key: string, now: number): Entry | undefined {
		const entry = this.#entries.use(key);
		if (!entry || entry.expiresAt > now) return entry;
		this.#entries.delete(key);
		return undefined;
	}

	/**
	 * Makes room for `needed` new counts. With `whenFull: 'refuse'`, only expired
	 * counts and copies of Redis counts may go, never those in `keep`; returns `false`
	 * when there is no room. With `'drop-oldest'` the least recently used go.
	 */
	makeRoom(needed: number, now: number, keep: readonly string[] = []): boolean {
		if (needed === 0) return true;
		const refuse = this.#options.whenFull === 'refuse';
		const made = this.#entries.makeRoom(
			needed,
			(key, entry) => (!refuse || !entry.held || entry.expiresAt <= now) && !keep.includes(key),
			(_key, entry) => {
				if (entry.held && entry.expiresAt > now) this.#log.warn('memory-full', this.#options.fullMessage);
			},
			refuse ? DROP_SCAN : Infinity,
		);
		if (!made) this.#log.error('memory-full', this.#options.fullMessage);
		return made;
	}

	/**
	 * Counts `amount` on `key` (making room for it if new), journaled when `journal`.
	 * A negative `amount` gives back, never below 0 (the count is then forgotten), and
	 * journals only what was given back. Counts are kept to a millionth ({@link roundCount}).
	 */
	count(key: string, model: CountModel, now: number, journal: boolean, amount = 1): Entry {
		let entry = this.read(key, now);
		if (!entry) {
			if (amount <= 0) return { kind: model.kind, count: 0, at: 0, previousAt: 0, expiresAt: 0, held: false };
			this.makeRoom(1, now, [key]);
			entry = { kind: model.kind, count: 0, at: 0, previousAt: 0, expiresAt: 0, held: true };
			this.#entries.set(key, entry);
		}

		const before = entry.count;
		entry.held = true;
		entry.count = Math.max(0, roundCount(before + amount));
		entry.previousAt = entry.at;
		entry.at = now;
		entry.expiresAt = model.expiresAt(entry, now);
		const added = roundCount(entry.count - before);
		if (entry.count === 0) this.#entries.delete(key);
		if (journal && added !== 0) this.#journal.record(key, { kind: model.kind, reset: false, added, at: now });
		return entry;
	}

	/** Takes one count back from `key` (dropping it at 0), journaled when `journal`. */
	uncount(key: string, kind: string, now: number, journal: boolean): void {
		const entry = this.read(key, now);
		if (entry) {
			entry.count--;
			entry.at = entry.previousAt;
			if (entry.count <= 0) this.#entries.delete(key);
		}

		if (journal) this.#journal.record(key, { kind, reset: false, added: -1, at: 0 });
	}

	/** Forgets the count of `key`, journaling the reset when `journal`. */
	reset(key: string, kind: string, journal: boolean, now = 0): void {
		this.#entries.delete(key);
		if (journal) this.#journal.record(key, { kind, reset: true, added: 0, at: now });
	}

	/** Forgets every count whose key starts with `prefix`, and their journaled changes. */
	forgetPrefix(prefix: string): void {
		for (const [key] of [...this.#entries.entries()]) if (key.startsWith(prefix)) this.#entries.delete(key);
		this.#journal.forget((key) => key.startsWith(prefix));
	}

	/** Keeps a copy of a count Redis answered with (or forgets it, when Redis has none). */
	mirror(key: string, kind: string, count: number, at: number, expiresAt: number, now: number): void {
		if (count <= 0 || expiresAt <= now) {
			this.#entries.delete(key);
			return;
		}

		const existing = this.#entries.use(key);
		if (existing) {
			existing.count = count;
			existing.at = at;
			existing.expiresAt = expiresAt;
			existing.held = false;
			return;
		}

		this.#entries.makeRoom(1);
		this.#entries.set(key, { kind, count, at, previousAt: 0, expiresAt, held: false });
	}

	/**
	 * Hands over every journaled change to merge into Redis, each with its count in
	 * memory as it stands now, and forgets them. With `copies` (Redis lost its data),
	 * every other live count is handed over too, as a change of nothing: merged, it puts
	 * back at least what memory knew.
	 */
	takeJournal(now: number, copies: boolean): Map<string, Handover> {
		const taken = new Map<string, Handover>();
		for (const [key, change] of this.#journal.take()) {
			const entry = this.#entries.peek(key);
			const live = entry && entry.expiresAt > now;
			taken.set(key, { change, held: live ? { count: entry.count, at: entry.at, expiresAt: entry.expiresAt } : undefined });
		}

		if (!copies) return taken;
		for (const [key, entry] of this.#entries.entries()) {
			if (taken.has(key) || entry.expiresAt <= now) continue;
			taken.set(key, {
				change: { kind: entry.kind, reset: false, added: 0, at: entry.at },
				held: { count: entry.count, at: entry.at, expiresAt: entry.expiresAt },
			});
		}

		return taken;
	}

	/** Puts back changes that could not be merged, before any made since. */
	restoreJournal(changes: ReadonlyMap<string, Change>): void {
		this.#journal.restore(changes);
	}
}
