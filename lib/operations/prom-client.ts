import { createRequire } from 'node:module';
import type * as PromClient from 'prom-client';

/** prom-client's classes that the metrics use. */
export type PromClientModule = Pick<typeof PromClient, 'Counter' | 'Gauge' | 'Histogram'>;

/**
 * The file this code runs from, as V8 tells it (a path, or a `file:` URL in the ES
 * module build, where `__filename` does not exist and `import.meta` cannot be written
 * in source that also builds to CommonJS).
 */
const ownFile = (): string | undefined => {
	const prepare = Error.prepareStackTrace;
	const limit = Error.stackTraceLimit;
	try {
		Error.prepareStackTrace = (_error, sites) => sites;
		Error.stackTraceLimit = 1;
		const sites = new Error().stack as unknown as NodeJS.CallSite[] | undefined;
		return sites?.[0]?.getFileName() ?? undefined;
	} finally {
		Error.prepareStackTrace = prepare;
		Error.stackTraceLimit = limit;
	}
};

/**
 * Loads the optional peer dependency `name` (prom-client) synchronously, in both builds:
 * with `require` in the CommonJS one, with a `require` made for this file in the ES module
 * one. Throws an `Error` that says what to install when it is missing.
 */
export const loadOptional = <T>(name: string, neededBy: string): T => {
	try {
		const load = typeof require === 'function' ? require : createRequire(ownFile() ?? `${process.cwd()}/`);
		return load(name) as T;
	} catch (error) {
		if ((error as NodeJS.ErrnoException)?.code !== 'MODULE_NOT_FOUND') throw error;
		throw new Error(
			`resilient-session: ${neededBy} needs the package \`${name}\`, an optional peer dependency: ` +
				`install it with \`npm install ${name}\``,
			{ cause: error },
		);
	}
};

/** prom-client, loaded on first use: nothing else in the package needs it. */
export const loadPromClient = (): PromClientModule => loadOptional<PromClientModule>('prom-client', 'collectMetrics()');
