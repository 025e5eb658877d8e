/** The optional last argument of every express-session store method. */
export type Callback<T = unknown> = (error?: unknown, value?: T) => void;

/**
 * Lets a method serve both styles, as connect-redis does: it returns a promise, and also
 * calls `callback` when one is given. With a callback, errors go to it and the promise
 * never rejects (nobody may be listening to it). The callback runs outside the
 * operation's own error handling, so an exception it throws is not reported to it twice.
 */
export const settle = <T>(operation: Promise<T>, callback?: Callback<T>): Promise<T | undefined> => {
	if (!callback) return operation;
	return operation.then(
		(value) => {
			callback(null, value);
			return value;
		},
		(error: unknown) => {
			callback(error);
			return undefined;
		},
	);
};
