import type { SessionData } from 'express-session';
import type { OnceLogger } from '../logger.js';
import { invalidOption } from '../options/checks.js';
import { isRedisFailure, type RedisClient } from '../redis/client.js';
import type { Failover } from '../redis/failover.js';
import type { MemorySide } from './memory-side.js';
import { type StoreConfig, ttlMs } from './options.js';
import { type RedisSessions, TOMBSTONE } from './redis-sessions.js';
import { INDEX_ADD, INDEX_LIST, INDEX_PRUNE, READ_WITH_TTL } from './user-index-scripts.js';

/** One live session of a user, as {@link ResilientStore.sessionsOf} lists it. */
export interface UserSession {
	/** The session id. */
	readonly id: string;
	/** The session, as `get` would return it. */
	readonly session: SessionData;
	/** When it expires unless used again; `null` when sessions do not expire (`disableTTL`). */
	readonly expiresAt: Date | null;
}

/** Options of {@link ResilientStore.destroySessionsOf}. */
export interface DestroySessionsOfOptions {
	/** A session id to keep: usually the current one (`req.sessionID`), so only the other devices are logged out. */
	readonly except?: string;
}

/** What the store lends the index. */
export interface UserIndexLinks {
	readonly config: StoreConfig;
	readonly log: OnceLogger;
	readonly memory: MemorySide;
	readonly client?: RedisClient;
	readonly failover?: Failover;
	readonly sessions?: RedisSessions;
	/** The store's own destroy (tombstone, journal during an outage). */
	readonly destroy: (sid: string) => Promise<void>;
	/** Whether this instance knows `sid` destroyed (a destroy not yet written back). */
	readonly isDestroyed: (sid: string) => boolean;
}

type Run = <T>(operation: string, command: () => Promise<T>) => Promise<T>;

interface Entry {
	readonly id: string;
	readonly score: string;
}

/**
 * Each user's sessions, for `sessionsOf` and `destroySessionsOf`.
 *
 * In Redis, one sorted set per user, `resilient-session:user:{<user id>}:<prefix>`,
 * holds the user's session ids, each scored by when its entry may be dropped: one
 * lifetime after the session's expiry as last written or renewed, so that a session
 * renewed by reads (which do not know its user) is never dropped while it lives. The
 * user id is the key's hash tag: one slot per user, never one for everybody. Every
 * write of a session sends the index update in the same tick (node-redis pipelines
 * them: no extra round trip); the sessions live on other slots, so the index may name
 * ids whose session is gone or now belongs to someone else: reads check every session
 * and drop such ids.
 *
 * `resilient-session:ended:{<user id>}:<prefix>` records the last time the user's
 * sessions were all ended (and the id kept), for `tombstoneTtlMs`: a session of that
 * user written back after an outage by an instance that did not know of the end, and
 * last written before it, is destroyed right after its write-back.
 *
 * During an outage, the user's sessions held by this instance are destroyed at once and
 * the end of the whole user is journaled, to be replayed first on recovery.
 */
export class UserIndex {
	readonly #links: UserIndexLinks;
	readonly #userId: ((session: SessionData) => string | undefined) | undefined;
	/**
	 * What this instance last wrote to the index, by session id (bounded by `memory.max`):
	 * the user (`null`: nobody, so a write of an anonymous session parses nothing) and score.
	 */
	readonly #indexed = new Map<string, { user: string | null; score: number }>();
	/** Users whose sessions were ended during the outage, to end in Redis on recovery. */
	readonly #ended = new Map<string, { at: number; except: string }>();
	/** Sessions written back after an outage, to check against their user's end. */
	#rewritten: Array<{ sid: string; user: string; at: number }> = [];

	constructor(links: UserIndexLinks) {
		this.#links = links;
		this.#userId = links.config.userId;
	}

	/** Whether sessions are indexed by user (the `userId` option). */
	get enabled(): boolean {
		return this.#userId !== undefined;
	}

	/** Whether ends of users made during the outage, or write-backs to check, wait for Redis. */
	get pending(): boolean {
		return this.#ended.size > 0 || this.#rewritten.length > 0;
	}

	/** The user `session` belongs to, if any. */
	userOf(session: SessionData): string | undefined {
		const user: unknown = this.#userId?.(session);
		if (typeof user === 'number' && Number.isFinite(user)) return String(user);
		return typeof user === 'string' && user !== '' ? user : undefined;
	}

