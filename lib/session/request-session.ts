import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Store } from 'express-session';
import { inCheckPhase } from '../callback.js';

/**
 * The sessions express-session made from what the store held (`createSession`, also on
 * `reload()`); `regenerate()` makes one that is not in it. Kept here rather than marked on
 * the request or the session: the session shows the user's data alone, and Express gives
 * every request a prototype of its application's own (`Object.setPrototypeOf` in
 * `app.handle`), after which V8 makes a new hidden class for each property added to that
 * request, which costs about 2.7 µs (bench/README.md, "Server CPU per request"). Weakly
 * held: nothing tells when a request is done with its session (rateLimit()'s tickets have
 * such a moment, and a `Map`).
 */
const loadedSessions = new WeakSet<object>();

/** Marks `session`, made by express-session from what the store held, as loaded (called by the store). */
export const markLoaded = (session: object): void => {
	loadedSessions.add(session);
};

/**
 * The id of the session this request brought with it, if the store knew it and the request
 * still has it: `undefined` for a request without a cookie, with an unknown or forged id,
 * whose session was created (or regenerated) during this request, or that let go of it
 * (`req.session = null`, or destroyed). Rate limiting keys on this, so that dropping or
 * forging the cookie never escapes a limit.
 */
export const storedSessionId = (req: IncomingMessage): string | undefined => {
	const { session, sessionID } = req as IncomingMessage & { session?: { id?: string } | null; sessionID?: string };
	return session && loadedSessions.has(session) && session.id === sessionID ? sessionID : undefined;
};

/**
 * The connection of the HTTP/1 request whose session `session` is, when express-session
 * made it (its `Session` keeps the request, as `req`, out of its enumerable fields) and
 * the request's response is not over (Express's `req.res` tells); `undefined` for a
 * session given by other code.
 */
const connectionOf = (session: object): Socket | undefined => {
	const req = (session as { req?: IncomingMessage & { res?: ServerResponse } }).req;
	if (req?.httpVersionMajor !== 1 || req.res?.writableEnded) return undefined;
	const socket = req.socket;
	return socket && typeof socket.cork === 'function' && !socket.destroyed ? socket : undefined;
};

/**
 * Runs `operation` on the session of a request with the request's connection corked (one
 * `cork()`, undone once `operation` has settled, its callbacks run): what the response
 * writes meanwhile leaves in one write when it is done. A session given by other code
 * (see `connectionOf`) runs as it is.
 */
export const corkedWhile = <T>(session: object, operation: () => Promise<T>): Promise<T> => {
	const connection = connectionOf(session);
	if (!connection) return operation();
	connection.cork();
	const running = operation();
	void running.finally(() => connection.uncork()).catch(() => {});
	return running;
};

/**
 * `req.session.regenerate()` of a request that brought no stored session (no cookie, an
 * unknown or expired id): its id is one express-session made up for it in this request,
 * which no store has ever held, so there is nothing to destroy and no round trip is spent
 * on it. This is the login of a visitor without a session, the most common one. Gives the
 * request its new session and calls back asynchronously, as after a destroy, in the check
 * phase as `get` does; returns whether it did (`held`: whether the store holds the id in
 * memory or waits to write it back, which makes it a stored session).
 */
export const regenerateNeverStored = (
	store: Store,
	req: IncomingMessage & { sessionID: string },
	callback: (error?: unknown) => void,
	held: (sid: string) => boolean,
): boolean => {
	const sid = req.sessionID;
	if (storedSessionId(req) === sid || held(sid)) return false;
	// `generate` is the session middleware's, set on the store it is given.
	inCheckPhase(() => {
		(store as unknown as { generate(req: IncomingMessage): void }).generate(req);
		callback();
	});
	return true;
};
