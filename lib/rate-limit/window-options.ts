/** The checks of `rateLimit()`'s windows and counts: limits, costs and `windows` (see options.ts). */
import {
	checkIntegerIn,
	checkObject,
	checkString,
	invalidOption,
	rejectUnknownOptions,
} from '../options/checks.js';
import type { RateLimitWindow, WindowConfig } from './options.js';

/** The longest `windowMs`: the memory side's sweep is a `setInterval` of one window. */
export const MAX_WINDOW_MS = 2 ** 31 - 1;

/** The options of each window of `windows`. */
const WINDOW_OPTIONS = Object.freeze({
	windowMs: true,
	limit: true,
	limitDuringOutage: true,
	addressLimit: true,
	identifier: true,
} satisfies Record<keyof RateLimitWindow, true>);

/** Options that each window of `windows` sets for itself. */
export const PER_WINDOW = ['windowMs', 'limit', 'limitDuringOutage', 'addressLimit', 'identifier'] as const;

/**
 * The largest limit or cost: counts are computed in whole millionths in Lua, whose
 * numbers are doubles, exact up to 2^53 millionths (about 9 billion).
 */
const MAX_COUNT = 9e9;

/** A limit or cost: a number from 0 to {@link MAX_COUNT}. */
export const checkCount = (option: string, value: unknown): number => {
	if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > MAX_COUNT) {
		invalidOption(option, `a number from 0 to ${MAX_COUNT.toLocaleString('en-US')}`, value);
	}

	return value as number;
};

/** A limit, or a function returning one per request. */
export const checkCountOrFunction = <T>(option: string, value: T): T => {
	if (typeof value !== 'function' && (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > MAX_COUNT)) {
		invalidOption(option, `a number from 0 to ${MAX_COUNT.toLocaleString('en-US')} or a function returning one`, value);
	}

	return value;
};

/** Checks `windows` into resolved windows: a non-empty array of distinct `{ windowMs, limit }`. */
export const resolveWindows = (value: unknown): WindowConfig[] => {
	if (!Array.isArray(value) || value.length === 0) {
		invalidOption('windows', 'a non-empty array of { windowMs, limit }', value);
	}

	const windows = (value as unknown[]).map((given, i): WindowConfig => {
		const name = `windows[${i}]`;
		const window = checkObject(name, given, 'an object { windowMs, limit }') as unknown as RateLimitWindow;
		rejectUnknownOptions(`rateLimit() ${name}`, window, WINDOW_OPTIONS);
		const limit = checkCount(`${name}.limit`, window.limit);
		return {
			windowMs: checkIntegerIn(`${name}.windowMs`, window.windowMs, 1, MAX_WINDOW_MS),
			limit,
			limitDuringOutage:
				window.limitDuringOutage === undefined ? limit : checkCount(`${name}.limitDuringOutage`, window.limitDuringOutage),
			addressLimit: window.addressLimit === undefined ? undefined : checkCount(`${name}.addressLimit`, window.addressLimit),
			identifier: window.identifier === undefined ? undefined : checkString(`${name}.identifier`, window.identifier, true),
		};
	});
	const lengths = new Set(windows.map((window) => window.windowMs));
	if (lengths.size < windows.length) {
		invalidOption('windows', 'windows of different lengths (keep the lower limit of two of one length)', value);
	}

	return windows;
};
