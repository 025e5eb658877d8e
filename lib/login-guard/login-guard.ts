import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { Attempt, Backend, Failover } from '../redis/failover.js';
import { type Logger, OnceLogger } from '../logger.js';
import {
	checkFunction,
	checkInteger,
	checkIpv6Subnet,
	checkLogger,
	checkObject,
	checkString,
	invalidOption,
	rejectUnknownOptions,
} from '../options/checks.js';
import { isResilientStore } from '../session/options.js';
import { isReplyError, type RedisClient } from '../redis/client.js';
import { LUA_DECREMENT_LIVE, RedisScript } from '../redis/script.js';
import { addressKey, requestAddressKey, shortDigest } from '../counting/client-address.js';
import type { ResilientStore } from '../session/store.js';

/** What an attempt turned out to be. */
export type LoginOutcome = 'failure' | 'success';

/** Which count a lockout is on. */
export type LockoutScope = 'username+ip' | 'username' | 'ip';

/** What {@link LoginGuardOptions.onLockout} is told. */
export interface LockoutInfo {
	/** The count that reached its limit. */
	readonly scope: LockoutScope;
	/** The username, normalised (trimmed, lower-cased, Unicode NFKC). */
	readonly username: string;
	/** The client address as counted (an IPv6 address as its subnet). */
	readonly ip: string;
	/** Failures on that count, this one included. */
	readonly failures: number;
	/** How long the lockout lasts, in milliseconds. */
	readonly lockoutMs: number;
	/** Where the count is kept: `'memory'` during a Redis outage (the count of this instance only). */
	readonly backend: Backend;
}

/** `req.loginGuard`: the attempt in progress, for the login handler. */
export interface LoginAttempt {
	/** The username as counted: trimmed, lower-cased, Unicode NFKC. */
	readonly username: string;
	/** The client address as counted (an IPv6 address as its subnet). */
	readonly ip: string;
	/** Counts this attempt as a failed login, whatever the response status. */
	fail(): void;
	/** Counts this attempt as a successful login, whatever the response status. */
	succeed(): void;
}

declare global {
	// Express's own types are augmented through this global namespace.
	// eslint-disable-next-line @typescript-eslint/no-namespace
	namespace Express {
		interface Request {
			/** Set by `loginGuard()` on requests it lets through to the login handler; absent elsewhere. */
			loginGuard?: LoginAttempt;
		}
	}
}

/** Options of the in-process counts kept while Redis is unreachable. */
export interface LoginGuardMemoryOptions {
	/**
	 * The most counts held in memory (an attempt uses up to three: username+address,
	 * username, address). About 350 bytes each, so the default costs about 18 MB at
	 * most. While Redis is healthy these are copies of recent counts, the least recently
	 * used dropped first; while it is unreachable they are the counts themselves, and
	 * once memory is full of them new usernames and addresses are refused (`429`)
	 * rather than a count forgotten.
	 * @default 50_000
	 */
	readonly max?: number;
}

/** Options of {@link loginGuard}. */
export interface LoginGuardOptions {
	/** The store whose Redis (and failover) the counts share. Required. */
	readonly store: ResilientStore;
	/**
	 * Where the username is: the name of a field of `req.body`, or a function of the
	 * request. A missing, empty or non-string username is answered `400`.
	 * @default 'username'
	 */
	readonly username?: string | ((req: Request) => unknown);
	/**
	 * Consecutive failures of one username from one address before it is locked out.
	 * A success resets this count. OWASP's Authentication Cheat Sheet asks for a lockout
	 * threshold; the scheme the OWASP Web Security Testing Guide (WSTG-ATHN-03) cites as
	 * acceptable (AWS Cognito) starts locking after 5.
	 * @default 5
	 */
	readonly maxFailures?: number;
	/**
	 * The first lockout, in milliseconds, once `maxFailures` is reached. NIST SP 800-63B
	 * §5.2.2 suggests waits that grow "30 seconds up to an hour".
	 * @default 30_000
	 */
	readonly lockoutMs?: number;
	/**
	 * Each further failure multiplies the lockout by this. OWASP's Authentication Cheat
	 * Sheet: an exponential lockout that "doubles after each failed login attempt".
	 * `1` keeps every lockout at `lockoutMs`.
	 * @default 2
	 */
	readonly lockoutFactor?: number;
	/**
	 * The longest lockout, in milliseconds: NIST SP 800-63B §5.2.2's "up to an hour".
	 * @default 3_600_000
	 */
	readonly maxLockoutMs?: number;
	/**
	 * How long a username+address's failures are remembered after the last one (or
	 * after the lockout it caused), in milliseconds: OWASP's "observation window". NIST
	 * SP 800-63B counts consecutive failures with no time limit; a day outlasts the
	 * longest lockout many times over, and a typo is not held against a user for ever.
	 * @default 86_400_000
	 */
	readonly failureWindowMs?: number;
	/**
	 * Failures of one username from all addresses together, within `usernameWindowMs`,
	 * after which the username is locked out everywhere until the window ends. OWASP's
	 * Authentication Cheat Sheet ties the count "to the account itself, rather than the
	 * source IP address"; NIST SP 800-63B §5.2.2 allows at most 100 consecutive failures
	 * on an account, so this stays at half of that. A success does not reset it.
	 * @default 50
	 */
	readonly maxFailuresPerUsername?: number;
	/**
	 * The window of `maxFailuresPerUsername`, in milliseconds, from its first failure.
	 * @default 86_400_000
	 */
	readonly usernameWindowMs?: number;
	/**
	 * Failures from one address across all usernames within `ipWindowMs` (credential
	 * stuffing and password spraying), after which the address is refused until the
	 * window ends. OWASP's Credential Stuffing Prevention Cheat Sheet asks for long
	 * periods besides bursts and for temporary blocks, since addresses are shared (NAT,
	 * offices); 100 a day is NIST's per-account ceiling applied to an address, well above
	 * what the people behind one office address mistype in a day. A success does not
	 * reset it.
	 * @default 100
	 */
	readonly maxFailuresPerIp?: number;
	/**
	 * The window of `maxFailuresPerIp`, in milliseconds, from its first failure.
	 * @default 86_400_000
	 */
	readonly ipWindowMs?: number;
	/**
	 * IPv6 clients are counted per subnet of this prefix length, since one client
	 * usually holds a whole subnet; `false` counts each address. From 32 to 64, as in
	 * express-rate-limit. RIPE-690 assigns end sites a /56 or a /48; the same default as
	 * express-rate-limit.
	 * @default 56
	 */
	readonly ipv6Subnet?: number | false;
	/**
	 * Prefix of every key in Redis. Usernames appear in keys only as a hash. Do not put
	 * braces in it: the keys' hash tags come after it.
	 * @default 'login-guard:'
	 */
	readonly prefix?: string;
	/**
	 * The `error` of the JSON body of a refused (`429`) attempt. The same for every
	 * username, known or not, and whatever count is locked.
	 * @default 'Too many failed login attempts. Try again later.'
	 */
	readonly message?: string;
	/**
	 * Called when a failure locks a count (for alerting). It may return a promise; what
	 * it throws or rejects is logged and never affects the request. OWASP's
	 * Authentication Cheat Sheet: "ensure that all account lockouts are logged and
	 * reviewed".
	 * @default undefined
	 */
	readonly onLockout?: (info: LockoutInfo, req: Request) => void | Promise<void>;
	/**
	 * Options of the counts kept in memory.
	 * @default { max: 50_000 }
	 */
	readonly memory?: LoginGuardMemoryOptions;
	/**
	 * Where warnings and errors go.
	 * @default console
	 */
	readonly logger?: Logger;
}

