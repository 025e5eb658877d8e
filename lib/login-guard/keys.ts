import { shortDigest } from '../counting/client-address.js';
import type { LoginGuardConfig } from './options.js';

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
export const lockoutFor = (config: LoginGuardConfig, failures: number): number => {
	if (failures < config.maxFailures) return 0;
	const grown = config.lockoutMs * config.lockoutFactor ** Math.min(failures - config.maxFailures, 64);
	return Math.min(Math.ceil(grown), config.maxLockoutMs);
};

