import type { Logger } from '../logger.js';

/** How a value appears in the message of an option's `TypeError`. */
export const describe = (value: unknown): string => {
	if (typeof value === 'string') return JSON.stringify(value);
	if (typeof value === 'function') return 'a function';
	if (value === null) return 'null';
	if (Array.isArray(value)) return 'an array';
	if (typeof value === 'object') return 'an object';
	return String(value);
};

/** Throws the `TypeError` of a bad option: what `option` must be, and what it got. */
export const invalidOption = (option: string, expected: string, value: unknown): never => {
	throw new TypeError(`resilient-session: \`${option}\` must be ${expected}; got ${describe(value)}`);
};

/** Throws a `TypeError` naming `option` unless `value` is a whole number ≥ `min`. */
export const checkInteger = (option: string, value: unknown, min: number): number => {
	if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
		invalidOption(option, `a whole number of at least ${min}`, value);
	}

	return value as number;
};

/** Throws a `TypeError` naming `option` unless `value` is a whole number from `min` to `max`. */
export const checkIntegerIn = (option: string, value: unknown, min: number, max: number): number =>
	typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max
		? value
		: invalidOption(option, `a whole number from ${min} to ${max}`, value);

export const checkBoolean = (option: string, value: unknown): boolean =>
	typeof value === 'boolean' ? value : invalidOption(option, 'true or false', value);

/** Throws a `TypeError` naming `option` unless `value` is a plain object (not null, not an array). */
export const checkObject = (option: string, value: unknown, expected = 'an object'): Record<string, unknown> =>
	value !== null && typeof value === 'object' && !Array.isArray(value)
		? (value as Record<string, unknown>)
		: invalidOption(option, expected, value);

/** Throws a `TypeError` naming `option` unless `value` is a string (a non-empty one with `nonEmpty`). */
export const checkString = (option: string, value: unknown, nonEmpty = false): string =>
	typeof value === 'string' && (!nonEmpty || value !== '')
		? value
		: invalidOption(option, nonEmpty ? 'a non-empty string' : 'a string', value);

/** Throws a `TypeError` naming `option` unless `value` is a function. */
export const checkFunction = <T>(option: string, value: T): T =>
	typeof value === 'function' ? value : invalidOption(option, 'a function', value);

/**
 * Checks the IPv6 prefix length that counts as one client: a whole number from 32 to
 * 64, or `false` for whole addresses. The same rule as express-rate-limit's: a longer
 * prefix lets one client rotate through the addresses it owns, a shorter one lumps
 * many clients together.
 */
export const checkIpv6Subnet = (value: unknown): number | false =>
	value === false ? false : checkIntegerIn('ipv6Subnet', value, 32, 64);

export const checkLogger = (value: unknown): Logger => {
	const logger = checkObject('logger', value);
	if (typeof logger.warn !== 'function' || typeof logger.error !== 'function') {
		invalidOption('logger', 'an object with warn() and error() methods', value);
	}

	return logger as unknown as Logger;
};

/** How many single-character edits turn `a` into `b` (Levenshtein distance). */
const editDistance = (a: string, b: string): number => {
	let previous = Array.from({ length: b.length + 1 }, (_, index) => index);
	for (let i = 1; i <= a.length; i++) {
		const current = [i];
		for (let j = 1; j <= b.length; j++) {
			const substitution = previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1);
			current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, substitution);
		}

		previous = current;
	}

	return previous[b.length];
};

/**
 * The known name closest to `name`: the one fewest edits away, ignoring case, or the
 * one that starts with it or that it starts with (`timeout` → `timeoutMs`).
 */
export const closestName = (name: string, known: readonly string[]): string | undefined => {
	const lower = name.toLowerCase();
	let best: string | undefined;
	let bestDistance = Infinity;
	for (const candidate of known) {
		const other = candidate.toLowerCase();
		const distance = other.startsWith(lower) || lower.startsWith(other) ? 0.5 : editDistance(lower, other);
		if (distance < bestDistance) {
			best = candidate;
			bestDistance = distance;
		}
	}

	return best;
};

/**
 * Throws a `TypeError` for the first option of `options` that `known` does not list,
 * naming it and the closest real one, so that a misspelt option is an error rather than
 * silently ignored. `owner` names what takes the options (`ResilientStore`,
 * `rateLimit()`); `hints` explains names that look right but are not (`max`: use `limit`).
 */
export const rejectUnknownOptions = (
	owner: string,
	options: object,
	known: Readonly<Record<string, true>>,
	hints: Readonly<Record<string, string>> = {},
): void => {
	const names = Object.keys(known);
	for (const name of Object.keys(options)) {
		if (Object.hasOwn(known, name)) continue;
		const closest = closestName(name, names);
		const hint = hints[name] ?? (closest === undefined ? undefined : `did you mean \`${closest}\`?`);
		throw new TypeError(`resilient-session: ${owner} has no option \`${name}\`${hint ? ` (${hint})` : ''}`);
	}
};