/** The middleware that {@link loginGuard} returns. */
export interface LoginGuard extends RequestHandler {
	/**
	 * Unlocks `username` (an administrator's action). Without `ip`: its username-wide
	 * count and its counts from every address. With `ip`: its username-wide count, its
	 * count from `ip`, and `ip`'s own count across usernames, so that it can log in
	 * from there at once. During a Redis outage the reset is applied in memory and
	 * carried to Redis on recovery.
	 */
	reset(username: string, ip?: string): Promise<void>;
}

/** Defaults of every {@link LoginGuardOptions} that has one. */
export const loginGuardDefaults = Object.freeze({
	username: 'username',
	maxFailures: 5,
	lockoutMs: 30_000,
	lockoutFactor: 2,
	maxLockoutMs: 3_600_000,
	failureWindowMs: 86_400_000,
	maxFailuresPerUsername: 50,
	usernameWindowMs: 86_400_000,
	maxFailuresPerIp: 100,
	ipWindowMs: 86_400_000,
	ipv6Subnet: 56,
	prefix: 'login-guard:',
	message: 'Too many failed login attempts. Try again later.',
	memory: Object.freeze({ max: 50_000 }),
});

/** {@link LoginGuardOptions} with every default applied and every value checked. */
interface LoginGuardConfig {
	readonly store: ResilientStore;
	readonly username: string | ((req: Request) => unknown);
	readonly maxFailures: number;
	readonly lockoutMs: number;
	readonly lockoutFactor: number;
	readonly maxLockoutMs: number;
	readonly failureWindowMs: number;
	readonly maxFailuresPerUsername: number;
	readonly usernameWindowMs: number;
	readonly maxFailuresPerIp: number;
	readonly ipWindowMs: number;
	readonly ipv6Subnet: number | false;
	readonly prefix: string;
	readonly message: string;
	readonly onLockout: LoginGuardOptions['onLockout'];
	readonly memory: Required<LoginGuardMemoryOptions>;
	readonly logger: Logger;
}

/** NIST SP 800-63B §5.2.2: no more than 100 consecutive failures on one account. */
const NIST_MAX_FAILURES = 100;

/** Every option name, so that a misspelt one is an error rather than silently ignored. */
const KNOWN_OPTIONS = Object.freeze({
	store: true,
	username: true,
	maxFailures: true,
	lockoutMs: true,
	lockoutFactor: true,
	maxLockoutMs: true,
	failureWindowMs: true,
	maxFailuresPerUsername: true,
	usernameWindowMs: true,
	maxFailuresPerIp: true,
	ipWindowMs: true,
	ipv6Subnet: true,
	prefix: true,
	message: true,
	onLockout: true,
	memory: true,
	logger: true,
} satisfies Record<keyof LoginGuardOptions, true>);

const KNOWN_MEMORY_OPTIONS = Object.freeze({ max: true } satisfies Record<keyof LoginGuardMemoryOptions, true>);

/** Resolves the options once into a fully required, checked config. */
const resolveLoginGuardOptions = (options: LoginGuardOptions): LoginGuardConfig => {
	checkObject('options', options, 'an object with at least `store`');
	rejectUnknownOptions('loginGuard()', options, KNOWN_OPTIONS);
	const pick = <K extends keyof typeof loginGuardDefaults>(key: K) => options[key] ?? loginGuardDefaults[key];

	if (!isResilientStore(options.store)) invalidOption('store', 'a ResilientStore', options.store);

	const username = pick('username');
	if (typeof username !== 'function' && (typeof username !== 'string' || username === '')) {
		invalidOption('username', 'a field name of req.body or a function of the request', username);
	}

	const lockoutFactor = pick('lockoutFactor');
	if (typeof lockoutFactor !== 'number' || !Number.isFinite(lockoutFactor) || lockoutFactor < 1) {
		invalidOption('lockoutFactor', 'a number of at least 1', lockoutFactor);
	}

	const lockoutMs = checkInteger('lockoutMs', pick('lockoutMs'), 1);
	const maxLockoutMs = checkInteger('maxLockoutMs', pick('maxLockoutMs'), 1);
	if (maxLockoutMs < lockoutMs) invalidOption('maxLockoutMs', `at least \`lockoutMs\` (${lockoutMs})`, maxLockoutMs);

	const prefix = checkString('prefix', pick('prefix'));
	if (/[{}]/.test(prefix)) invalidOption('prefix', 'a string without braces (they would become the hash tag)', prefix);

	const memory: LoginGuardMemoryOptions = checkObject('memory', options.memory ?? {});
	rejectUnknownOptions('loginGuard() `memory`', memory, KNOWN_MEMORY_OPTIONS);

	const config: LoginGuardConfig = Object.freeze({
		store: options.store,
		username,
		maxFailures: checkInteger('maxFailures', pick('maxFailures'), 1),
		lockoutMs,
		lockoutFactor,
		maxLockoutMs,
		failureWindowMs: checkInteger('failureWindowMs', pick('failureWindowMs'), 1),
		maxFailuresPerUsername: checkInteger('maxFailuresPerUsername', pick('maxFailuresPerUsername'), 1),
		usernameWindowMs: checkInteger('usernameWindowMs', pick('usernameWindowMs'), 1),
		maxFailuresPerIp: checkInteger('maxFailuresPerIp', pick('maxFailuresPerIp'), 1),
		ipWindowMs: checkInteger('ipWindowMs', pick('ipWindowMs'), 1),
		ipv6Subnet: checkIpv6Subnet(pick('ipv6Subnet')),
		prefix,
		message: checkString('message', pick('message')),
		onLockout: options.onLockout === undefined ? undefined : checkFunction('onLockout', options.onLockout),
		memory: Object.freeze({
			max: checkInteger('memory.max', memory.max ?? loginGuardDefaults.memory.max, 1),
		}),
		logger: checkLogger(options.logger ?? console),
	});

	if (config.maxFailuresPerUsername > NIST_MAX_FAILURES) {
		config.logger.warn(
			`resilient-session: loginGuard \`maxFailuresPerUsername\` is ${config.maxFailuresPerUsername}; ` +
				`NIST SP 800-63B allows no more than ${NIST_MAX_FAILURES} consecutive failures on an account`,
		);
	}

	return config;
};

