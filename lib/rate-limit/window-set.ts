import type { CountOperation, KeySetDescription, ScriptCall } from '../counting/engine.js';
import type { MemoryCounts } from '../counting/memory-counts.js';
import { mergeWindow, windowModel } from '../counting/window.js';
import { LUA_DECREMENT_LIVE, RedisScript } from '../redis/script.js';

/**
 * Counts a request in each counter of KEYS over a window of ARGV[1] ms that starts at
 * its first count. Returns { count, window left in ms } for each key, in order.
 *
 * Written here rather than taken from rate-limit-redis: its script counts one key, and a
 * request is counted under its client's key and its address's ceiling in one round
 * trip. The same commands per key (INCR, then PTTL, PEXPIRE on a new counter).
 */
const COUNT = new RedisScript(`
local window = tonumber(ARGV[1])
local counted = {}
for _, key in ipairs(KEYS) do
	local c = redis.call('INCR', key)
	local ttl = redis.call('PTTL', key)
	if ttl <= 0 then redis.call('PEXPIRE', key, window); ttl = window end
	counted[#counted + 1] = c
	counted[#counted + 1] = ttl
end
return counted
`);

/** Reads each counter of KEYS: { count, window left in ms } for each. */
const READ = new RedisScript(`
local read = {}
for _, key in ipairs(KEYS) do
	read[#read + 1] = tonumber(redis.call('GET', key)) or 0
	read[#read + 1] = redis.call('PTTL', key)
end
return read
`);

/**
 * Takes one count back from each counter of KEYS that still lives. rate-limit-redis
 * sends a bare `DECR`, which creates a key without expiry, at -1, when the count expired
 * meanwhile (or was made in memory during an outage); such a key would never go away.
 */
const DECREMENT = new RedisScript(`${LUA_DECREMENT_LIVE}
for _, key in ipairs(KEYS) do decrement_live(key) end
return 1
`);

const DELETE = new RedisScript(`return redis.call('DEL', unpack(KEYS))`);

/** A count of one key. */
export interface WindowCount {
	readonly count: number;
	/** When the window ends, in ms since the epoch. */
	readonly resetAt: number;
}

type Keys = readonly string[];

/** The keys as script calls: together, or one by one on a cluster (they carry no common hash tag). */
const callsOf =
	(script: RedisScript, args: ScriptCall['args']) =>
	(keys: Keys, cluster: boolean): ScriptCall[] =>
		cluster && keys.length > 1
			? keys.map((key) => ({ script, keys: [key], args }))
			: [{ script, keys, args }];

/** The replies of {@link callsOf}, as one flat list of numbers. */
const flat = (replies: readonly unknown[]): number[] => replies.flatMap((reply) => (reply as unknown[]).map(Number));

/** The operations of the rate limit's window set. */
export interface WindowSet extends KeySetDescription {
	readonly increment: CountOperation<Keys, WindowCount[]>;
	readonly read: CountOperation<Keys, WindowCount[]>;
	readonly decrement: CountOperation<Keys, void>;
	readonly reset: CountOperation<Keys, void>;
}

/**
 * The rate limit's key set: one fixed-window counter per key (each key is its own hash
 * tag, so the counts spread over every cluster slot).
 */
export const windowSet = (windowMs: number): WindowSet => {
	const model = windowModel('window', windowMs);
	const mirror = (memory: MemoryCounts, keys: Keys, replies: readonly unknown[], now: number): WindowCount[] => {
		const numbers = flat(replies);
		return keys.map((key, index) => {
			const count = numbers[index * 2]!;
			const leftMs = numbers[index * 2 + 1]!;
			const resetAt = now + (leftMs > 0 ? leftMs : windowMs);
			memory.mirror(key, 'window', count, now, resetAt, now);
			return { count, resetAt };
		});
	};

	return {
		increment: {
			name: 'increment',
			calls: callsOf(COUNT, [windowMs]),
			fromRedis: (replies, keys, memory, now) => mirror(memory, keys, replies, now),
			inMemory: (memory, keys, now, journal) =>
				keys.map((key) => {
					const entry = memory.count(key, model, now, journal);
					return { count: entry.count, resetAt: entry.expiresAt };
				}),
		},
		read: {
			name: 'read',
			calls: callsOf(READ, []),
			fromRedis: (replies, keys, memory, now) => mirror(memory, keys, replies, now),
			inMemory: (memory, keys, now) =>
				keys.map((key) => {
					const entry = memory.read(key, now);
					return { count: entry?.count ?? 0, resetAt: entry?.expiresAt ?? now + windowMs };
				}),
		},
		decrement: {
			name: 'decrement',
			calls: callsOf(DECREMENT, []),
			fromRedis: (_replies, keys, memory, now) => {
				for (const key of keys) memory.uncount(key, 'window', now, false);
			},
			inMemory: (memory, keys, now, journal) => {
				for (const key of keys) memory.uncount(key, 'window', now, journal);
			},
		},
		reset: {
			name: 'reset',
			calls: callsOf(DELETE, []),
			fromRedis: (_replies, keys, memory) => {
				for (const key of keys) memory.reset(key, 'window', false);
			},
			inMemory: (memory, keys, _now, journal) => {
				for (const key of keys) memory.reset(key, 'window', journal);
			},
		},
		merges: { window: mergeWindow(windowMs) },
	};
};
