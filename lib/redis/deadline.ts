import { RedisTimeoutError } from '../errors.js';

/**
 * Settles as `promise` does, or rejects with a {@link RedisTimeoutError} after `ms`.
 *
 * Written by hand because node-redis's own `timeout`/`AbortSignal` only covers a command
 * still waiting in its queue: one already written to a socket whose peer went silent
 * would wait forever. The command is left to settle on its own; nobody awaits it.
 * It runs on every Redis command, so it allocates one timer and one promise, no more.
 */
export const withDeadline = <T>(promise: Promise<T>, ms: number, operation: string): Promise<T> =>
	new Promise<T>((resolve, reject) => {
		const timer = setTimeout(() => reject(new RedisTimeoutError(operation, ms)), ms);
		// A deadline alone must not keep a process alive.
		timer.unref();
		promise.then(
			(value) => {
				clearTimeout(timer);
				resolve(value);
			},
			// A late rejection of an abandoned command is handled here too, never unhandled.
			(error: unknown) => {
				clearTimeout(timer);
				reject(error);
			},
		);
	});