/**
 * The username as counted: Unicode NFKC (full-width and compatibility forms folded),
 * trimmed, lower-cased, so that `'Admin '`, `'admin'` and `'ａｄｍｉｎ'` are one account.
 */
export const normalizeUsername = (username: string): string =>
	username.normalize('NFKC').toLowerCase().normalize('NFKC').trim();

/**
 * The Redis keys of one attempt. The keys one script touches together share a hash
 * tag, so that each script runs on one cluster slot: the username's keys are tagged
 * by the username, the address's by the address. One tag for everything would put
 * every login on one shard.
 */
export interface LoginKeys {
	/** Hash `{ n, t, p }`: consecutive failures of the username from the address, last failure, the one before. */
	readonly pair: string;
	/** Counter: failures of the username from every address, in its window. */
	readonly username: string;
	/** Time of the last `reset(username)`: username+address failures before it do not count. */
	readonly marker: string;
	/** Counter: failures from the address across usernames, in its window. */
	readonly ip: string;
}

/** The keys of `username` (normalised) from address key `ip`. Usernames appear only as a hash. */
export const loginKeys = (prefix: string, username: string, ip: string): LoginKeys => {
	const tag = `${prefix}{u:${shortDigest(username)}}`;
	return { pair: `${tag}:ip:${ip}`, username: tag, marker: `${tag}:reset`, ip: `${prefix}{ip:${ip}}` };
};

/** The lockout after `failures` consecutive failures: 0 below `maxFailures`, then growing. */
const lockoutFor = (config: LoginGuardConfig, failures: number): number => {
	if (failures < config.maxFailures) return 0;
	const grown = config.lockoutMs * config.lockoutFactor ** Math.min(failures - config.maxFailures, 64);
	return Math.min(Math.ceil(grown), config.maxLockoutMs);
};

// ---------------------------------------------------------------------------------
// Redis: one script per hash tag. The check counts an attempt as a failure up front
// (the reservation), atomically with the decision to let it through; recording the
// outcome then only has to undo it for a success (or a response that is neither).
// ---------------------------------------------------------------------------------

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
 * Lua: a counter of failures over a window that starts at its first failure.
 * `window_read(key, window)` returns its count and the window left in ms (a count
 * found without expiry is given one); `window_count(key, window, ttl)` counts one
 * more, with `ttl` from `window_read`, and returns the count and the window left.
 */
