import type { CountOperation, KeySetDescription, ScriptCall } from '../counting/engine.js';
import { type MemoryCounts, roundCount } from '../counting/memory-counts.js';
import { mergeWindow, windowModel } from '../counting/window.js';
import { RedisScript, type ScriptArgument } from '../redis/script.js';

/**
 * Lua: counts are kept in Redis as decimal text ("12", "0.35") and computed on in whole
 * millionths, so that adding fractional costs never drifts (0.1 + 0.2 is 0.3, not
 * 0.30000000000000004) and a comparison with the limit is exact. A whole count is
 * written as a whole number, as INCR would. Lua's numbers are doubles: exact up to
 * 2^53 millionths, about 9 billion per window.
 */
const LUA_UNITS = `
local function units(text) return math.floor((tonumber(text) or 0) * 1000000 + 0.5) end
local function text_of(u)
	if u % 1000000 == 0 then return string.format('%d', u / 1000000) end
	local t = string.format('%.6f', u / 1000000):gsub('0+$', '')
	return t
end
`;

/**
 * Checks and counts a request's cost against every counter of KEYS at once. ARGV: the
 * cost, then for each key its window in ms and its limit. A counter takes the cost if
 * it is under its limit and the cost fits in what is left; the request is admitted only
 * if every counter takes it, and then every counter counts it; otherwise none does (a
 * refused request uses nothing, so a costly request near the limit does not burn the
 * rest of the budget). One script, so concurrent requests of every instance never let
 * more than the limit through. Returns { admitted (1/0), then for each key its count
 * (as text, for fractions) and the window left in ms }.
 *
 * Written here rather than taken from rate-limit-redis: its script counts one key by
 * one, with no limit to check against, and a request is counted under all its windows
 * and its address's ceiling in one round trip.
 */
const TAKE = new RedisScript(`${LUA_UNITS}
local cost = units(ARGV[1])
local counts, ttls, admitted = {}, {}, 1
for i, key in ipairs(KEYS) do
	local c = units(redis.call('GET', key))
	local limit = units(ARGV[i * 2 + 1])
	counts[i] = c
	ttls[i] = redis.call('PTTL', key)
	if c >= limit or c + cost > limit then admitted = 0 end
end
local reply = { admitted }
for i, key in ipairs(KEYS) do
	local c, ttl, window = counts[i], ttls[i], tonumber(ARGV[i * 2])
	if ttl <= 0 then ttl = window end
	if admitted == 1 and cost > 0 then
		c = c + cost
		redis.call('SET', key, text_of(c), 'PX', ttl)
	elseif c > 0 and ttls[i] < 0 then
		redis.call('PEXPIRE', key, ttl)
	end
	reply[#reply + 1] = text_of(c)
	reply[#reply + 1] = ttl
end
return reply
`);

/**
 * Adds ARGV[1] (negative: gives back) to every counter of KEYS, whatever their limit
 * (a charge after the fact cannot be refused: what it counts was already spent), never
 * below 0. ARGV[i + 1]: the window of key i in ms, for a counter that starts with it.
 * Returns { 1, then for each key its count (as text) and the window left in ms }.
 */
const ADD = new RedisScript(`${LUA_UNITS}
local amount = units(ARGV[1])
local reply = { 1 }
for i, key in ipairs(KEYS) do
	local c = units(redis.call('GET', key)) + amount
	local ttl = redis.call('PTTL', key)
	if ttl <= 0 then ttl = tonumber(ARGV[i + 1]) end
	if c <= 0 then
		c = 0
		redis.call('DEL', key)
	else
		redis.call('SET', key, text_of(c), 'PX', ttl)
	end
	reply[#reply + 1] = text_of(c)
	reply[#reply + 1] = ttl
end
return reply
`);

/** Reads each counter of KEYS: { 1, then for each its count (as text) and the window left in ms }. */
const READ = new RedisScript(`
local reply = { 1 }
for _, key in ipairs(KEYS) do
	reply[#reply + 1] = redis.call('GET', key) or '0'
	reply[#reply + 1] = redis.call('PTTL', key)
end
return reply
`);

const DELETE = new RedisScript(`return redis.call('DEL', unpack(KEYS))`);

