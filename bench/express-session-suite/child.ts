/**
 * Runs express-session's test suite once, in this process, in one mode; started by
 * `run.ts` under tsx. Writes the counts and failures as JSON to the file given in
 * `SUITE_RESULT`, then exits by itself once nothing is left running (as mocha's
 * `--no-exit` would have it): a store that keeps the process alive shows up as a run
 * that does not end.
 *
 * Environment: `SUITE_CHECKOUT` (the prepared working copy), `SUITE_MODE`
 * (`memorystore`, `memory-only` or `redis`), `SUITE_REDIS_URL` (redis mode), `SUITE_RESULT`.
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { installStore, type Mode, onRedis, type SuiteStores } from './store-swap.js';

/** What `run.ts` reads back. */
export interface SuiteResult {
	readonly mode: Mode;
	readonly passed: number;
	readonly failed: number;
	readonly pending: number;
	readonly failures: { readonly title: string; readonly message: string }[];
	/** ResilientStore modes: stores created, and how they ended. */
	readonly stores?: {
		readonly created: number;
		readonly fellBack: number;
		readonly warnings: string[];
	};
}

interface MochaTest {
	fullTitle(): string;
}

interface MochaRunner {
	on(event: 'pass' | 'pending', listener: (test: MochaTest) => void): this;
	on(event: 'fail', listener: (test: MochaTest, error: Error) => void): this;
	on(event: 'end', listener: () => void): this;
}

interface MochaInstance {
	addFile(file: string): void;
	run(): MochaRunner;
}

type MochaConstructor = new (options: Record<string, unknown>) => MochaInstance;

const env = (name: string): string => {
	const value = process.env[name];
	if (!value) throw new Error(`${name} is not set`);
	return value;
};

const checkout = env('SUITE_CHECKOUT');
const mode = env('SUITE_MODE') as Mode;
const resultFile = env('SUITE_RESULT');
const redisUrl = onRedis(mode) ? env('SUITE_REDIS_URL') : undefined;

const requireFromCheckout = createRequire(path.join(checkout, 'index.js'));
// What `mocha --require test/support/env` loads first.
requireFromCheckout('./test/support/env');
const Mocha = requireFromCheckout('mocha') as MochaConstructor;

const stores: SuiteStores | undefined = mode === 'memorystore' ? undefined : installStore(checkout, mode, redisUrl);

// An exception thrown by a store's callback (an assertion of the suite) surfaces from a
// callback-style store as an uncaught exception, which mocha reports as a failure of the
// test; from a store that also returns a promise (ResilientStore, connect-redis) it
// surfaces as an unhandled rejection, which mocha passes on to the process, where nothing
// listens: the test would time out instead of failing with the assertion's message.
// Thrown again here, it is an uncaught exception too.
process.on('unhandledRejection', (reason) => {
	throw reason;
});

const main = (): void => {
	const mocha = new Mocha({
		// The options of express-session's `npm test`.
		checkLeaks: true,
		reporter: 'spec',
		rootHooks: {
			async afterAll() {
				await stores?.closeAll();
			},
		},
	});
	for (const file of ['session.js', 'cookie.js']) mocha.addFile(path.join(checkout, 'test', file));

	const failures: { title: string; message: string }[] = [];
	let passed = 0;
	let pending = 0;
	const runner = mocha.run();
	runner.on('pass', () => passed++);
	runner.on('pending', () => pending++);
	runner.on('fail', (test, error) => failures.push({ title: test.fullTitle(), message: String(error?.message ?? error) }));
	runner.on('end', () => {
		const result: SuiteResult = {
			mode,
			passed,
			failed: failures.length,
			pending,
			failures,
			stores: stores && {
				created: stores.created.length,
				fellBack: stores.created.filter((store) => store.stats().failovers > 0).length,
				warnings: stores.warnings,
			},
		};
		fs.writeFileSync(resultFile, JSON.stringify(result, null, 2));
		// Should something keep the process alive, say what.
		setTimeout(() => {
			console.error(`still running after the suite ended: ${process.getActiveResourcesInfo().join(', ')}`);
		}, 5_000).unref();
	});
};

main();