const LUA_WINDOW = `
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

/**
 * KEYS: pair, username, marker. ARGV: maxFailures, lockoutMs, lockoutFactor,
 * maxLockoutMs, failureWindowMs, maxFailuresPerUsername, usernameWindowMs.
 * Returns { admitted, waitMs, pair failures, ms since the pair's last failure,
 * username failures, username window left in ms }.
 */
const CHECK_USERNAME = new RedisScript(`${LUA_PRELUDE}${LUA_WINDOW}
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
const CHECK_IP = new RedisScript(`${LUA_WINDOW}
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
const SETTLE_USERNAME = new RedisScript(`${LUA_UNCOUNT}
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
const UNCOUNT = new RedisScript(`${LUA_UNCOUNT}
uncount(KEYS[1])
return 1
`);

/** `reset(username)`: KEYS: username, marker. ARGV: how long the marker must outlive any pair, in ms. */
const RESET_USERNAME = new RedisScript(`${LUA_PRELUDE}
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
const MERGE_PAIR = new RedisScript(`${LUA_PRELUDE}
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
const MERGE_WINDOW = new RedisScript(`
if ARGV[1] == '1' then redis.call('DEL', KEYS[1]) end
local c = tonumber(redis.call('GET', KEYS[1])) or 0
local merged = math.max(c + tonumber(ARGV[2]), tonumber(ARGV[3]))
if merged <= 0 then redis.call('DEL', KEYS[1]) return 0 end
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 then ttl = tonumber(ARGV[4]) end
redis.call('SET', KEYS[1], merged, 'PX', ttl)
return merged
`);

/** Carries a `reset(username)` made during an outage. KEYS: marker. ARGV: ms since the reset, marker ttl. */
const MERGE_MARKER = new RedisScript(`${LUA_PRELUDE}
local at = now - tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1])) or -1
if at > current then redis.call('SET', KEYS[1], at, 'PX', ARGV[2]) end
return 1
`);

// ---------------------------------------------------------------------------------
// Memory: the same counts, in this process. Copies of recent Redis counts while Redis
// is healthy (so that an outage starts from them, not from zero), the counts
// themselves during an outage, with a journal of what changed to merge into Redis
// on recovery.
// ---------------------------------------------------------------------------------

type Kind = 'pair' | 'username' | 'ip';

interface Entry {
	readonly kind: Kind;
	/** Failures counted. */
	count: number;
	/** pair: when the last failure was counted. */
	at: number;
	/** pair: `at` before the last failure, to take it back. */
	previousAt: number;
	/** When the count is forgotten. */
	expiresAt: number;
	/** Counted here, not copied from Redis: evicting it would forget failures. */
	held: boolean;
}

/** What changed in memory for one key during an outage. */
interface Change {
	readonly kind: Kind | 'marker';
	/** The count was reset (a success, or `reset()`) before `added`. */
	reset: boolean;
	/** Failures counted (negative: reservations taken back). */
	added: number;
	/** Time of the last failure counted (pair) or of the reset (marker). */
	at: number;
}

/** A change handed over for merging, with the count in memory when it was handed over. */
interface Handover {
	readonly change: Change;
	readonly held: Readonly<Pick<Entry, 'count' | 'at' | 'expiresAt'>> | undefined;
}

const mergeChanges = (older: Change, newer: Change): Change =>
	newer.reset
		? newer
		: {
				kind: newer.kind,
				reset: older.reset,
				added: older.added + newer.added,
				at: Math.max(older.at, newer.at),
			};

/** Entries looked at, oldest first, to find one that may be evicted. */
const EVICTION_SCAN = 64;

/**
 * `Retry-After` of an attempt refused because memory is full: room comes back as
 * counts expire or are reset, or when the store returns to Redis.
 */
const MEMORY_FULL_RETRY_MS = 1_000;

/** A check's answer for one hash tag. */
interface Side {
	readonly admitted: boolean;
	readonly waitMs: number;
	/** Where the reservation was counted. */
	readonly where: Backend;
	/** Counted in memory during an outage: Redis must learn of its settlement. */
	readonly journaled: boolean;
}

interface UsernameSide extends Side {
	readonly pairFailures: number;
	readonly usernameFailures: number;
	readonly usernameWindowLeftMs: number;
}

interface IpSide extends Side {
	readonly ipFailures: number;
	readonly ipWindowLeftMs: number;
}

type Settlement = 'success' | 'neutral';

class MemoryCounts {
	readonly #config: LoginGuardConfig;
	readonly #log: OnceLogger;
	readonly #entries = new Map<string, Entry>();
	readonly #journal = new Map<string, Change>();

	constructor(config: LoginGuardConfig, log: OnceLogger) {
		this.#config = config;
		this.#log = log;
	}

	get journalSize(): number {
		return this.#journal.size;
	}

	checkUsername(keys: LoginKeys, now: number, journal: boolean): UsernameSide {
		const config = this.#config;
		const pair = this.#read(keys.pair, now);
		const username = this.#read(keys.username, now);
		const wait = Math.max(this.#lockedFor(pair, now), this.#lockedFor(username, now));
		const needed = Number(!pair) + Number(!username);
		const room = wait > 0 ? 0 : this.#makeRoom(needed, now, [keys.pair, keys.username]);
		if (wait > 0 || room > 0) {
			return {
				admitted: false,
				waitMs: Math.max(wait, room),
				where: 'memory',
				journaled: false,
				pairFailures: pair?.count ?? 0,
				usernameFailures: username?.count ?? 0,
				usernameWindowLeftMs: username ? username.expiresAt - now : config.usernameWindowMs,
			};
		}

		const counted = this.#count(keys.pair, 'pair', now, journal);
		const total = this.#count(keys.username, 'username', now, journal);
		return {
			admitted: true,
			waitMs: 0,
			where: 'memory',
			journaled: journal,
			pairFailures: counted.count,
			usernameFailures: total.count,
			usernameWindowLeftMs: total.expiresAt - now,
		};
	}

	checkIp(keys: LoginKeys, now: number, journal: boolean): IpSide {
		const ip = this.#read(keys.ip, now);
		const wait = this.#lockedFor(ip, now);
		const room = wait > 0 ? 0 : this.#makeRoom(Number(!ip), now, [keys.ip]);
		if (wait > 0 || room > 0) {
			return {
				admitted: false,
				waitMs: Math.max(wait, room),
				where: 'memory',
				journaled: false,
				ipFailures: ip?.count ?? 0,
				ipWindowLeftMs: ip ? ip.expiresAt - now : this.#config.ipWindowMs,
			};
		}

		const counted = this.#count(keys.ip, 'ip', now, journal);
		return {
			admitted: true,
			waitMs: 0,
			where: 'memory',
			journaled: journal,
			ipFailures: counted.count,
			ipWindowLeftMs: counted.expiresAt - now,
		};
	}

	/** Takes back or resets what a check counted here (or, journaled, what Redis counted and cannot be told now). */
	settleUsername(keys: LoginKeys, settlement: Settlement, now: number, journal: boolean): void {
		if (settlement === 'success') this.#reset(keys.pair, 'pair', journal);
		else this.#uncount(keys.pair, 'pair', now, journal);
		this.#uncount(keys.username, 'username', now, journal);
	}

	settleIp(keys: LoginKeys, now: number, journal: boolean): void {
		this.#uncount(keys.ip, 'ip', now, journal);
	}

	/** Keeps a copy of the counts Redis answered with. */
	mirrorUsername(keys: LoginKeys, now: number, side: UsernameSide, sinceLastMs: number): void {
		const config = this.#config;
		const at = now - sinceLastMs;
		const pairExpiresAt = at + lockoutFor(config, side.pairFailures) + config.failureWindowMs;
		this.#mirror(keys.pair, 'pair', side.pairFailures, at, pairExpiresAt, now);
		this.#mirror(keys.username, 'username', side.usernameFailures, 0, now + side.usernameWindowLeftMs, now);
	}

	mirrorIp(keys: LoginKeys, now: number, side: IpSide): void {
		this.#mirror(keys.ip, 'ip', side.ipFailures, 0, now + side.ipWindowLeftMs, now);
	}

	/** `reset()`: forgets the counts, and journals the reset for Redis when `journal`. */
	reset(keys: LoginKeys, withIp: boolean, now: number, journal: boolean): void {
		this.#reset(keys.username, 'username', journal);
		if (withIp) {
			this.#reset(keys.pair, 'pair', journal);
			this.#reset(keys.ip, 'ip', journal);
			return;
		}

		// Every username+address count of this username.
		const pairs = `${keys.username}:ip:`;
		for (const key of this.#entries.keys()) if (key.startsWith(pairs)) this.#entries.delete(key);
		for (const [key, change] of this.#journal) {
			if (change.kind === 'pair' && key.startsWith(pairs)) this.#journal.delete(key);
		}

		if (journal) this.#record(keys.marker, { kind: 'marker', reset: true, added: 0, at: now });
	}

	/**
	 * Hands over every change to merge into Redis, each with its count in memory as it
	 * stands now, and forgets them. Counts made after this are journaled anew: the next
	 * merge adds them, so this one must not see them.
	 */
	takeJournal(now: number): Map<string, Handover> {
		const taken = new Map<string, Handover>();
		for (const [key, change] of this.#journal) {
			const entry = this.#entries.get(key);
			const live = entry && entry.expiresAt > now;
			taken.set(key, { change, held: live ? { count: entry.count, at: entry.at, expiresAt: entry.expiresAt } : undefined });
		}

		this.#journal.clear();
		return taken;
	}

	/** Puts back changes that could not be merged, before any made since. */
	restoreJournal(changes: Map<string, Change>): void {
		for (const [key, older] of changes) {
			const newer = this.#journal.get(key);
			this.#journal.set(key, newer ? mergeChanges(older, newer) : older);
		}
	}

	#read(key: string, now: number): Entry | undefined {
		const entry = this.#entries.get(key);
		if (!entry) return undefined;
		this.#entries.delete(key);
		if (entry.expiresAt <= now) return undefined;
		// Most recently used last, so that eviction starts with the least recently used.
		this.#entries.set(key, entry);
		return entry;
	}

	#lockedFor(entry: Entry | undefined, now: number): number {
		if (!entry) return 0;
		const config = this.#config;
		switch (entry.kind) {
			case 'pair':
				return entry.count >= config.maxFailures ? entry.at + lockoutFor(config, entry.count) - now : 0;
			case 'username':
				return entry.count >= config.maxFailuresPerUsername ? entry.expiresAt - now : 0;
			case 'ip':
				return entry.count >= config.maxFailuresPerIp ? entry.expiresAt - now : 0;
		}
	}

	/**
	 * Makes room for `needed` new entries, least recently used first. With `keep` (the
	 * counts here are the only ones) only expired entries and copies of Redis counts may
	 * go, never counts made here nor those in `keep`: forgetting a count would let an
	 * attacker flood the memory to win new attempts. Returns 0 when there is room, else
	 * how long to refuse the attempt. Without `keep` (copies only), anything may go.
	 */
	#makeRoom(needed: number, now: number, keep?: readonly string[]): number {
		const max = this.#config.memory.max;
		while (this.#entries.size + needed > max) {
			let victim: string | undefined;
			let scanned = 0;
			for (const [key, entry] of this.#entries) {
				if (!keep || ((!entry.held || entry.expiresAt <= now) && !keep.includes(key))) {
					victim = key;
					break;
				}

				if (++scanned >= EVICTION_SCAN) break;
			}

			if (victim === undefined) {
				this.#log.error(
					'memory-full',
					`resilient-session: loginGuard holds ${max} counts in memory while Redis is unreachable; new ` +
						'usernames and addresses are refused until some expire (raise `memory.max`)',
				);
				return MEMORY_FULL_RETRY_MS;
			}

			this.#entries.delete(victim);
		}

		return 0;
	}

	#windowMs(kind: Kind): number {
		const config = this.#config;
		return kind === 'username' ? config.usernameWindowMs : config.ipWindowMs;
	}

	/** Counts one failure (a reservation) on `key`. */
	#count(key: string, kind: Kind, now: number, journal: boolean): Entry {
		const config = this.#config;
		let entry = this.#read(key, now);
		if (!entry) {
			entry = { kind, count: 0, at: 0, previousAt: 0, expiresAt: now + this.#windowMs(kind), held: true };
			this.#entries.set(key, entry);
		}

		entry.held = true;
		entry.count++;
		if (kind === 'pair') {
			entry.previousAt = entry.at;
			entry.at = now;
			entry.expiresAt = now + lockoutFor(config, entry.count) + config.failureWindowMs;
		}

		if (journal) this.#record(key, { kind, reset: false, added: 1, at: now });
		return entry;
	}

	/** Takes one reservation back from `key`. */
	#uncount(key: string, kind: Kind, now: number, journal: boolean): void {
		const entry = this.#read(key, now);
		if (entry) {
			entry.count--;
			if (kind === 'pair') entry.at = entry.previousAt;
			if (entry.count <= 0) this.#entries.delete(key);
		}

		if (journal) this.#record(key, { kind, reset: false, added: -1, at: 0 });
	}

	#reset(key: string, kind: Kind, journal: boolean): void {
		this.#entries.delete(key);
		if (journal) this.#record(key, { kind, reset: true, added: 0, at: 0 });
	}

	#mirror(key: string, kind: Kind, count: number, at: number, expiresAt: number, now: number): void {
		if (count <= 0 || expiresAt <= now) {
			this.#entries.delete(key);
			return;
		}

		const existing = this.#entries.get(key);
		if (!existing) this.#makeRoom(1, now);
		else this.#entries.delete(key);
		this.#entries.set(key, { kind, count, at, previousAt: existing?.previousAt ?? 0, expiresAt, held: false });
	}

	#record(key: string, change: Change): void {
		const older = this.#journal.get(key);
		if (older) this.#journal.delete(key);
		else if (this.#journal.size >= this.#config.memory.max) {
			const oldest = this.#journal.keys().next().value!;
			this.#journal.delete(oldest);
			this.#log.error(
				'journal-full',
				`resilient-session: loginGuard recorded ${this.#config.memory.max} changes while Redis was ` +
					'unreachable; the oldest are dropped and will not reach Redis (raise `memory.max`)',
			);
		}

		this.#journal.set(key, older ? mergeChanges(older, change) : change);
	}
}

