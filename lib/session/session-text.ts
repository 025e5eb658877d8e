import type { SessionData } from 'express-session';
import type { OnceLogger } from '../logger.js';
import { describe } from '../options/checks.js';
import { isPromiseLike, type MaybePromise } from '../maybe-async.js';
import { withoutEndsAt } from './lifetime.js';
import type { StoreConfig } from './options.js';

/**
 * Parses the text Redis holds for `sid`. Text that is not a session (`null` read by a
 * serializer other than JSON, empty, garbage: another writer, a corrupted value) is no
 * session, logged once, so that the request goes on with a fresh one instead of failing.
 * At once with a serializer that answers at once (JSON), as a promise with one that
 * answers with a promise.
 */
export const parseSessionText = (
	config: Pick<StoreConfig, 'serializer' | 'prefix'>,
	log: OnceLogger,
	sid: string,
	text: string,
): MaybePromise<SessionData | null> => {
	const unreadable = (why: string): null => {
		log.warn(
			'unreadable-session',
			`resilient-session: the session text of ${JSON.stringify(config.prefix + sid)} is not a session (${why}): treated as no session`,
		);
		return null;
	};
	const asSession = (session: unknown): SessionData | null =>
		session !== null && typeof session === 'object' && !Array.isArray(session)
			? withoutEndsAt(session as SessionData)
			: unreadable(`it is ${describe(session)}`);

	let parsed: unknown;
	try {
		parsed = config.serializer.parse(text);
	} catch (error) {
		return unreadable((error as Error).message);
	}

	if (!isPromiseLike(parsed)) return asSession(parsed);
	return Promise.resolve(parsed).then(asSession, (error: unknown) => unreadable((error as Error).message));
};
