import type { CountOperation, KeySetDescription, ScriptCall } from '../counting/engine.js';
import type { CountModel, Entry, MemoryCounts } from '../counting/memory-counts.js';
import { mergeWindow, windowModel } from '../counting/window.js';
import { type LoginKeys, lockoutFor } from './keys.js';
import type { LockoutScope, LoginGuardConfig } from './options.js';
import {
	CHECK_IP,
	CHECK_USERNAME,
	DELETE,
	MERGE_MARKER,
	MERGE_PAIR,
	RESET_USERNAME,
	SETTLE_USERNAME,
	UNCOUNT,
} from './scripts.js';

/** A lockout a failure may start, as a check saw it. */
export interface LockoutCount {
	readonly scope: LockoutScope;
	readonly failures: number;
	readonly lockoutMs: number;
}

/** A check's answer for one key set. */
export interface CheckSide {
	readonly admitted: boolean;
	readonly waitMs: number;
	/** The lockouts that this attempt starts if it fails. */
	readonly lockouts: readonly LockoutCount[];
}

export type Settlement = 'success' | 'neutral';

/** What the login guard does with each of its key sets. */
export interface LoginKeySet extends KeySetDescription {
	/** Counts an attempt as a failure up front (the reservation), unless locked. */
	readonly check: CountOperation<LoginKeys, CheckSide>;
	/** Takes a reservation back, or (`'success'`) resets what a success resets. */
	readonly settle: CountOperation<{ readonly keys: LoginKeys; readonly settlement: Settlement }, void>;
	/** An administrator's `reset()`: with `withIp`, of one address only. */
	readonly reset: CountOperation<{ readonly keys: LoginKeys; readonly withIp: boolean }, void>;
}

/** `Retry-After` of an attempt refused because memory is full: room comes back as counts expire. */
const MEMORY_FULL_RETRY_MS = 1_000;

const numbers = (reply: unknown): number[] => (reply as unknown[]).map(Number);

/** How long a reset marker must live: as long as any username+address count it voids. */
const markerTtlMs = (config: LoginGuardConfig): number => config.maxLockoutMs + config.failureWindowMs;

/** How long a window count at or over `limit` refuses attempts: until its window ends. */
const windowLock = (entry: Entry | undefined, limit: number, now: number): number =>
	entry && entry.count >= limit ? entry.expiresAt - now : 0;

/**
 * The username's set, under the hash tag of the username: its consecutive failures
 * from each address (`pair`, growing lockouts), its failures from every address in a
 * window (`username`), and the time of its last `reset()` (`marker`).
 */