// ---------------------------------------------------------------------------------
// The counts: Redis through the store's failover, memory when it says so.
// ---------------------------------------------------------------------------------

/** An attempt let through, waiting for its outcome. */
interface Reservation {
	readonly keys: LoginKeys;
	readonly byUsername: UsernameSide;
	readonly byIp: IpSide;
}

type CheckResult =
	| { readonly admitted: true; readonly reservation: Reservation }
	| { readonly admitted: false; readonly waitMs: number };

/** Changes merged into Redis at a time on recovery (node-redis pipelines each batch). */
const MERGE_BATCH = 100;

const numbers = (reply: unknown): number[] => (reply as unknown[]).map(Number);

/**
 * Whether Redis missed `result` for an outage, so that what is counted in memory
 * instead must be merged into Redis later. Not when there is no Redis, nor when it
 * refused the command (`undefined`): it would refuse the merge as well.
 */
const isOutage = (result: Attempt<unknown> | undefined): boolean => result !== undefined && !result.served;

/**
 * The counts of every guard on each failover, held weakly. Each failover gets one
 * listener per event and one recovery step, however many guards share it: it has no
 * way to remove a step, so a step per guard would pile up with every `loginGuard()`
 * call, and keep every guard alive. A guard the app no longer holds is forgotten.
 */
