import type { SessionData } from 'express-session';
import { BoundedMap } from '../bounded-map.js';

/**
 * The absolute lifetime (`absoluteLifetimeMs`): a session ends that long after it was
 * first stored, however active it is. express-session regenerates the session at login
 * (a new id, stored afresh), so that is "that long after login".
 *
 * The end is kept in the session's own text, as its last field:
 * `{"cookie":{…},"user":…,"__resilientSessionEndsAt":1767225600000}` (epoch ms), so that
 * every instance, the write-back after an outage and the scripts on Redis find it where
 * the session is, in one key (atomic, one slot on a cluster). Every write and renewal
 * caps the time to live at it, in Redis and in memory: the session expires at its end
 * by itself. Reads take the field off before express-session sees the session.
 *
 * A session that express-session hands back for saving no longer carries the field
 * (reads took it off): the end comes from the text held before, here or in Redis, the
 * earlier one winning (see the write script in redis-sessions.ts).
 */
export const ENDS_AT_FIELD = '__resilientSessionEndsAt';

/** The field at the end of a session's text, as Lua and JavaScript both match it. */
const ENDS_AT_PATTERN = new RegExp(`,?"${ENDS_AT_FIELD}":(\\d+)}$`);

/** The field as a Lua pattern, for the scripts: `"…":(%d+)}$`. */
export const LUA_ENDS_AT_PATTERN = `"${ENDS_AT_FIELD}":(%d+)}$`;

/** When the session whose text this is ends (epoch ms), if it has an absolute lifetime. */
export const endsAtOf = (text: string | undefined): number | undefined => {
	const match = text === undefined ? null : ENDS_AT_PATTERN.exec(text);
	return match ? Number(match[1]) : undefined;
};

/**
 * The session's text with its end as the last field, in place of any it had. `text` is
 * the JSON of an object, as `JSON.stringify` writes it (the only serializer the option
 * is accepted with).
 */
export const withEndsAt = (text: string, endsAt: number): string => {
	const bare = text.replace(ENDS_AT_PATTERN, '}');
	return `${bare.slice(0, -1)}${bare === '{}' ? '' : ','}"${ENDS_AT_FIELD}":${endsAt}}`;
};

/** Takes the field off a parsed session: nothing of the store's own shows on a session. */
export const withoutEndsAt = <T extends SessionData | null>(session: T): T => {
	if (session && ENDS_AT_FIELD in session) delete (session as unknown as Record<string, unknown>)[ENDS_AT_FIELD];
	return session;
};

/** `ttlMs` cut to what is left until `endsAt` (when there is one), `now` being the time. */
export const capTtl = (ttlMs: number, endsAt: number | undefined, now = Date.now()): number =>
	endsAt === undefined ? ttlMs : Math.min(ttlMs, endsAt - now);

/**
 * The ends of the sessions this instance has read or written lately. A session's end
 * never changes, so it stays known when the copy of the session is dropped (another
 * instance changed the session between a request's read and its write, say): the write
 * then carries the session's real end rather than one that starts anew, and the copy it
 * leaves here expires when the session does. Bounded like the copies (least recently
 * seen dropped first).
 */
export class KnownEnds {
	readonly #ends: BoundedMap<number>;

	constructor(max: number) {
		this.#ends = new BoundedMap(max);
	}

	/** Records the end `text` carries, if any. */
	learn(sid: string, text: string): void {
		const endsAt = endsAtOf(text);
		if (endsAt === undefined) return;
		if (this.#ends.peek(sid) === undefined) this.#ends.makeRoom(1);
		this.#ends.set(sid, endsAt);
	}

	/** The end of `sid`: the one its copy's `text` carries, else the one seen last. */
	of(sid: string, text: string | undefined): number | undefined {
		return endsAtOf(text) ?? this.#ends.use(sid);
	}
}
