import type { Request } from 'express';
import type { Backend } from '../redis/failover.js';
import type { Logger } from '../logger.js';
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
import type { ResilientStore } from '../session/store.js';

/** What an attempt turned out to be. */
export type LoginOutcome = 'failure' | 'success';

/** Which count a lockout is on. */
export type LockoutScope = 'username+ip' | 'username' | 'ip';

/** What {@link LoginGuardOptions.onLockout} is told. */
export interface LockoutInfo {
	/** The count that reached its limit. */
	readonly scope: LockoutScope;
	/** The username as counted (see `normalizeUsername`). */
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
export interface LoginGuardConfig {
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
export const resolveLoginGuardOptions = (options: LoginGuardOptions): LoginGuardConfig => {
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