const countsOf = new WeakMap<Failover, Set<WeakRef<LoginCounts>>>();

interface Registration {
	readonly all: Set<WeakRef<LoginCounts>>;
	readonly ref: WeakRef<LoginCounts>;
}

const forgotten = new FinalizationRegistry<Registration>(({ all, ref }) => all.delete(ref));

const register = (failover: Failover, counts: LoginCounts): void => {
	let all = countsOf.get(failover);
	if (!all) {
		const registered = new Set<WeakRef<LoginCounts>>();
		all = registered;
		countsOf.set(failover, registered);
		const live = () => [...registered].flatMap((ref) => ref.deref() ?? []);
		failover.on('fallback', () => {
			for (const each of live()) each.forgetWarnings();
		});
		// Failures counted in memory during the outage reach Redis before the store
		// returns to it. `pending` stays false: under a steady attack something new is
		// always pending, and the store would never return. What arrives between this
		// flush and the switch is merged right after ('recover').
		failover.addRecoveryStep({
			flush: async () => {
				for (const each of live()) await each.flush();
			},
			pending: () => false,
		});
		failover.on('recover', () => {
			for (const each of live()) each.flushSoon();
		});
	}

	const ref = new WeakRef(counts);
	all.add(ref);
	forgotten.register(counts, { all, ref });
};

class LoginCounts {
	readonly #config: LoginGuardConfig;
	readonly #log: OnceLogger;
	readonly #memory: MemoryCounts;
	readonly #failover: Failover | undefined;
	readonly #client: RedisClient | undefined;
	#flushTimer: NodeJS.Timeout | undefined;

	constructor(config: LoginGuardConfig) {
		this.#config = config;
		this.#log = new OnceLogger(config.logger);
		this.#memory = new MemoryCounts(config, this.#log);
		this.#failover = config.store.failover;
		this.#client = config.store.client;
		if (this.#failover) register(this.#failover, this);
	}

	/** A new outage may report a full memory again. */
	forgetWarnings(): void {
		this.#log.forget('memory-full');
		this.#log.forget('journal-full');
	}

	/** How long a reset marker must live: as long as any username+address count it voids. */
	get #markerTtlMs(): number {
		return this.#config.maxLockoutMs + this.#config.failureWindowMs;
	}

