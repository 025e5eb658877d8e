/**
 * Typed errors. Every error this package creates carries a stable `code`
 * (`ERR_RESILIENT_*`) that is safe to branch on; messages may change.
 */

/** Every code an error of this package can carry. */
export type ResilientErrorCode =
	| 'ERR_RESILIENT_TIMEOUT'
	| 'ERR_RESILIENT_UNAVAILABLE'
	| 'ERR_RESILIENT_CLOSED';

/** Base class of every error this package creates. */
export class ResilientSessionError extends Error {
	readonly code: ResilientErrorCode;

	constructor(code: ResilientErrorCode, message: string, options?: { cause?: unknown }) {
		super(message, options);
		this.name = new.target.name;
		this.code = code;
	}
}

/** A Redis operation did not answer within `timeoutMs`. */
export class RedisTimeoutError extends ResilientSessionError {
	readonly timeoutMs: number;

	constructor(operation: string, timeoutMs: number) {
		super('ERR_RESILIENT_TIMEOUT', `Redis did not answer ${operation} within ${timeoutMs} ms`);
		this.timeoutMs = timeoutMs;
	}
}

/** Redis cannot be reached right now (the client is not connected, or the link failed). */
export class RedisUnavailableError extends ResilientSessionError {
	constructor(message: string, options?: { cause?: unknown }) {
		super('ERR_RESILIENT_UNAVAILABLE', message, options);
	}
}

/** An operation was called on a store after `close()`. */
export class StoreClosedError extends ResilientSessionError {
	constructor(operation: string) {
		super('ERR_RESILIENT_CLOSED', `ResilientStore.${operation}() was called after close()`);
	}
}

const hasCode = (error: unknown, code: ResilientErrorCode): boolean =>
	error instanceof ResilientSessionError && error.code === code;

/** Whether `error` was created by this package. */
export const isResilientSessionError = (error: unknown): error is ResilientSessionError =>
	error instanceof ResilientSessionError;

/** Whether `error` is a Redis deadline miss (`ERR_RESILIENT_TIMEOUT`). */
export const isRedisTimeoutError = (error: unknown): error is RedisTimeoutError =>
	hasCode(error, 'ERR_RESILIENT_TIMEOUT');

/** Whether `error` means Redis could not be reached (`ERR_RESILIENT_UNAVAILABLE`). */
export const isRedisUnavailableError = (error: unknown): error is RedisUnavailableError =>
	hasCode(error, 'ERR_RESILIENT_UNAVAILABLE');

/** Whether `error` comes from using a closed store (`ERR_RESILIENT_CLOSED`). */
export const isStoreClosedError = (error: unknown): error is StoreClosedError =>
	hasCode(error, 'ERR_RESILIENT_CLOSED');
