import { RedisTimeoutError } from './errors.js';

/**
 * Settles as `promise` does, or rejects with a {@link RedisTimeoutError} after `ms`.
 *
 * Written by hand because node-redis's own `timeout`/`AbortSignal` only covers a command
 * still waiting in its queue: one already written to a socket whose peer went silent
 * would wait forever. The command is left to settle on its own; nobody awaits it.
 */
export const withDeadline = <T>(promise: Promise<T>, ms: number, operation: string): Promise<T> => {
	let timer: NodeJS.Timeout | undefined;
	const expired = new Promise<never>((_, reject) => {
		timer = setTimeout(() => reject(new RedisTimeoutError(operation, ms)), ms);
		// A deadline alone must not keep a process alive.
		timer.unref();
	});
	// A late rejection of the abandoned command must not become an unhandled rejection.
	promise.catch(() => {});
	return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
};