	#windowMs(kind: Kind | 'marker'): number {
		return kind === 'username' ? this.#config.usernameWindowMs : this.#config.ipWindowMs;
	}

	async check(username: string, ip: string): Promise<CheckResult> {
		const keys = loginKeys(this.#config.prefix, username, ip);
		// The two tags live on different slots: both scripts go out together, in one round trip.
		const [byUsername, byIp] = await Promise.all([this.#checkUsername(keys), this.#checkIp(keys)]);
		if (byUsername.admitted && byIp.admitted) return { admitted: true, reservation: { keys, byUsername, byIp } };
		// Refused by one tag: take back what the other one counted.
		await Promise.all([
			byUsername.admitted ? this.#settleUsername(keys, byUsername, 'neutral') : undefined,
			byIp.admitted ? this.#settleIp(keys, byIp) : undefined,
		]);
		return { admitted: false, waitMs: Math.max(byUsername.waitMs, byIp.waitMs) };
	}

	/** Records the outcome. A failure was counted by the check already: nothing to send. */
	async settle(reservation: Reservation, outcome: LoginOutcome | 'neutral'): Promise<void> {
		if (outcome === 'failure') return;
		const { keys, byUsername, byIp } = reservation;
		await Promise.all([this.#settleUsername(keys, byUsername, outcome), this.#settleIp(keys, byIp)]);
	}

	/** The lockouts a failure of `reservation` started. */
	lockouts(reservation: Reservation): Array<Omit<LockoutInfo, 'username' | 'ip'>> {
		const config = this.#config;
		const { byUsername, byIp } = reservation;
		const lockouts: Array<Omit<LockoutInfo, 'username' | 'ip'>> = [];
		if (byUsername.pairFailures >= config.maxFailures) {
			lockouts.push({
				scope: 'username+ip',
				failures: byUsername.pairFailures,
				lockoutMs: lockoutFor(config, byUsername.pairFailures),
				backend: byUsername.where,
			});
		}

		if (byUsername.usernameFailures === config.maxFailuresPerUsername) {
			lockouts.push({
				scope: 'username',
				failures: byUsername.usernameFailures,
				lockoutMs: byUsername.usernameWindowLeftMs,
				backend: byUsername.where,
			});
		}

		if (byIp.ipFailures === config.maxFailuresPerIp) {
			lockouts.push({
				scope: 'ip',
				failures: byIp.ipFailures,
				lockoutMs: byIp.ipWindowLeftMs,
				backend: byIp.where,
			});
		}

		return lockouts;
	}

	/** Rejects only when Redis refuses the reset (a reply error); during an outage it is journaled. */
	async reset(username: string, ip: string | undefined): Promise<void> {
		const config = this.#config;
		const failover = this.#failover;
		const keys = loginKeys(config.prefix, username, ip ?? '');
		const withIp = ip !== undefined;
		let served = true;
		if (failover) {
			const client = this.#client!;
			const results = await Promise.all([
				failover.attempt('EVALSHA', () =>
					withIp
						? client.del([keys.username, keys.pair])
						: RESET_USERNAME.run(client, [keys.username, keys.marker], [this.#markerTtlMs]),
				),
				withIp ? failover.attempt('DEL', () => client.del(keys.ip)) : undefined,
			]);
			served = results.every((result) => result === undefined || result.served);
		}

		// Copies go either way; during an outage the reset is also journaled for Redis.
		this.#memory.reset(keys, withIp, Date.now(), !served);
	}

	/** Merges the changes made in memory during an outage into Redis. Rejects (keeping them) if Redis fails. */
	async flush(): Promise<void> {
		const handovers = this.#memory.takeJournal(Date.now());
		if (handovers.size === 0) return;
		const left = new Map([...handovers].map(([key, { change }]) => [key, change]));
		// Order does not matter: a reset marker only voids username+address counts whose
		// last failure is older than it, whichever is merged first.
		const ordered = [...handovers];
		let failure: unknown;
		for (let start = 0; start < ordered.length && failure === undefined; start += MERGE_BATCH) {
			// Every merge of a batch settles before deciding: one still in flight when the
			// journal is restored would be applied twice.
			const batch = ordered.slice(start, start + MERGE_BATCH);
			const results = await Promise.allSettled(batch.map(([key, handover]) => this.#merge(key, handover)));
			results.forEach((result, index) => {
				const [key] = batch[index];
				if (result.status === 'fulfilled') left.delete(key);
				else if (isReplyError(result.reason)) {
					left.delete(key);
					this.#log.error(
						'merge-refused',
						`resilient-session: Redis refused a login count: ${(result.reason as Error).message}`,
					);
				} else failure ??= result.reason;
			});
		}

		if (failure === undefined) return;
		this.#memory.restoreJournal(left);
		throw failure;
	}

	/** Merges one change kept in memory into Redis, never below the count memory held when it was handed over. */
	#merge(key: string, { change, held }: Handover): Promise<unknown> {
		const config = this.#config;
		const client = this.#client!;
		const now = Date.now();
		return this.#failover!.run('EVALSHA', () => {
			switch (change.kind) {
				case 'marker':
					return MERGE_MARKER.run(client, [key], [now - change.at, this.#markerTtlMs]);
				case 'pair':
					return MERGE_PAIR.run(client, [key], [
						Number(change.reset),
						change.added,
						held?.count ?? 0,
						now - (held?.at || change.at || 0),
						config.maxFailures,
						config.lockoutMs,
						config.lockoutFactor,
						config.maxLockoutMs,
						config.failureWindowMs,
					]);
				default:
					return MERGE_WINDOW.run(client, [key], [
						Number(change.reset),
						change.added,
						held?.count ?? 0,
						held ? held.expiresAt - now : this.#windowMs(change.kind),
					]);
			}
		});
	}

	async #checkUsername(keys: LoginKeys): Promise<UsernameSide> {
		const config = this.#config;
		const client = this.#client;
		const result = await this.#redis('check', () =>
			CHECK_USERNAME.run(
				client!,
				[keys.pair, keys.username, keys.marker],
				[
					config.maxFailures,
					config.lockoutMs,
					config.lockoutFactor,
					config.maxLockoutMs,
					config.failureWindowMs,
					config.maxFailuresPerUsername,
					config.usernameWindowMs,
				],
			),
		);
		const now = Date.now();
		if (result?.served) {
			const [admitted, waitMs, pairFailures, sinceLastMs, usernameFailures, leftMs] = numbers(result.value);
			const side: UsernameSide = {
				admitted: admitted === 1,
				waitMs,
				where: 'redis',
				journaled: false,
				pairFailures,
				usernameFailures,
				usernameWindowLeftMs: leftMs,
			};
			this.#memory.mirrorUsername(keys, now, side, sinceLastMs);
			return side;
		}

		return this.#memory.checkUsername(keys, now, isOutage(result));
	}

	async #checkIp(keys: LoginKeys): Promise<IpSide> {
		const config = this.#config;
		const client = this.#client;
		const result = await this.#redis('check', () =>
			CHECK_IP.run(client!, [keys.ip], [config.maxFailuresPerIp, config.ipWindowMs]),
		);
		const now = Date.now();
		if (result?.served) {
			const [admitted, waitMs, ipFailures, leftMs] = numbers(result.value);
			const side: IpSide = {
				admitted: admitted === 1,
				waitMs,
				where: 'redis',
				journaled: false,
				ipFailures,
				ipWindowLeftMs: leftMs,
			};
			this.#memory.mirrorIp(keys, now, side);
			return side;
		}

		return this.#memory.checkIp(keys, now, isOutage(result));
	}

	async #settleUsername(keys: LoginKeys, side: UsernameSide, settlement: Settlement): Promise<void> {
		if (side.where === 'memory') {
			this.#memory.settleUsername(keys, settlement, Date.now(), side.journaled);
			if (side.journaled) this.#flushSoonIfOnRedis();
			return;
		}

		const client = this.#client!;
		const result = await this.#redis('settle', () =>
			SETTLE_USERNAME.run(client, [keys.pair, keys.username], [settlement]),
		);
		// Served: the copies follow Redis. Not served: journaled, for Redis to learn on recovery.
		this.#memory.settleUsername(keys, settlement, Date.now(), isOutage(result));
	}

	async #settleIp(keys: LoginKeys, side: IpSide): Promise<void> {
		if (side.where === 'memory') {
			this.#memory.settleIp(keys, Date.now(), side.journaled);
			if (side.journaled) this.#flushSoonIfOnRedis();
			return;
		}

		const client = this.#client!;
		const result = await this.#redis('settle', () => UNCOUNT.run(client, [keys.ip]));
		this.#memory.settleIp(keys, Date.now(), isOutage(result));
	}

	/**
	 * Runs script `command` on Redis through the store's failover. `undefined` when there
	 * is no Redis, or when Redis answered with an error (logged once per `action`):
	 * counted in memory then, but not journaled, since Redis would refuse the merge as well.
	 */
	async #redis<T>(action: 'check' | 'settle', command: () => Promise<T>): Promise<Attempt<T> | undefined> {
		if (!this.#failover) return undefined;
		try {
			return await this.#failover.attempt('EVALSHA', command);
		} catch (error) {
			this.#log.error(
				`${action}-refused`,
				`resilient-session: Redis refused a login ${action}, counting in memory: ` + (error as Error).message,
			);
			return undefined;
		}
	}

	/** Changes journaled while the store is back on Redis (late settlements) are merged at once. */
	#flushSoonIfOnRedis(): void {
		if (this.#failover?.backend === 'redis') this.flushSoon();
	}

	/** Merges soon what is journaled (what arrived between the recovery flush and the switch). */
	flushSoon(): void {
		if (this.#flushTimer || this.#memory.journalSize === 0) return;
		this.#flushTimer = setTimeout(() => {
			this.#flushTimer = undefined;
			// On failure the changes stay journaled, for the next recovery.
			if (this.#failover?.backend === 'redis') this.flush().catch(() => {});
		}, 0);
		this.#flushTimer.unref();
	}
}

