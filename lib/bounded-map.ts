/**
 * A `Map` bounded to `max` entries that drops the least recently used first. The one
 * "drop the oldest" structure of the package: the counts in memory, the journal of
 * counts changed during an outage, and the store's journal of sessions destroyed,
 * written or touched during one all live in one.
 *
 * Maps keep insertion order, so moving an entry last on each use keeps the least
 * recently used first.
 */
export class BoundedMap<V> {
	readonly max: number;
	readonly #entries = new Map<string, V>();

	constructor(max: number) {
		this.max = max;
	}

	get size(): number {
		return this.#entries.size;
	}

	/** The value of `key`, without counting it as a use. */
	peek(key: string): V | undefined {
		return this.#entries.get(key);
	}

	/** The value of `key`, now the most recently used. */
	use(key: string): V | undefined {
		const value = this.#entries.get(key);
		if (value === undefined) return undefined;
		this.#entries.delete(key);
		this.#entries.set(key, value);
		return value;
	}

	/** Sets `key` as the most recently used. Makes no room: see {@link makeRoom}. */
	set(key: string, value: V): void {
		this.#entries.delete(key);
		this.#entries.set(key, value);
	}

	delete(key: string): boolean {
		return this.#entries.delete(key);
	}

	clear(): void {
		this.#entries.clear();
	}

	entries(): IterableIterator<[string, V]> {
		return this.#entries.entries();
	}

	/**
	 * Drops least recently used entries until `needed` more fit. Only entries that
	 * `mayDrop` allows go, looking at no more than `scan` of them for each one dropped.
	 * Calls `dropped` for each. Returns `false` when no room could be made.
	 */
	makeRoom(
		needed: number,
		mayDrop: (key: string, value: V) => boolean = () => true,
		dropped: (key: string, value: V) => void = () => {},
		scan = Infinity,
	): boolean {
		while (this.#entries.size + needed > this.max) {
			let victim: string | undefined;
			let scanned = 0;
			for (const [key, value] of this.#entries) {
				if (mayDrop(key, value)) {
					victim = key;
					break;
				}

				if (++scanned >= scan) break;
			}

			if (victim === undefined) return false;
			const value = this.#entries.get(victim)!;
			this.#entries.delete(victim);
			dropped(victim, value);
		}

		return true;
	}
}
