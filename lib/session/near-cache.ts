import type { SessionData } from 'express-session';
import type { OnceLogger } from '../logger.js';
import { type MaybePromise, whenKnown } from '../maybe-async.js';
import type { Failover } from '../redis/failover.js';
import type { MemorySide } from './memory-side.js';
import type { StoreConfig } from './options.js';
import type { OutageJournal } from './outage-journal.js';
import { parseSessionText } from './session-text.js';

/** A read of a session in flight: an invalidation meanwhile makes what it brings stale. */
interface Watch {
	stale: boolean;
}

/**
 * The copies of sessions the store keeps in memory, seen as a cache of Redis: which of
 * them may answer a read with no round trip, and which Redis said are no longer current.
 *
 * The copies are the memory side's (the same ones that serve an outage). Redis tracks
 * every key the store's connection reads (RESP3 `CLIENT TRACKING`, see redis/tracking.ts)
 * and tells it when another connection changes, destroys or expires one: the copy is
 * dropped. A copy serves a read only when the store is on Redis, the copy was read or
 * written on the connection that is up now (each lost connection starts a new
 * generation: a copy from before it may have missed a message), and Redis answered a
 * command sent within `nearCacheMaxLagMs` (its messages were still arriving).
 */
export class NearCache {
	readonly #memory: MemorySide;
	readonly #journal: OutageJournal;
	readonly #config: StoreConfig;
	readonly #log: OnceLogger;
	readonly #reads = new Map<string, Set<Watch>>();
	#failover: Failover | undefined;
	/** A PING of `#proveSoon` is in flight. */
	#proving = false;
	#serves = false;
	#generation = 0;

	constructor(memory: MemorySide, journal: OutageJournal, config: StoreConfig, log: OnceLogger) {
		this.#memory = memory;
		this.#journal = journal;
		this.#config = config;
		this.#log = log;
	}

	/**
	 * Follows the store's failover: a fallback starts a new generation, and a recovery
	 * drops the copies that may have missed a change while the link was down (Redis is the
	 * truth again; what still waits to be written back stays). With `tracked`, copies of
	 * the current generation serve reads.
	 */
	attach(failover: Failover, tracked: boolean): void {
		this.#failover = failover;
		this.#serves = tracked && this.#config.nearCache;
		failover.on('fallback', () => this.#generation++);
		failover.on('recover', () => this.#memory.forgetAll((sid) => this.#journal.isPending(sid)));
	}

	/** The generation a copy made now belongs to. */
	get generation(): number {
		return this.#generation;
	}

	/**
	 * The session `sid` as its copy serves a read now, parsed (a copy that does not parse
	 * is dropped, and is no session: `null`); `undefined` when the read must go to Redis.
	 * At once with a serializer that answers at once (JSON).
	 */
	session(sid: string): MaybePromise<SessionData | null> | undefined {
		const text = this.#text(sid);
		if (text === undefined) return undefined;
		return whenKnown(parseSessionText(this.#config, this.#log, sid, text), (session) => {
			if (!session) this.#memory.forget(sid);
			return session;
		});
	}

	/**
	 * The text of `sid` if its copy may answer a read with no round trip: it is current,
	 * and neither a destroy nor a write of the outage waits to reach Redis (the read then
	 * takes the long way, which sees them).
	 */
	#text(sid: string): string | undefined {
		const journal = this.#journal;
		if (journal.isDestroyed(sid) || journal.hasPendingWrite(sid) || this.#memory.isDestroyed(sid)) return undefined;
		const failover = this.#failover;
		if (!this.#serves || !failover || failover.backend !== 'redis') return undefined;
		const lag = Date.now() - failover.answeredSentAt;
		if (lag > this.#config.nearCacheMaxLagMs) return undefined;
		if (this.#memory.info(sid)?.generation !== this.#generation) return undefined;
		const text = this.#memory.text(sid);
		if (text !== undefined && lag > this.#config.nearCacheMaxLagMs / 2) this.#proveSoon(failover);
		return text;
	}

	/**
	 * Sends one PING in the background (one at a time), once a read was served here past
	 * half of `nearCacheMaxLagMs` since Redis last answered: under traffic, its answer
	 * renews the proof that invalidations still arrive before the period ends, so that no
	 * read has to go to Redis for it. A PING that fails or misses the deadline makes the
	 * store fall back, as any command would; one that Redis refuses (an ACL) proves
	 * nothing, and reads prove the link themselves.
	 */
	#proveSoon(failover: Failover): void {
		if (this.#proving) return;
		this.#proving = true;
		void failover.ping().finally(() => {
			this.#proving = false;
		});
	}

	/**
	 * Runs `read` of `sid` from Redis; `stale` tells whether Redis said meanwhile that the
	 * session changed (its reply may then predate the change: no copy is kept of it).
	 */
	async read<T>(sid: string, read: () => Promise<T>): Promise<{ value: T; stale: boolean }> {
		const watch: Watch = { stale: false };
		const reads = this.#reads.get(sid) ?? new Set();
		this.#reads.set(sid, reads.add(watch));
		try {
			return { value: await read(), stale: watch.stale };
		} finally {
			reads.delete(watch);
			if (reads.size === 0) this.#reads.delete(sid);
		}
	}

	/**
	 * Redis says another connection changed, destroyed or expired `key` (`null`: every
	 * key): the copy held here is no longer current. A session still waiting to be written
	 * back is kept: it is the newest this instance knows of.
	 */
	invalidated(key: string | null): void {
		if (key === null) {
			for (const reads of this.#reads.values()) for (const watch of reads) watch.stale = true;
			this.#memory.forgetAll((sid) => this.#journal.isPending(sid));
			return;
		}

		if (!key.startsWith(this.#config.prefix)) return;
		const sid = key.slice(this.#config.prefix.length);
		for (const watch of this.#reads.get(sid) ?? []) watch.stale = true;
		if (!this.#journal.isPending(sid)) this.#memory.forget(sid);
	}
}