/** One counter of a request: a window of its client's, or of its address's ceiling. */
export interface Counter {
	readonly key: string;
	readonly windowMs: number;
	/** The most it may count in a window. */
	readonly limit: number;
}

/**
 * A request's counters in groups that share a hash tag: its client's windows, and its
 * address's (when it has a ceiling). On a cluster each group is one script; elsewhere
 * all of them are one.
 */
export type Counters = readonly (readonly Counter[])[];

/** A count of one counter. */
export interface WindowCount {
	readonly count: number;
	/** When the window ends, in ms since the epoch. */
	readonly resetAt: number;
}

/** What counting a cost did. */
export interface Taken {
	/** Every counter took the cost. */
	readonly admitted: boolean;
	/** The counts after, by group and counter, as `counters`. */
	readonly counts: readonly (readonly WindowCount[])[];
	/**
	 * The groups that took the cost although the request was refused: on a cluster a
	 * group's script cannot see the others', so the cost must be given back to these.
	 */
	readonly takenBy: readonly (readonly Counter[])[];
}

export interface TakeInput {
	readonly counters: Counters;
	readonly cost: number;
}

export interface AddInput {
	readonly counters: Counters;
	/** Added (negative: given back). */
	readonly amount: number;
}

/** The operations of the rate limit's key set. */
export interface WindowSet extends KeySetDescription {
	readonly take: CountOperation<TakeInput, Taken>;
	readonly add: CountOperation<AddInput, WindowCount[][]>;
	readonly read: CountOperation<Counters, WindowCount[][]>;
	readonly reset: CountOperation<readonly Counter[], void>;
}

/** The kind of count of a window of `windowMs`: each window length merges with its own default expiry. */
const kindOf = (windowMs: number) => `window:${windowMs}`;

/**
 * `counters` as script calls: one per group on a cluster, else one for all. A call's
 * arguments are `first`, then what `push` adds for each of its counters.
 */
const callsOf = (
	script: RedisScript,
	counters: Counters,
	cluster: boolean,
	first: readonly ScriptArgument[],
	push: (args: ScriptArgument[], counter: Counter) => void,
): ScriptCall[] => {
	const calls: ScriptCall[] = [];
	let keys: string[] = [];
	let args: ScriptArgument[] = [...first];
	for (const group of counters) {
		for (const counter of group) {
			keys.push(counter.key);
			push(args, counter);
		}

		if (cluster && keys.length > 0) {
			calls.push({ script, keys, args });
			keys = [];
			args = [...first];
		}
	}

	if (!cluster) calls.push({ script, keys, args });
	return calls;
};

/** The groups of `counters` as they were sent by {@link callsOf}: one per call. */
const sentGroups = (counters: Counters, cluster: boolean): (readonly Counter[])[] => {
	const groups = counters.filter((group) => group.length > 0);
	return cluster ? groups : [groups.flat()];
};

/**
 * Reads the replies of {@link callsOf} back into `counters`' groups: each reply is
 * { flag, then count and window left for each key }, in the order of the counters (one
 * reply for all of them, or on a cluster one per group that has any). Keeps a copy of
 * each count in memory.
 */
const countsOf = (
	replies: readonly unknown[],
	counters: Counters,
	memory: MemoryCounts,
	now: number,
): { counts: WindowCount[][]; flags: boolean[] } => {
	const perGroup = replies.length > 1;
	const counts: WindowCount[][] = [];
	let reply = 0;
	let index = 0;
	for (const group of counters) {
		const groupCounts: WindowCount[] = [];
		for (const counter of group) {
			const values = replies[reply] as unknown[];
			const count = roundCount(Number(values[1 + index * 2]));
			const leftMs = Number(values[2 + index * 2]);
			const resetAt = now + (leftMs > 0 ? leftMs : counter.windowMs);
			memory.mirror(counter.key, kindOf(counter.windowMs), count, now, resetAt, now);
			groupCounts.push({ count, resetAt });
			index++;
		}

		if (perGroup && group.length > 0) {
			reply++;
			index = 0;
		}

		counts.push(groupCounts);
	}

	return { counts, flags: replies.map((values) => Number((values as unknown[])[0]) === 1) };
};

