import { RedisScript } from '../redis/script.js';
import type { ScriptCall } from './engine.js';
import type { CountModel, Handover } from './memory-counts.js';

/**
 * Lua: a counter over a window that starts at its first count.
 * `window_read(key, window)` returns its count and the window left in ms (a count
 * found without expiry is given one); `window_count(key, window, ttl)` counts one
 * more, with `ttl` from `window_read`, and returns the count and the window left.
 */
export const LUA_WINDOW = `
local function window_read(key, window)
	local c = tonumber(redis.call('GET', key)) or 0
	local ttl = redis.call('PTTL', key)
	if c > 0 and ttl < 0 then redis.call('PEXPIRE', key, window); ttl = window end
	return c, ttl
end
local function window_count(key, window, ttl)
	local c = redis.call('INCR', key)
	if ttl < 0 then redis.call('PEXPIRE', key, window); ttl = window end
	return c, ttl
end
`;

/** The memory model of a window counter of `kind`: it lives `windowMs` from its first count. */
export const windowModel = (kind: string, windowMs: number): CountModel => ({
	kind,
	expiresAt: (entry, now) => (entry.expiresAt > now ? entry.expiresAt : now + windowMs),
});

/**
 * Merges a window counter kept in memory. KEYS: counter. ARGV: reset, added, the
 * count in memory, its window left in ms. The result is never below the count in
 * memory: a Redis that restarted empty does not hand out a fresh allowance.
 */
const MERGE_WINDOW = new RedisScript(`
if ARGV[1] == '1' then redis.call('DEL', KEYS[1]) end
local c = tonumber(redis.call('GET', KEYS[1])) or 0
local merged = math.max(c + tonumber(ARGV[2]), tonumber(ARGV[3]))
if merged <= 0 then redis.call('DEL', KEYS[1]) return 0 end
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 then ttl = tonumber(ARGV[4]) end
if ttl <= 0 then redis.call('DEL', KEYS[1]) return 0 end
redis.call('SET', KEYS[1], merged, 'PX', ttl)
return merged
`);

/** The merge of a window counter whose window is `windowMs`. */
export const mergeWindow =
	(windowMs: number) =>
	(key: string, { change, held }: Handover, now: number): ScriptCall => ({
		script: MERGE_WINDOW,
		keys: [key],
		args: [Number(change.reset), change.added, held?.count ?? 0, held ? held.expiresAt - now : windowMs],
	});
