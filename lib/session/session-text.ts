import type { SessionData } from 'express-session';
import type { OnceLogger } from '../logger.js';
import { describe } from '../options/checks.js';
import { withoutEndsAt } from './lifetime.js';
import type { StoreConfig } from './options.js';

/**
 * Parses the text Redis holds for `sid`. Text that is not a session (`null` read by a
 * serializer other than JSON, empty, garbage: another writer, a corrupted value) is no
 * session, logged once, so that the request goes on with a fresh one instead of failing.
 */
export const parseSessionText = async (
	config: Pick<StoreConfig, 'serializer' | 'prefix'>,
	log: OnceLogger,
	sid: string,
	text: string,
): Promise<SessionData | null> => {
	let why: string;
	try {
		const session: unknown = await config.serializer.parse(text);
		if (session !== null && typeof session === 'object' && !Array.isArray(session)) {
			return withoutEndsAt(session as SessionData);
		}
		why = `it is ${describe(session)}`;
	} catch (error) {
		why = (error as Error).message;
	}

	log.warn(
		'unreadable-session',
		`resilient-session: the session text of ${JSON.stringify(config.prefix + sid)} is not a session (${why}): treated as no session`,
	);
	return null;
};
