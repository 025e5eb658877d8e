import { debuglog } from 'node:util';

/**
 * Where the package reports what an operator should know. `console` fits;
 * so do pino, winston and bunyan loggers.
 */
export interface Logger {
	warn(message: string, ...details: unknown[]): void;
	error(message: string, ...details: unknown[]): void;
}

/** Tracing for development: `NODE_DEBUG=resilient-session node app.js`. */
export const debug = debuglog('resilient-session');

/** A logger that reports nothing: pass it to silence the package. */
export const silentLogger: Logger = Object.freeze({
	warn() {},
	error() {},
});

/**
 * Wraps a logger so that each `key` is reported once per `OnceLogger`: a bound that
 * is hit on every request must not flood the logs.
 */
export class OnceLogger {
	readonly #logger: Logger;
	readonly #said = new Set<string>();

	constructor(logger: Logger) {
		this.#logger = logger;
	}

	warn(key: string, message: string, ...details: unknown[]): void {
		if (this.#take(key)) this.#logger.warn(message, ...details);
	}

	error(key: string, message: string, ...details: unknown[]): void {
		if (this.#take(key)) this.#logger.error(message, ...details);
	}

	/** Lets `key` be reported again (for example at the next outage). */
	forget(key: string): void {
		this.#said.delete(key);
	}

	#take(key: string): boolean {
		if (this.#said.has(key)) return false;
		this.#said.add(key);
		return true;
	}
}
