// memorystore ships no types; this covers the part of its API the memory side uses.
declare module 'memorystore' {
	import type { SessionData, Store } from 'express-session';

	type Callback<T = unknown> = (error: unknown, value?: T) => void;

	interface MemoryStoreOptions {
		checkPeriod?: number;
		max?: number;
		ttl?: number | ((options: unknown, session: SessionData, sid: string) => number);
		serializer?: { parse(text: string): unknown; stringify(value: unknown): string };
		/** Called by the LRU cache with each entry it drops, overwrites or lets expire. */
		dispose?: (key: string, value: string) => void;
	}

	interface MemoryStore extends Store {
		get(sid: string, callback: Callback<SessionData | undefined>): void;
		set(sid: string, session: SessionData, callback?: Callback): void;
		touch(sid: string, session: SessionData, callback?: Callback): void;
		destroy(sid: string, callback?: Callback): void;
		all(callback: Callback<Record<string, SessionData>>): void;
		ids(callback: Callback<string[]>): void;
		length(callback: Callback<number>): void;
		clear(callback?: Callback): void;
		stopInterval(): void;
		/** The LRU cache that holds the sessions. */
		readonly store: {
			set(key: string, value: string, maxAgeMs: number): boolean;
			get(key: string): string | undefined;
			peek(key: string): string | undefined;
			del(key: string): void;
			keys(): string[];
			forEach(each: (value: string, key: string) => void): void;
		};
	}

	const memorystore: (session: { Store: typeof Store }) => new (options?: MemoryStoreOptions) => MemoryStore;
	export default memorystore;
}
