import { shortDigest } from '../counting/client-address.js';
import type { LoginGuardConfig } from './options.js';

/** Characters that show nothing: default-ignorable code points (zero-width space, soft hyphen, …) and controls. */
const INVISIBLE = /[\p{Default_Ignorable_Code_Point}\p{Cc}]/gu;

/**
 * The username as counted, so that names that look alike are one account:
 *
 * 1. Unicode NFKC: full-width and compatibility forms folded (`ＡＤＭＩＮ` is `ADMIN`);
 * 2. case folding, upper then lower case, which folds what lower-casing alone leaves
 *    apart (`Straße` is `strasse`);
 * 3. default-ignorable code points and control characters removed (`admin\u200b`,
 *    `adm\u00adin` and `admin\u0000` are `admin`), then NFKC again for what the removal
 *    brought together;
 * 4. leading and trailing white space trimmed.
 *
 * A username left empty is no username (answered `400`).
 */
export const normalizeUsername = (username: string): string =>
	username.normalize('NFKC').toUpperCase().toLowerCase().replace(INVISIBLE, '').normalize('NFKC').trim();

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

