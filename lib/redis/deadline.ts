import { RedisTimeoutError } from '../errors.js';

/** How a command under a deadline ended: its value, or the error it (or its deadline) gave. */
export type Settled<T> = (...outcome: [failed: false, value: T] | [failed: true, error: unknown]) => void;

/**
 * Calls `settled` once `promise` settles, or with a {@link RedisTimeoutError} after `ms`,
 * whichever comes first; never twice.
 *
 * Written by hand because node-redis's own `timeout`/`AbortSignal` only covers a command
 * still waiting in its queue: one already written to a socket whose peer went silent
 * would wait forever. The command is left to settle on its own; nobody awaits it.
 * It runs on every Redis command, so it allocates one timer and one reaction, and no
 * promise of its own: the caller makes the one it hands on.
 */
export const settleWithin = <T>(promise: Promise<T>, ms: number, operation: string, settled: Settled<T>): void => {
	let done = false;
	const timer = setTimeout(() => {
		done = true;
		settled(true, new RedisTimeoutError(operation, ms));
	}, ms);
	// A deadline alone must not keep a process alive.
	timer.unref();
	promise.then(
		(value) => {
			if (done) return;
			done = true;
			clearTimeout(timer);
			settled(false, value);
		},
		// A late rejection of an abandoned command is handled here too, never unhandled.
		(error: unknown) => {
			if (done) return;
			done = true;
			clearTimeout(timer);
			settled(true, error);
		},
	);
};

/** Settles as `promise` does, or rejects with a {@link RedisTimeoutError} after `ms` (see {@link settleWithin}). */
export const withDeadline = <T>(promise: Promise<T>, ms: number, operation: string): Promise<T> =>
	new Promise<T>((resolve, reject) =>
		settleWithin(promise, ms, operation, (failed, result) => (failed ? reject(result) : resolve(result as T))),
	);
