import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isIP, isIPv6 } from 'node:net';
import { ipKeyGenerator } from 'express-rate-limit';

const loaded = Symbol('resilient-session.loaded');

type Marked = IncomingMessage & { [loaded]?: string; sessionID?: string };

/** Marks `req` as carrying session `sid`, loaded from the store (called by the store). */
export const markLoaded = (req: IncomingMessage, sid: string): void => {
	(req as Marked)[loaded] = sid;
};

/**
 * The id of the session this request brought with it, if the store knew it: `undefined`
 * for a request without a cookie, with an unknown or forged id, or whose session was
 * created (or regenerated) during this request. Rate limiting keys on this, so that
 * dropping or forging the cookie never escapes a limit.
 */
export const storedSessionId = (req: IncomingMessage): string | undefined => {
	const sid = (req as Marked)[loaded];
	return sid !== undefined && sid === (req as Marked).sessionID ? sid : undefined;
};

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
 * `ipv6Subnet` may be a function, asked only for an IPv6 client.
 */
export const requestAddressKey = async (
	req: IncomingMessage & { readonly ip?: string },
	ipv6Subnet: number | false | (() => number | Promise<number>),
): Promise<string> => {
	const address = req.ip ?? req.socket?.remoteAddress;
	if (typeof ipv6Subnet !== 'function') return addressKey(address, ipv6Subnet);
	return addressKey(address, address && isIPv6(address) ? await ipv6Subnet() : false);
};