export const usernameSet = (config: LoginGuardConfig): LoginKeySet => {
	const pairModel: CountModel = {
		kind: 'pair',
		expiresAt: (entry, now) => now + lockoutFor(config, entry.count) + config.failureWindowMs,
	};
	const usernameModel = windowModel('username', config.usernameWindowMs);
	const pairLock = (pair: Entry | undefined, now: number) =>
		pair && pair.count >= config.maxFailures ? pair.at + lockoutFor(config, pair.count) - now : 0;

	const side = (admitted: boolean, waitMs: number, pairFailures: number, usernameFailures: number, leftMs: number) => {
		const lockouts: LockoutCount[] = [];
		if (pairFailures >= config.maxFailures) {
			lockouts.push({ scope: 'username+ip', failures: pairFailures, lockoutMs: lockoutFor(config, pairFailures) });
		}

		if (usernameFailures === config.maxFailuresPerUsername) {
			lockouts.push({ scope: 'username', failures: usernameFailures, lockoutMs: leftMs });
		}

		return { admitted, waitMs, lockouts };
	};

	/** Takes back or resets what a check counted (copies follow Redis; `journal`: Redis must learn of it). */
	const settleInMemory = (
		memory: MemoryCounts,
		{ keys, settlement }: { keys: LoginKeys; settlement: Settlement },
		now: number,
		journal: boolean,
	) => {
		if (settlement === 'success') memory.reset(keys.pair, 'pair', journal);
		else memory.uncount(keys.pair, 'pair', now, journal);
		memory.uncount(keys.username, 'username', now, journal);
	};

	const resetInMemory = (
		memory: MemoryCounts,
		{ keys, withIp }: { keys: LoginKeys; withIp: boolean },
		now: number,
		journal: boolean,
	) => {
		memory.reset(keys.username, 'username', journal);
		if (withIp) {
			memory.reset(keys.pair, 'pair', journal);
			return;
		}

		// Every username+address count of this username.
		memory.forgetPrefix(`${keys.username}:ip:`);
		if (journal) memory.reset(keys.marker, 'marker', true, now);
	};

	return {
		check: {
			name: 'check',
			calls: (keys) => [
				{
					script: CHECK_USERNAME,
					keys: [keys.pair, keys.username, keys.marker],
					args: [
						config.maxFailures,
						config.lockoutMs,
						config.lockoutFactor,
						config.maxLockoutMs,
						config.failureWindowMs,
						config.maxFailuresPerUsername,
						config.usernameWindowMs,
					],
				},
			],
			fromRedis: ([reply], keys, memory, now) => {
				const [admitted, waitMs, pairFailures, sinceLastMs, usernameFailures, leftMs] = numbers(reply);
				const at = now - sinceLastMs;
				const pairExpiresAt = at + lockoutFor(config, pairFailures) + config.failureWindowMs;
				memory.mirror(keys.pair, 'pair', pairFailures, at, pairExpiresAt, now);
				memory.mirror(keys.username, 'username', usernameFailures, 0, now + leftMs, now);
				return side(admitted === 1, waitMs, pairFailures, usernameFailures, leftMs);
			},
			inMemory: (memory, keys, now, journal) => {
				const pair = memory.read(keys.pair, now);
				const username = memory.read(keys.username, now);
				const wait = Math.max(pairLock(pair, now), windowLock(username, config.maxFailuresPerUsername, now));
				const room = wait > 0 || memory.makeRoom(Number(!pair) + Number(!username), now, [keys.pair, keys.username]);
				if (wait > 0 || !room) {
					const left = username ? username.expiresAt - now : config.usernameWindowMs;
					return side(false, Math.max(wait, room ? 0 : MEMORY_FULL_RETRY_MS), pair?.count ?? 0, username?.count ?? 0, left);
				}

				const counted = memory.count(keys.pair, pairModel, now, journal);
				const total = memory.count(keys.username, usernameModel, now, journal);
				return side(true, 0, counted.count, total.count, total.expiresAt - now);
			},
		},
		settle: {
			name: 'settle',
			calls: ({ keys, settlement }) => [
				{ script: SETTLE_USERNAME, keys: [keys.pair, keys.username], args: [settlement] },
			],
			fromRedis: (_replies, input, memory, now) => settleInMemory(memory, input, now, false),
			inMemory: settleInMemory,
		},
		reset: {
			name: 'reset',
			calls: ({ keys, withIp }) => [
				withIp
					? { script: DELETE, keys: [keys.username, keys.pair], args: [] }
					: { script: RESET_USERNAME, keys: [keys.username, keys.marker], args: [markerTtlMs(config)] },
			],
			fromRedis: (_replies, input, memory, now) => resetInMemory(memory, input, now, false),
			inMemory: resetInMemory,
		},
		merges: {
			pair: (key, { change, held }, now): ScriptCall => ({
				script: MERGE_PAIR,
				keys: [key],
				args: [
					Number(change.reset),
					change.added,
					held?.count ?? 0,
					now - (held?.at || change.at || 0),
					config.maxFailures,
					config.lockoutMs,
					config.lockoutFactor,
					config.maxLockoutMs,
					config.failureWindowMs,
				],
			}),
			username: mergeWindow(config.usernameWindowMs),
			marker: (key, { change }, now) => ({
				script: MERGE_MARKER,
				keys: [key],
				args: [now - change.at, markerTtlMs(config)],
			}),
		},
	};
};

/** The address's set, under the hash tag of the address: its failures across usernames in a window. */
export const addressSet = (config: LoginGuardConfig): LoginKeySet => {
	const model = windowModel('ip', config.ipWindowMs);
	const side = (admitted: boolean, waitMs: number, failures: number, leftMs: number): CheckSide => ({
		admitted,
		waitMs,
		lockouts: failures === config.maxFailuresPerIp ? [{ scope: 'ip', failures, lockoutMs: leftMs }] : [],
	});

	return {
		check: {
			name: 'check',
			calls: (keys) => [{ script: CHECK_IP, keys: [keys.ip], args: [config.maxFailuresPerIp, config.ipWindowMs] }],
			fromRedis: ([reply], keys, memory, now) => {
				const [admitted, waitMs, failures, leftMs] = numbers(reply);
				memory.mirror(keys.ip, 'ip', failures, 0, now + leftMs, now);
				return side(admitted === 1, waitMs, failures, leftMs);
			},
			inMemory: (memory, keys, now, journal) => {
				const ip = memory.read(keys.ip, now);
				const wait = windowLock(ip, config.maxFailuresPerIp, now);
				const room = wait > 0 || memory.makeRoom(Number(!ip), now, [keys.ip]);
				if (wait > 0 || !room) {
					const left = ip ? ip.expiresAt - now : config.ipWindowMs;
					return side(false, Math.max(wait, room ? 0 : MEMORY_FULL_RETRY_MS), ip?.count ?? 0, left);
				}

				const counted = memory.count(keys.ip, model, now, journal);
				return side(true, 0, counted.count, counted.expiresAt - now);
			},
		},
		settle: {
			name: 'settle',
			calls: ({ keys }) => [{ script: UNCOUNT, keys: [keys.ip], args: [] }],
			fromRedis: (_replies, { keys }, memory, now) => memory.uncount(keys.ip, 'ip', now, false),
			inMemory: (memory, { keys }, now, journal) => memory.uncount(keys.ip, 'ip', now, journal),
		},
		reset: {
			name: 'reset',
			calls: ({ keys }) => [{ script: DELETE, keys: [keys.ip], args: [] }],
			fromRedis: (_replies, { keys }, memory) => memory.reset(keys.ip, 'ip', false),
			inMemory: (memory, { keys }, _now, journal) => memory.reset(keys.ip, 'ip', journal),
		},
		merges: { ip: mergeWindow(config.ipWindowMs) },
	};
};
