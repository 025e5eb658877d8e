import { RedisScript } from '../redis/script.js';

// The scripts of each user's index (see user-index.ts). Each touches one user's keys
// only, which share the user id as hash tag (one slot: atomic on a cluster too), or one
// session's key.

/**
 * Adds session `ARGV[2]` to a user's index (`KEYS[1]`, a sorted set scored by when the
 * entry may be dropped, epoch ms, or `+inf`), after dropping the entries whose score
 * passed (`ARGV[1]` is now). Past `ARGV[4]` entries, the others that score lowest are
 * dropped and returned, for the store to destroy. The index expires with its last entry.
 */
export const INDEX_ADD = new RedisScript(`
local key, sid = KEYS[1], ARGV[2]
redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. ARGV[1])
redis.call('ZADD', key, ARGV[3], sid)
local dropped = {}
local over = redis.call('ZCARD', key) - tonumber(ARGV[4])
if over > 0 then
	for _, id in ipairs(redis.call('ZRANGE', key, 0, over)) do
		if id ~= sid and #dropped < over then dropped[#dropped + 1] = id end
	end
	for _, id in ipairs(dropped) do redis.call('ZREM', key, id) end
end
local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')[2]
if string.find(last, 'inf') then
	redis.call('PERSIST', key)
else
	redis.call('PEXPIREAT', key, math.ceil(tonumber(last)))
end
return dropped
`);

/**
 * Lists a user's index (`KEYS[1]`) as `[id, score, …]` after dropping the entries whose
 * score passed (`ARGV[1]` is now). With `ARGV[2..4]` (when, except, time to live in ms),
 * first records that the user's sessions were ended at that time, in `KEYS[2]`, unless a
 * later end is recorded there already.
 */
export const INDEX_LIST = new RedisScript(`
local key, marker = KEYS[1], KEYS[2]
redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. ARGV[1])
if ARGV[2] then
	local current = tonumber(string.match(redis.call('GET', marker) or '', '^(%d+):')) or 0
	if tonumber(ARGV[2]) > current then
		redis.call('SET', marker, ARGV[2] .. ':' .. ARGV[3], 'PX', ARGV[4])
	end
end
return redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
`);

/**
 * Removes ids from a user's index (`KEYS[1]`), each only if its score is still the one
 * read (`ARGV`: id, score, id, score, …): an entry written again meanwhile stays.
 */
export const INDEX_PRUNE = new RedisScript(`
local removed = 0
for i = 1, #ARGV, 2 do
	if redis.call('ZSCORE', KEYS[1], ARGV[i]) == ARGV[i + 1] then
		removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
	end
end
return removed
`);

/** A session's text and its time to live in ms (-1: none), or nil. */
export const READ_WITH_TTL = new RedisScript(`
local text = redis.call('GET', KEYS[1])
if not text then return false end
return { text, redis.call('PTTL', KEYS[1]) }
`);
