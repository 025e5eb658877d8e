import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

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

/**
 * The connection of the HTTP/1 request whose session `session` is, when express-session
 * made it (its `Session` keeps the request, as `req`, out of its enumerable fields) and
 * the request's response is not over (Express's `req.res` tells); `undefined` for a
 * session given by other code.
 */
export const connectionOf = (session: object): Socket | undefined => {
	const req = (session as { req?: IncomingMessage & { res?: ServerResponse } }).req;
	if (req?.httpVersionMajor !== 1 || req.res?.writableEnded) return undefined;
	const socket = req.socket;
	return socket && typeof socket.cork === 'function' && !socket.destroyed ? socket : undefined;
};