	/**
	 * Sends, with the session write `write` (already issued, same tick), the update of
	 * the session's index entry: added to its user's, removed from its previous user's.
	 * `previousText` is the copy this instance held before the write, if any. Given
	 * `writtenAt` (a write-back), the session is checked later against its user's end.
	 */
	withWrite<T>(write: Promise<T>, sid: string, session: SessionData, ttl: number, previousText?: string, writtenAt?: number): Promise<T> {
		if (!this.enabled || !this.#links.client) return write;
		const user = this.userOf(session);
		const previous = this.#knownUser(sid, previousText);
		const commands: Array<Promise<unknown>> = [write];
		if (user !== undefined) commands.push(this.#add(sid, user, ttl));
		else this.#remember(sid, null, 0);
		if (typeof previous === 'string') {
			if (previous !== user) commands.push(this.#remove(previous, sid));
		} else if (previous) {
			commands.push(previous.then((before) => before !== undefined && before !== user && this.#remove(before, sid)));
		}

		return Promise.all(commands).then(async () => {
			const outcome = await write;
			// Only a session really written back can be one an end must still reach.
			if (user !== undefined && writtenAt !== undefined && outcome === 'written') {
				this.#rewritten.push({ sid, user, at: writtenAt });
			}

			return outcome;
		});
	}

	/**
	 * Sends, with the tombstone `bury` (already issued), the removal of `sid` from its
	 * user's index, when this instance knows the user: from what it indexed, or from
	 * `previousText`, the copy it held.
	 */
	withDestroy<T>(bury: Promise<T>, sid: string, previousText?: string): Promise<T> {
		if (!this.enabled || !this.#links.client) return bury;
		const user = this.#knownUser(sid, previousText);
		if (user === undefined) return bury;
		const removed = typeof user === 'string' ? this.#remove(user, sid) : user.then((u) => u && this.#remove(u, sid));
		return Promise.all([bury, removed]).then(() => {
			this.#indexed.delete(sid);
			return bury;
		});
	}

	/**
	 * The store extended the expiry of `sid` to `ttl` from now (a read that renewed it, a
	 * touch). The index entry is renewed too when it would otherwise have less than half
	 * a lifetime left over the session: once every half lifetime of an active session,
	 * sent on its own and awaited by nobody.
	 */
	extended(sid: string, session: SessionData, ttl: number): void {
		const { client, failover, config } = this.#links;
		if (!this.enabled || !client || config.disableTTL || failover?.backend !== 'redis') return;
		const user = this.userOf(session);
		if (user === undefined) return;
		const known = this.#indexed.get(sid);
		if (known?.user === user && known.score - (Date.now() + ttl) >= ttl / 2) return;
		failover.run('ZADD', () => this.#add(sid, user, ttl)).catch(() => {});
	}

	/** The user's live sessions: from Redis, or those this instance holds when it cannot reach Redis. */
	async list(user: unknown): Promise<UserSession[]> {
		const id = this.#check(user);
		const failover = this.#links.failover;
		if (!failover || failover.backend === 'memory') return this.#listHeld(id);
		try {
			return await this.#listRedis(id, (operation, command) => failover.runWhenReady(operation, command));
		} catch (error) {
			if (!isRedisFailure(error)) throw error;
			failover.trip(error as Error);
			return this.#listHeld(id);
		}
	}

	/**
	 * Destroys every session of the user but `except`, through the store's destroy, and
	 * records the end. When Redis cannot be reached, those this instance holds are
	 * destroyed at once and the end is journaled for recovery. Resolves with the count.
	 */
	async end(user: unknown, options: unknown): Promise<number> {
		const id = this.#check(user);
		const except = checkExcept(options);
		const mark = { at: Date.now(), except: except ?? '' };
		const failover = this.#links.failover;
		if (!failover || failover.backend === 'memory') return this.#endHeld(id, mark);
		let live: UserSession[];
		try {
			live = await this.#listRedis(id, (operation, command) => failover.runWhenReady(operation, command), mark);
		} catch (error) {
			if (!isRedisFailure(error)) throw error;
			failover.trip(error as Error);
			return this.#endHeld(id, mark);
		}

		const ended = live.filter((session) => session.id !== except);
		// Known now: each destroy takes its id out of the index with its tombstone.
		for (const session of ended) this.#remember(session.id, id, 0);
		await Promise.all(ended.map((session) => this.#links.destroy(session.id)));
		return ended.length;
	}

	/**
	 * First step of a write-back: ends in Redis the users ended here during the outage
	 * (their end recorded, their sessions there destroyed). Rejects when Redis fails.
	 * Resolves with how many sessions it destroyed.
	 */
	async replayEnds(): Promise<number> {
		const { failover, sessions, memory } = this.#links;
		const run: Run = (operation, command) => failover!.run(operation, command);
		let destroyed = 0;
		for (const [user, mark] of [...this.#ended]) {
			try {
				const live = await this.#listRedis(user, run, mark);
				const ended = live.filter((session) => session.id !== mark.except);
				await Promise.all(ended.map(({ id }) => run('SET', () => this.withDestroy(sessions!.bury(id), id))));
				for (const { id } of ended) memory.bury(id);
				destroyed += ended.length;
			} catch (error) {
				if (isRedisFailure(error)) throw error;
				this.#refused(error);
			}

			if (this.#ended.get(user) === mark) this.#ended.delete(user);
		}

		return destroyed;
	}

	/**
	 * Last step of a write-back: destroys the sessions just written back whose user's
	 * sessions were ended (by any instance) after they were last written, unless kept by
	 * that end. Rejects when Redis fails. Resolves with how many it destroyed.
	 */
	async checkRewritten(): Promise<number> {
		if (this.#rewritten.length === 0) return 0;
		const { failover, client, sessions, memory } = this.#links;
		const rewritten = this.#rewritten;
		const users = [...new Set(rewritten.map(({ user }) => user))];
		let ends: Array<string | null>;
		try {
			ends = (await failover!.run('GET', () =>
				Promise.all(users.map((user) => client!.get(this.#markerKey(user)))),
			)) as Array<string | null>;
		} catch (error) {
			if (isRedisFailure(error)) throw error;
			this.#refused(error);
			this.#rewritten = [];
			return 0;
		}

		const endOf = new Map(users.map((user, index) => [user, parseMark(ends[index])]));
		const stale = rewritten.filter(({ sid, user, at }) => {
			const end = endOf.get(user);
			return end !== undefined && end.at > at && end.except !== sid;
		});
		await Promise.all(stale.map(({ sid }) => failover!.run('SET', () => this.withDestroy(sessions!.bury(sid), sid))));
		for (const { sid } of stale) memory.bury(sid);
		const checked = new Set(rewritten);
		this.#rewritten = this.#rewritten.filter((entry) => !checked.has(entry));
		return stale.length;
	}

	#indexKey(user: string): string {
		return `resilient-session:user:{${user}}:${this.#links.config.prefix}`;
	}

	#markerKey(user: string): string {
		return `resilient-session:ended:{${user}}:${this.#links.config.prefix}`;
	}

	#check(user: unknown): string {
		if (!this.enabled) {
			throw new TypeError('resilient-session: sessionsOf() and destroySessionsOf() need the `userId` option of ResilientStore');
		}

		if (typeof user === 'number' && Number.isFinite(user)) return String(user);
		if (typeof user !== 'string' || user === '') invalidOption('userId', 'a non-empty string', user);
		return user as string;
	}

	/** Adds `sid` to `user`'s index for `ttl` ms; destroys what the bound drops. */
	async #add(sid: string, user: string, ttl: number): Promise<void> {
		const { config, client } = this.#links;
		const now = Date.now();
		const score = config.disableTTL ? Infinity : now + 2 * ttl;
		this.#remember(sid, user, score);
		const reply = INDEX_ADD.run(client!, [this.#indexKey(user)], [now, sid, score === Infinity ? '+inf' : score, config.maxSessionsPerUser]);
		const dropped = (await this.#tolerate(reply)) as string[] | undefined;
		// Not awaited: the request that made one session too many does not wait for the others' end.
		for (const id of dropped ?? []) this.#links.destroy(String(id)).catch(() => {});
	}

	#remove(user: string, sid: string): Promise<unknown> {
		return this.#tolerate(this.#links.client!.zRem(this.#indexKey(user), sid) as Promise<unknown>);
	}

	/** A refusal of an index command (an ACL, say) is logged and never fails the session's own command. */
	async #tolerate(reply: Promise<unknown>): Promise<unknown> {
		try {
			return await reply;
		} catch (error) {
			if (isRedisFailure(error)) throw error;
			this.#refused(error);
			return undefined;
		}
	}

	#refused(error: unknown): void {
		this.#links.log.error(
			'user-index-refused',
			`resilient-session: Redis refused a command on a user's index (${(error as Error).message}): ` +
				'sessionsOf() and destroySessionsOf() may miss sessions (allow the keys resilient-session:*)',
		);
	}

	/**
	 * The user `sid` belonged to before this write or destroy, as far as this instance
	 * knows: from what it indexed, else from the copy it held (parsed, so maybe later).
	 */
	#knownUser(sid: string, previousText: string | undefined): string | undefined | Promise<string | undefined> {
		const record = this.#indexed.get(sid);
		if (record) return record.user ?? undefined;
		return previousText === undefined ? undefined : this.#userOfText(previousText);
	}

	#remember(sid: string, user: string | null, score: number): void {
		this.#indexed.delete(sid);
		this.#indexed.set(sid, { user, score });
		if (this.#indexed.size > this.#links.config.memory.max) this.#indexed.delete(this.#indexed.keys().next().value!);
	}

	async #userOfText(text: string): Promise<string | undefined> {
		try {
			const session: unknown = await this.#links.config.serializer.parse(text);
			return session !== null && typeof session === 'object' ? this.userOf(session as SessionData) : undefined;
		} catch {
			return undefined;
		}
	}

	/**
	 * The user's sessions in Redis, read through `run`; with `mark`, the end of the user is
	 * recorded first. Ids whose session is gone, destroyed or someone else's are dropped
	 * from the index.
	 */
	async #listRedis(user: string, run: Run, mark?: { at: number; except: string }): Promise<UserSession[]> {
		const { client, config } = this.#links;
		const keys = [this.#indexKey(user), this.#markerKey(user)];
		const args = mark ? [Date.now(), mark.at, mark.except, config.tombstoneTtlMs] : [Date.now()];
		const flat = ((await run('ZRANGE', () => INDEX_LIST.run(client!, keys, args))) as unknown[]).map(String);
		const entries: Entry[] = [];
		for (let index = 0; index < flat.length; index += 2) entries.push({ id: flat[index], score: flat[index + 1] });
		if (entries.length === 0) return [];
		const reads = (await run('GET', () =>
			Promise.all(entries.map(({ id }) => READ_WITH_TTL.run(client!, [config.prefix + id]))),
		)) as Array<[string, number] | null>;

		const live: UserSession[] = [];
		const gone: Entry[] = [];
		const now = Date.now();
		await Promise.all(
			entries.map(async (entry, index) => {
				const read = reads[index];
				if (!read || String(read[0]) === TOMBSTONE || this.#links.isDestroyed(entry.id)) return gone.push(entry);
				const session = await this.#parse(String(read[0]));
				if (!session) return;
				if (this.userOf(session) !== user) return gone.push(entry);
				const ttl = Number(read[1]);
				live.push({ id: entry.id, session, expiresAt: ttl < 0 ? null : new Date(now + ttl) });
			}),
		);

		if (gone.length > 0) {
			const pairs = gone.flatMap(({ id, score }) => [id, score]);
			await run('ZREM', () => this.#tolerate(INDEX_PRUNE.run(client!, [keys[0]], pairs)));
		}

		return sortByExpiry(live);
	}

	async #parse(text: string): Promise<SessionData | undefined> {
		try {
			const session: unknown = await this.#links.config.serializer.parse(text);
			return session !== null && typeof session === 'object' && !Array.isArray(session) ? (session as SessionData) : undefined;
		} catch {
			return undefined;
		}
	}

	/** The user's sessions this instance holds (memory-only, or during an outage). */
	async #listHeld(user: string): Promise<UserSession[]> {
		const { memory, config } = this.#links;
		const now = Date.now();
		const held = (await memory.all()).filter((session) => this.userOf(session) === user);
		return sortByExpiry(
			held.map(({ id, ...session }) => ({
				id,
				session,
				expiresAt: config.disableTTL ? null : new Date(now + ttlMs(config, session)),
			})),
		);
	}

	/** Ends the sessions this instance holds, and journals the end of the user for Redis. */
	async #endHeld(user: string, mark: { at: number; except: string }): Promise<number> {
		const ended = (await this.#listHeld(user)).filter(({ id }) => id !== mark.except);
		// Known now: the write-back of each tombstone takes its id out of the index too.
		if (this.#links.client) for (const { id } of ended) this.#remember(id, user, 0);
		await Promise.all(ended.map(({ id }) => this.#links.destroy(id)));
		if (this.#links.client) {
			this.#ended.delete(user);
			this.#ended.set(user, mark);
			if (this.#ended.size > this.#links.config.maxTombstones) {
				this.#ended.delete(this.#ended.keys().next().value!);
				this.#links.log.error(
					'ended-users-full',
					`resilient-session: more than ${this.#links.config.maxTombstones} users' sessions ended during the outage; ` +
						'the oldest end is forgotten, and sessions of that user held by other instances may survive it',
				);
			}
		}

		return ended.length;
	}
}

const checkExcept = (options: unknown): string | undefined => {
	if (options === undefined) return undefined;
	if (options === null || typeof options !== 'object') invalidOption('options', 'an object such as { except }', options);
	const except = (options as DestroySessionsOfOptions).except;
	if (except !== undefined && typeof except !== 'string') invalidOption('except', 'a session id (a string)', except);
	return except;
};

/** A marker's value, `<epoch ms>:<id kept>`. */
const parseMark = (value: string | null): { at: number; except: string } | undefined => {
	if (value === null) return undefined;
	const colon = String(value).indexOf(':');
	return colon < 0 ? undefined : { at: Number(String(value).slice(0, colon)), except: String(value).slice(colon + 1) };
};

/** Latest expiry first (the most recently used, with a rolling lifetime); no expiry before all. */
const sortByExpiry = (sessions: UserSession[]): UserSession[] =>
	sessions.sort((a, b) => (b.expiresAt?.getTime() ?? Infinity) - (a.expiresAt?.getTime() ?? Infinity));
