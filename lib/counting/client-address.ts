import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isIP, isIPv6 } from 'node:net';
import { ipKeyGenerator } from 'express-rate-limit';
import { type MaybePromise, whenKnown } from '../maybe-async.js';

/** A short, fixed-length digest of `text` (22 base64url characters of its SHA-256). */
export const shortDigest = (text: string): string => createHash('sha256').update(text).digest('base64url').slice(0, 22);

/**
 * The key a client address is counted under: an IPv6 address as its subnet of
 * `ipv6Subnet` bits (`false`: the whole address), as express-rate-limit's
 * `ipKeyGenerator` does. Anything that is not an address (a misconfigured proxy
 * header, which the client may fill at will) is counted too, but kept short and inert.
 */
export const addressKey = (address: string | undefined, ipv6Subnet: number | false): string =>
	address && isIP(address) ? ipKeyGenerator(address, ipv6Subnet) : `other:${shortDigest(address ?? '')}`;

/**
 * The key the client of `req` is counted under: {@link addressKey} of Express's `req.ip`
 * (which follows the `trust proxy` setting), or of the socket's address without Express.
 * `ipv6Subnet` may be a function, asked only for an IPv6 client: only then may the key
 * come as a promise.
 */
export const requestAddressKey = (
	req: IncomingMessage & { readonly ip?: string },
	ipv6Subnet: number | false | (() => number | Promise<number>),
): MaybePromise<string> => {
	const address = req.ip ?? req.socket?.remoteAddress;
	if (typeof ipv6Subnet !== 'function') return addressKey(address, ipv6Subnet);
	if (!address || !isIPv6(address)) return addressKey(address, false);
	return whenKnown(ipv6Subnet(), (subnet) => addressKey(address, subnet));
};
