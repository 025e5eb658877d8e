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

/**
 * {@link settle}, with the callback called in the event loop's check phase
 * (`setImmediate`), as express-session's MemoryStore and memorystore call theirs. A
 * session served from memory then reaches express-session after the requests read in the
 * same poll phase, and their handlers run one after another, rather than each in the
 * middle of reading the next: a read-only request served from memory costs the process
 * measurably less CPU that way (bench/README.md, "Throughput"). An answer that came
 * from Redis is already past the poll phase; the check phase of the same turn follows at
 * once.
 */
export const settleInCheckPhase = <T>(operation: Promise<T>, callback?: Callback<T>): Promise<T | undefined> =>
	settle(operation, callback && ((error, value) => setImmediate(callback, error, value)));
