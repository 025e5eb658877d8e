import type { RedisStore } from 'connect-redis';
import { isCluster, type RedisClient } from '../redis/client.js';
import { RedisScript } from '../redis/script.js';
import { ENDS_AT_FIELD, LUA_ENDS_AT_PATTERN } from './lifetime.js';
import type { StoreConfig } from './options.js';

/**
 * What a destroyed session's key holds for `tombstoneTtlMs`: JSON `null`, which
 * connect-redis (and any reader that parses it) takes for "no session". A `set` or
 * `touch` of the id is refused while it is there, so that a destroy wins over a save that
 * arrives after it, on every instance; it lives in the session's own key, so a check and
 * a write touch a single key (one slot on a cluster) and are atomic.
 */
export const TOMBSTONE = 'null';

/** Whether the text of a session key is a tombstone (checked by length first in Lua: cheap). */
const LUA_IS_TOMBSTONE = `
local function is_tombstone(key)
	return redis.call('STRLEN', key) == 4 and redis.call('GET', key) == 'null'
end
`;

/**
 * `ends_at(text)`: when a session with an absolute lifetime ends (see lifetime.ts), as the
 * digits its text holds, or nil; `now_ms()`: Redis's clock, in milliseconds.
 */
const LUA_LIFETIME = `
local function ends_at(text)
	return text and string.match(text, '${LUA_ENDS_AT_PATTERN}')
end
local function now_ms()
	local time = redis.call('TIME')
	return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end
`;

// Every script below that changes the key reads it again last. Redis forgets that a
// connection tracks a key (RESP3 `CLIENT TRACKING`, see redis/tracking.ts) when that
// connection writes it; the read after the write keeps the store told when any other
// instance changes or destroys the session later. It costs nothing on the wire.

/**
 * Reads a session and, when due, extends its expiry in the same round trip, to the time
 * to live that express-session's touch would give it at the end of the request: the
 * cookie's full `originalMaxAge`, or the store's `ttl` for a cookie without one
 * (ARGV[1]); both in milliseconds. Due (lazy renewal) means the expiry would move by at
 * least `touchAfterMs` (ARGV[2]) or a tenth of the lifetime, whichever is less, as
 * `renewalThresholdMs` computes it. The touch of an unchanged session then has nothing
 * left to do. connect-redis needs two round trips for this (`GET`, then `EXPIRE` from
 * touch), which is why reads do not go through it when sessions are JSON and `ttl` is a
 * number. With an absolute lifetime (ARGV[3] = '1'), never past the session's end.
 * Returns `[text, ttl, left]` (`left`: the time to live now, ms), or nil; a tombstone is
 * returned as it is and not renewed.
 */
const READ_AND_RENEW = new RedisScript(`${LUA_LIFETIME}
local text = redis.call('GET', KEYS[1])
if not text then return false end
if text == 'null' then return { text, 0, 0 } end
local ttl = tonumber(ARGV[1])
-- express-session writes the cookie first, and the cookie its originalMaxAge first:
-- reading it off the front of the text spares decoding the whole session.
local maxAge = string.match(text, '^{"cookie":{"originalMaxAge":([^,}]+)')
if maxAge == nil then
	local ok, session = pcall(cjson.decode, text)
	if ok and type(session) == 'table' and type(session.cookie) == 'table' then
		maxAge = session.cookie.originalMaxAge
	end
end
maxAge = tonumber(maxAge)
if maxAge then ttl = math.ceil(maxAge) end
local ends = ARGV[3] == '1' and ends_at(text)
if ends then ttl = math.min(ttl, tonumber(ends) - now_ms()) end
local left = redis.call('PTTL', KEYS[1])
if ttl > 0 and (left < 0 or ttl - left >= math.min(tonumber(ARGV[2]), ttl / 10)) then
	redis.call('PEXPIRE', KEYS[1], ttl)
	redis.call('STRLEN', KEYS[1])
	left = ttl
end
return { text, ttl, left }
`);

