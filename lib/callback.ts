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

/** Calls waiting for the next check phase, in the order they were queued; `undefined` when none is. */
let checkPhaseCalls: Array<() => void> | undefined;

const runCheckPhaseCalls = (): void => {
	const calls = checkPhaseCalls!;
	checkPhaseCalls = undefined;
	for (let index = 0; index < calls.length; index++) {
		try {
			calls[index]!();
		} catch (error) {
			// Thrown as a `setImmediate` callback's error would be; the calls after it still run.
			for (const call of calls.slice(index + 1)) inCheckPhase(call);
			throw error;
		}
	}
};

/**
 * Runs `call` in the event loop's next check phase, as `setImmediate` would, but every
 * call queued before that phase in one `setImmediate`. The responses their requests
 * start writing are then sent one after another at the end of the batch, rather than
 * each between two handlers: on a loopback the kernel wakes the load's reader once for
 * them all instead of once for each, which the server pays for in `writev`
 * (bench/README.md, "Throughput").
 */
export const inCheckPhase = (call: () => void): void => {
	if (checkPhaseCalls === undefined) {
		checkPhaseCalls = [];
		setImmediate(runCheckPhaseCalls);
	}

	checkPhaseCalls.push(call);
};

/**
 * {@link settle}, with the callback called in the event loop's check phase
 * ({@link inCheckPhase}), as express-session's MemoryStore and memorystore call theirs. A
 * session served from memory then reaches express-session after the requests read in the
 * same poll phase, and their handlers run one after another, rather than each in the
 * middle of reading the next: a read-only request served from memory costs the process
 * measurably less CPU that way (bench/README.md, "Throughput"). An answer that came
 * from Redis is already past the poll phase; the check phase of the same turn follows at
 * once.
 */
export const settleInCheckPhase = <T>(operation: Promise<T>, callback?: Callback<T>): Promise<T | undefined> =>
	settle(operation, callback && ((error, value) => inCheckPhase(() => callback(error, value))));
