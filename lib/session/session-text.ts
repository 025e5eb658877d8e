import type { SessionData } from 'express-session';
import type { OnceLogger } from '../logger.js';
import { describe } from '../options/checks.js';
import { isPromiseLike, type MaybePromise } from '../maybe-async.js';
import { withoutEndsAt } from './lifetime.js';
import type { StoreConfig } from './options.js';

type Config = Pick<StoreConfig, 'serializer' | 'prefix'>;

/** Logs once that the text of `sid` is not a session, and why; it is taken for none. */
const unreadable = (config: Config, log: OnceLogger, sid: string, why: string): null => {
	log.warn(
		'unreadable-session',
		`resilient-session: the session text of ${JSON.stringify(config.prefix + sid)} is not a session (${why}): treated as no session`,
	);
	return null;
};

/** What the serializer gave for `sid`, as a session if it is one. */
const asSession = (config: Config, log: OnceLogger, sid: string, parsed: unknown): SessionData | null =>
	parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)
		? withoutEndsAt(parsed as SessionData)
		: unreadable(config, log, sid, `it is ${describe(parsed)}`);

/**
 * Parses the text Redis holds for `sid`. Text that is not a session (`null` read by a
 * serializer other than JSON, empty, garbage: another writer, a corrupted value) is no
 * session, logged once, so that the request goes on with a fresh one instead of failing.
 * At once with a serializer that answers at once (JSON), as a promise with one that
 * answers with a promise. Every read served from memory comes this way: it makes no
 * closure unless the serializer answers with a promise.
 */
export const parseSessionText = (
	config: Config,
	log: OnceLogger,
	sid: string,
	text: string,
): MaybePromise<SessionData | null> => {
	let parsed: unknown;
	try {
		parsed = config.serializer.parse(text);
	} catch (error) {
		return unreadable(config, log, sid, (error as Error).message);
	}

	if (!isPromiseLike(parsed)) return asSession(config, log, sid, parsed);
	return Promise.resolve(parsed).then(
		(session) => asSession(config, log, sid, session),
		(error: unknown) => unreadable(config, log, sid, (error as Error).message),
	);
};