/**
 * Writes a session unless its key holds a tombstone. ARGV: text, time to live in ms
 * (empty: no expiry), `NX` to write only if the key is absent, and '1' when sessions have
 * an absolute lifetime: the end the text carries gives way to an earlier one the key
 * holds (the session as first stored, perhaps by another instance), a text without one
 * takes the key's, and the end caps the time to live. Returns 1 when it wrote, 0 when the key holds a tombstone (or exists, with `NX`),
 * or the session has reached its end.
 */
const WRITE_UNLESS_DESTROYED = new RedisScript(`${LUA_IS_TOMBSTONE}${LUA_LIFETIME}
local key = KEYS[1]
local text = ARGV[1]
local ttl = ARGV[2]
if is_tombstone(key) then return 0 end
if ARGV[3] == 'NX' and redis.call('EXISTS', key) == 1 then return 0 end
if ARGV[4] == '1' then
	local ends = ends_at(text)
	local held = ends_at(redis.call('GET', key))
	if ends and held and tonumber(held) < tonumber(ends) then
		text = string.sub(text, 1, #text - #ends - 1) .. held .. '}'
		ends = held
	elseif held and not ends and string.sub(text, -1) == '}' then
		local separator = text == '{}' and '' or ','
		text = string.sub(text, 1, -2) .. separator .. '"${ENDS_AT_FIELD}":' .. held .. '}'
		ends = held
	end
	if ends then
		local left = tonumber(ends) - now_ms()
		if left <= 0 then return 0 end
		if ttl == '' or left < tonumber(ttl) then ttl = left end
	end
end
if ttl == '' then
	redis.call('SET', key, text)
else
	redis.call('SET', key, text, 'PX', ttl)
end
redis.call('STRLEN', key)
return 1
`);

/**
 * Extends a session's expiry (ARGV[1], ms) unless its key holds a tombstone; with an
 * absolute lifetime (ARGV[2] = '1'), never past the session's end. Returns 1 if it did, 0
 * if there is no such key (or the session has reached its end), -1 for a tombstone.
 */
const RENEW_UNLESS_DESTROYED = new RedisScript(`${LUA_IS_TOMBSTONE}${LUA_LIFETIME}
if is_tombstone(KEYS[1]) then return -1 end
local ttl = tonumber(ARGV[1])
local ends = ARGV[2] == '1' and ends_at(redis.call('GET', KEYS[1]))
if ends then ttl = math.min(ttl, tonumber(ends) - now_ms()) end
if ttl <= 0 then return 0 end
local renewed = redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('STRLEN', KEYS[1])
return renewed
`);

/** A session's text as Redis holds it, and how long the read gave it to live. */
export interface SessionRead {
	readonly text: string;
	/** The session's full time to live (ms), when the read renews expiries itself. */
	readonly ttl?: number;
	/** The time it has left to live (ms), when the read renews expiries itself. */
	readonly left?: number;
}

/** What a write found: `written`, or the key held a tombstone (or, with `NX`, any value). */
export type WriteOutcome = 'written' | 'refused';

/** Keys read at once by the bulk reads (`MGET`), so that no reply grows without bound. */
const BULK_READ = 500;

/**
 * The sessions' commands on Redis, each one round trip. Sessions are written here
 * rather than through connect-redis's `set`, which would serialize them a second time,
 * round their expiry up to whole seconds, and overwrite a tombstone; the keys and their
 * text stay exactly connect-redis's, so both can read and write the same sessions.
 * connect-redis still finds the keys (`SCAN`, on every master of a cluster).
 */
export class RedisSessions {
	readonly #client: RedisClient;
	readonly #connectRedis: RedisStore;
	readonly #config: StoreConfig;
	/** Whether reads renew the expiry in the same round trip (see `READ_AND_RENEW`). */
	readonly renewOnRead: boolean;

	constructor(client: RedisClient, connectRedis: RedisStore, config: StoreConfig) {
		this.#client = client;
		this.#connectRedis = connectRedis;
		this.#config = config;
		this.renewOnRead =
			config.serializer === JSON && typeof config.ttl === 'number' && !config.disableTouch && !config.disableTTL;
	}

