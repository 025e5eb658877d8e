import type { IncomingMessage } from 'node:http';

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
