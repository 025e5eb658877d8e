/**
 * Values that an option may give at once or later: a number, or a function of the request
 * that returns one or a promise of one (express-rate-limit's `ValueDeterminingMiddleware`).
 * A request whose options are plain values should not pay for promises it never needed:
 * each costs an allocation and a turn of the microtask queue, and a rate-limited request
 * would wait for several. These helpers go on at once with a value that is known, and
 * through the promise only when there is one.
 */

/** A value, or a promise of it. */
export type MaybePromise<T> = T | Promise<T>;

/** Whether `value` is a promise (any thenable, as `await` takes it). */
export const isPromiseLike = (value: unknown): value is PromiseLike<unknown> =>
	typeof (value as PromiseLike<unknown> | null | undefined)?.then === 'function';

/**
 * `then(value)`: at once when `value` is known, once it is when it is a promise. A
 * synchronous exception of `then` is thrown to the caller, as from any function call.
 */
export const whenKnown = <T, R>(value: T | PromiseLike<T>, then: (value: T) => R | PromiseLike<R>): MaybePromise<R> =>
	isPromiseLike(value) ? Promise.resolve(value).then(then) : (then(value) as MaybePromise<R>);

/** Every value of `values`: an array at once when all are known, else a promise of one. */
export const allKnown = <T>(values: readonly (T | PromiseLike<T>)[]): MaybePromise<T[]> =>
	values.some(isPromiseLike) ? (Promise.all(values) as Promise<T[]>) : (values as T[]);