	/** '1' when sessions have an absolute lifetime, for the scripts. */
	get #lifetime(): string {
		return this.#config.absoluteLifetimeMs === undefined ? '' : '1';
	}

	#key(sid: string): string {
		return this.#config.prefix + sid;
	}

	/**
	 * Reads the text of `sid`: with its expiry renewed in the same round trip when it can
	 * be. The text, not a parsed session, so that it is parsed once and kept warm as it is.
	 */
	async read(sid: string): Promise<SessionRead | null> {
		const key = this.#key(sid);
		if (this.renewOnRead) {
			const { ttl, touchAfterMs } = this.#config;
			const args = [(ttl as number) * 1000, touchAfterMs, this.#lifetime];
			const reply = (await READ_AND_RENEW.run(this.#client, [key], args)) as
				| [string, number, number]
				| null;
			return reply && { text: String(reply[0]), ttl: Number(reply[1]), left: Number(reply[2]) };
		}

		const text = (await this.#client.get(key)) as string | null;
		return text === null ? null : { text };
	}

	/**
	 * Writes a session's `text` with its time to live in milliseconds (`PX`: a cookie of
	 * 5 ms must not live a second), unless a tombstone holds its key. With `NX`, only if
	 * Redis has no such key.
	 */
	async write(sid: string, text: string, ttlMs: number, condition?: 'NX'): Promise<WriteOutcome> {
		const ttl = this.#config.disableTTL ? '' : ttlMs;
		const args = [text, ttl, condition ?? '', this.#lifetime];
		const reply = await WRITE_UNLESS_DESTROYED.run(this.#client, [this.#key(sid)], args);
		return Number(reply) === 1 ? 'written' : 'refused';
	}

	/** Extends a session's expiry to `ttlMs`; `refused` when a tombstone holds its key. */
	async renew(sid: string, ttlMs: number): Promise<WriteOutcome | 'missing'> {
		const reply = Number(await RENEW_UNLESS_DESTROYED.run(this.#client, [this.#key(sid)], [ttlMs, this.#lifetime]));
		return reply === 1 ? 'written' : reply === 0 ? 'missing' : 'refused';
	}

	/** Leaves a tombstone under the session's key, for `tombstoneTtlMs`. */
	async bury(sid: string): Promise<void> {
		await this.#client.set(this.#key(sid), TOMBSTONE, {
			expiration: { type: 'PX', value: this.#config.tombstoneTtlMs },
		});
	}

	/**
	 * Every session key's id and text, tombstones left out. `MGET` in slices on a single
	 * server; one `GET` a key on a cluster, where a multi-key command must stay in one slot.
	 */
	async entries(): Promise<Array<[sid: string, text: string]>> {
		const ids: string[] = await this.#connectRedis.ids();
		const texts: Array<string | null> = [];
		if (isCluster(this.#client)) {
			texts.push(...((await Promise.all(ids.map((id) => this.#client.get(this.#key(id))))) as Array<string | null>));
		} else {
			for (let start = 0; start < ids.length; start += BULK_READ) {
				const keys = ids.slice(start, start + BULK_READ).map((id) => this.#key(id));
				texts.push(...((await this.#client.mGet(keys)) as Array<string | null>));
			}
		}

		const entries: Array<[string, string]> = [];
		ids.forEach((id, index) => {
			const text = texts[index];
			if (text !== null && text !== undefined && text !== TOMBSTONE) entries.push([id, String(text)]);
		});
		return entries;
	}

	/**
	 * Deletes every session key, tombstones included; one key at a time on a cluster,
	 * where connect-redis's multi-key `DEL` would cross slots.
	 */
	async clear(): Promise<void> {
		if (!isCluster(this.#client)) return this.#connectRedis.clear();
		const ids: string[] = await this.#connectRedis.ids();
		await Promise.all(ids.map((id) => this.#client.del(this.#key(id))));
	}
}
