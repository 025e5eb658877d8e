import { LUA_DECREMENT_LIVE, RedisScript } from '../redis/script.js';
import { LUA_WINDOW } from '../counting/window.js';

// The login guard's scripts, one per hash tag. The check counts an attempt as a failure
// up front (the reservation), atomically with the decision to let it through; recording
// the outcome then only has to undo it for a success (or a response that is neither).

const LUA_PRELUDE = `
if redis.replicate_commands then redis.replicate_commands() end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local function lockout(n, free, base, factor, ceiling)
	if n < free then return 0 end
	return math.min(math.ceil(base * factor ^ math.min(n - free, 64)), ceiling)
end
`;

/**
 * KEYS: pair, username, marker. ARGV: maxFailures, lockoutMs, lockoutFactor,
 * maxLockoutMs, failureWindowMs, maxFailuresPerUsername, usernameWindowMs.
 * Returns { admitted, waitMs, pair failures, ms since the pair's last failure,
 * username failures, username window left in ms }.
 */
export const CHECK_USERNAME = new RedisScript(`${LUA_PRELUDE}${LUA_WINDOW}
local free, base, factor = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local ceiling, keep = tonumber(ARGV[4]), tonumber(ARGV[5])
local limit, window = tonumber(ARGV[6]), tonumber(ARGV[7])
local pair = redis.call('HMGET', KEYS[1], 'n', 't')
local n, t = tonumber(pair[1]) or 0, tonumber(pair[2]) or 0
local reset = tonumber(redis.call('GET', KEYS[3])) or -1
if t <= reset then n = 0 end
local u, ttl = window_read(KEYS[2], window)
local wait = 0
if n >= free then wait = t + lockout(n, free, base, factor, ceiling) - now end
if u >= limit and ttl > wait then wait = ttl end
if wait > 0 then return {0, wait, n, now - t, u, ttl} end
local at = now
if at <= reset then at = reset + 1 end
n = n + 1
redis.call('HSET', KEYS[1], 'n', n, 't', at, 'p', t)
redis.call('PEXPIRE', KEYS[1], at - now + lockout(n, free, base, factor, ceiling) + keep)
u, ttl = window_count(KEYS[2], window, ttl)
return {1, 0, n, now - at, u, ttl}
`);

/**
 * KEYS: ip. ARGV: maxFailuresPerIp, ipWindowMs.
 * Returns { admitted, waitMs, failures, window left in ms }.
 */
export const CHECK_IP = new RedisScript(`${LUA_WINDOW}
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local c, ttl = window_read(KEYS[1], window)
if c >= limit then return {0, ttl, c, ttl} end
c, ttl = window_count(KEYS[1], window, ttl)
return {1, 0, c, ttl}
`);

/** Lua: `uncount(key)` takes a reservation back from a windowed counter, deleting it at 0. */
const LUA_UNCOUNT = `${LUA_DECREMENT_LIVE}
local function uncount(key)
	local c = decrement_live(key)
	if c and c <= 0 then redis.call('DEL', key) end
end
`;

/**
 * Settles a reserved attempt that was not a failure. KEYS: pair, username.
 * ARGV: 'success' (resets the pair) or 'neutral' (takes the reservation back).
 * Either way the username's count loses the reservation: a success resets the
 * username+address count only.
 */
export const SETTLE_USERNAME = new RedisScript(`${LUA_UNCOUNT}
if ARGV[1] == 'success' then
	redis.call('DEL', KEYS[1])
else
	local pair = redis.call('HMGET', KEYS[1], 'n', 'p')
	local n = tonumber(pair[1])
	if n then
		if n <= 1 then redis.call('DEL', KEYS[1]) else redis.call('HSET', KEYS[1], 'n', n - 1, 't', pair[2] or 0) end
	end
end
uncount(KEYS[2])
return 1
`);

/** Takes a reservation back from a counter. KEYS: the counter. */
export const UNCOUNT = new RedisScript(`${LUA_UNCOUNT}
uncount(KEYS[1])
return 1
`);

/** `reset(username)`: KEYS: username, marker. ARGV: how long the marker must outlive any pair, in ms. */
export const RESET_USERNAME = new RedisScript(`${LUA_PRELUDE}
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], now, 'PX', ARGV[1])
return 1
`);

/**
 * Merges a username+address count kept in memory during an outage. KEYS: pair.
 * ARGV: reset (1 if a success reset it in memory), added (failures counted in memory,
 * negative for reservations taken back), the count in memory, ms since its last
 * failure, then maxFailures, lockoutMs, lockoutFactor, maxLockoutMs, failureWindowMs.
 * The result is never below the count in memory: a Redis that restarted empty does
 * not hand out a fresh allowance.
 */
export const MERGE_PAIR = new RedisScript(`${LUA_PRELUDE}
local free, base, factor = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local ceiling, keep = tonumber(ARGV[8]), tonumber(ARGV[9])
if ARGV[1] == '1' then redis.call('DEL', KEYS[1]) end
local pair = redis.call('HMGET', KEYS[1], 'n', 't')
local n, t = tonumber(pair[1]) or 0, tonumber(pair[2]) or 0
local merged = math.max(n + tonumber(ARGV[2]), tonumber(ARGV[3]))
if merged <= 0 then redis.call('DEL', KEYS[1]) return 0 end
t = math.max(t, now - tonumber(ARGV[4]))
local expiry = t - now + lockout(merged, free, base, factor, ceiling) + keep
if expiry <= 0 then redis.call('DEL', KEYS[1]) return 0 end
redis.call('HSET', KEYS[1], 'n', merged, 't', t, 'p', t)
redis.call('PEXPIRE', KEYS[1], expiry)
return merged
`);

/**
 * Merges a windowed counter kept in memory during an outage. KEYS: counter.
 * ARGV: reset, added, the count in memory, its window left in ms.
 */
/** Carries a `reset(username)` made during an outage. KEYS: marker. ARGV: ms since the reset, marker ttl. */
export const MERGE_MARKER = new RedisScript(`${LUA_PRELUDE}
local at = now - tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1])) or -1
if at > current then redis.call('SET', KEYS[1], at, 'PX', ARGV[2]) end
return 1
`);


/** Forgets counts. KEYS: the counts. */
export const DELETE = new RedisScript(`return redis.call('DEL', unpack(KEYS))`);