// ---------------------------------------------------------------------------------
// The middleware.
// ---------------------------------------------------------------------------------

/** 401 and 403 are failures, 2xx and 3xx successes; anything else (400, 5xx, …) was no attempt. */
const outcomeOf = (status: number): LoginOutcome | 'neutral' => {
	if (status === 401 || status === 403) return 'failure';
	if (status >= 200 && status < 400) return 'success';
	return 'neutral';
};

/**
 * Failed-login tracking and brute-force protection, shared by every instance through
 * the store's Redis. Place it before the login handler:
 *
 * ```ts
 * app.post('/login', express.json(), loginGuard({ store }), loginHandler);
 * ```
 *
 * Each attempt is counted per username+address (consecutive failures, growing
 * lockouts), per username across addresses and per address across usernames. Locked
 * attempts get `429` with `Retry-After` and a JSON body before the handler runs. The
 * outcome comes from the response status, or from `req.loginGuard.fail()` /
 * `req.loginGuard.succeed()`. When Redis is unreachable the counts go on in memory,
 * per instance, and go back to Redis on recovery.
 */
export const loginGuard = (options: LoginGuardOptions): LoginGuard => {
	const config = resolveLoginGuardOptions(options);
	const counts = new LoginCounts(config);

	const readUsername = (req: Request): string | undefined => {
		const source = config.username;
		let raw: unknown;
		if (typeof source === 'function') raw = source(req);
		else if (req.body !== null && typeof req.body === 'object') {
			raw = (req.body as Record<string, unknown>)[source];
		}

		if (typeof raw !== 'string') return undefined;
		const username = normalizeUsername(raw);
		return username === '' ? undefined : username;
	};

	const notify = (reservation: Reservation, attempt: LoginAttempt, req: Request): void => {
		const { onLockout } = config;
		if (!onLockout) return;
		for (const lockout of counts.lockouts(reservation)) {
			const report = (error: unknown) =>
				config.logger.error(
					`resilient-session: loginGuard onLockout failed: ${(error as Error)?.message ?? error}`,
					error,
				);
			try {
				const returned = onLockout({ ...lockout, username: attempt.username, ip: attempt.ip }, req);
				if (returned && typeof returned.then === 'function') returned.then(undefined, report);
			} catch (error) {
				report(error);
			}
		}
	};

	/** Records the outcome when the handler ends the response, before the response goes out. */
	const track = (
		req: Request,
		res: Response,
		next: NextFunction,
		username: string,
		ip: string,
		reservation: Reservation,
	): void => {
		let decided: LoginOutcome | undefined;
		let settling: Promise<void> | undefined;
		const attempt: LoginAttempt = Object.freeze({
			username,
			ip,
			fail: () => {
				decided = 'failure';
			},
			succeed: () => {
				decided = 'success';
			},
		});
		req.loginGuard = attempt;

		const settle = (outcome: LoginOutcome | 'neutral'): Promise<void> => {
			if (outcome === 'failure') notify(reservation, attempt, req);
			return counts.settle(reservation, outcome).catch((error: unknown) => {
				config.logger.error('resilient-session: loginGuard could not record an attempt', error);
			});
		};

		// Held back like express-session holds back its save: once the client has the
		// answer, the next attempt sees this one's outcome, on every instance.
		const end = res.end;
		res.end = function (this: Response, ...args: any[]) {
			settling ??= settle(decided ?? outcomeOf(res.statusCode));
			// What `end` throws (a chunk it cannot send, say) goes to Express, as it would have.
			settling.then(() => end.apply(res, args as Parameters<Response['end']>)).catch(next);
			return res;
		} as Response['end'];

		// A client that hangs up first: the attempt stays counted as a failure (it was
		// reserved as one) unless the handler said it succeeded.
		res.once('close', () => {
			if (!settling && decided === 'success') settling = settle('success');
		});
	};

	const guard = async (req: Request, res: Response, next: NextFunction): Promise<void> => {
		const username = readUsername(req);
		if (username === undefined) {
			res.status(400).json({ error: 'A username is required.' });
			return;
		}

		const ip = await requestAddressKey(req, config.ipv6Subnet);
		const checked = await counts.check(username, ip);
		if (!checked.admitted) {
			const seconds = Math.max(1, Math.ceil(checked.waitMs / 1000));
			res
				.status(429)
				.set({ 'Retry-After': String(seconds), 'Cache-Control': 'no-store' })
				.json({ error: config.message, retryAfter: seconds });
			return;
		}

		track(req, res, next, username, ip, checked.reservation);
		next();
	};

	const middleware = (req: Request, res: Response, next: NextFunction): void => {
		guard(req, res, next).catch(next);
	};

	return Object.assign(middleware, {
		reset: async (username: string, ip?: string): Promise<void> => {
			if (typeof username !== 'string' || normalizeUsername(username) === '') {
				invalidOption('username', 'a non-empty string', username);
			}

			if (ip !== undefined) checkString('ip', ip);
			await counts.reset(
				normalizeUsername(username),
				ip === undefined ? undefined : addressKey(ip, config.ipv6Subnet),
			);
		},
	});
};