/** No counter group: what took the cost of a request that was admitted. */
const NONE: readonly (readonly Counter[])[] = Object.freeze([]);

/** Whether `count` may take `cost` under `limit`: not spent yet, and the cost fits. */
export const fits = (count: number, cost: number, limit: number): boolean =>
	count < limit && roundCount(count + cost) <= limit;

/**
 * The rate limit's key set: one fixed-window counter per window of a client, and per
 * window of its address's ceiling. A client's windows share a hash tag (one script on a
 * cluster too); clients spread over every slot.
 */
export const windowSet = (windowsMs: readonly number[]): WindowSet => {
	const models = new Map(windowsMs.map((windowMs) => [windowMs, windowModel(kindOf(windowMs), windowMs)]));
	const modelOf = (counter: Counter) => models.get(counter.windowMs) ?? windowModel(kindOf(counter.windowMs), counter.windowMs);
	const readMemory = (memory: MemoryCounts, counter: Counter, now: number): WindowCount => {
		const entry = memory.read(counter.key, now);
		return { count: entry?.count ?? 0, resetAt: entry?.expiresAt ?? now + counter.windowMs };
	};

	const addInMemory = (memory: MemoryCounts, counters: Counters, amount: number, now: number, journal: boolean) =>
		counters.map((group) =>
			group.map((counter) => {
				if (amount === 0) return readMemory(memory, counter, now);
				const entry = memory.count(counter.key, modelOf(counter), now, journal, amount);
				return { count: entry.count, resetAt: entry.count > 0 ? entry.expiresAt : now + counter.windowMs };
			}),
		);

	return {
		take: {
			name: 'take',
			calls: ({ counters, cost }, cluster) =>
				callsOf(TAKE, counters, cluster, [cost], (args, counter) => args.push(counter.windowMs, counter.limit)),
			fromRedis: (replies, { counters, cost }, memory, now) => {
				const { counts, flags } = countsOf(replies, counters, memory, now);
				const admitted = flags.every(Boolean);
				if (admitted || cost === 0) return { admitted, counts, takenBy: NONE };
				const takenBy = sentGroups(counters, replies.length > 1).filter((_group, call) => flags[call]);
				return { admitted, counts, takenBy };
			},
			inMemory: (memory, { counters, cost }, now, journal) => {
				const before = counters.map((group) => group.map((counter) => readMemory(memory, counter, now)));
				const admitted = counters.every((group, g) =>
					group.every((counter, i) => fits(before[g]![i]!.count, cost, counter.limit)),
				);
				if (!admitted || cost === 0) return { admitted, counts: before, takenBy: [] };
				return { admitted, counts: addInMemory(memory, counters, cost, now, journal), takenBy: [] };
			},
		},
		add: {
			name: 'add',
			calls: ({ counters, amount }, cluster) =>
				callsOf(ADD, counters, cluster, [amount], (args, counter) => args.push(counter.windowMs)),
			fromRedis: (replies, { counters }, memory, now) => countsOf(replies, counters, memory, now).counts,
			inMemory: (memory, { counters, amount }, now, journal) => addInMemory(memory, counters, amount, now, journal),
		},
		read: {
			name: 'read',
			calls: (counters, cluster) => callsOf(READ, counters, cluster, [], () => {}),
			fromRedis: (replies, counters, memory, now) => countsOf(replies, counters, memory, now).counts,
			inMemory: (memory, counters, now) =>
				counters.map((group) => group.map((counter) => readMemory(memory, counter, now))),
		},
		reset: {
			name: 'reset',
			// A client's windows share a hash tag: one DEL on a cluster too.
			calls: (counters) => [{ script: DELETE, keys: counters.map((counter) => counter.key), args: [] }],
			fromRedis: (_replies, counters, memory) => {
				for (const counter of counters) memory.reset(counter.key, kindOf(counter.windowMs), false);
			},
			inMemory: (memory, counters, _now, journal) => {
				for (const counter of counters) memory.reset(counter.key, kindOf(counter.windowMs), journal);
			},
		},
		merges: Object.fromEntries(windowsMs.map((windowMs) => [kindOf(windowMs), mergeWindow(windowMs)])),
	};
};
