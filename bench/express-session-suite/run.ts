/**
 * Runs express-session's own test suite (`test/session.js`, `test/cookie.js`) four ways:
 * on its MemoryStore as it is, with `ResilientStore` memory-only in its place, and with
 * `ResilientStore` on a private redis-server, with its defaults and with `touchAfterMs: 0`. Prints passed/failed/pending for each, and
 * every test that fails with ResilientStore but not with MemoryStore.
 *
 *   npm run suite:express-session -- <express-session checkout or git dir> [--ref v1.19.0] [--only redis,memory-only]
 *
 * Exits with 1 when a test fails with ResilientStore that passes with MemoryStore, or a
 * run does not end by itself.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { RedisServer } from '../../__tests__/helpers/redis-server.js';
import { killChildrenOnExit, ROOT, track } from '../processes.js';
import { prepareCheckout } from './checkout.js';
import type { SuiteResult } from './child.js';
import { type Mode, onRedis } from './store-swap.js';

const MODES: readonly Mode[] = ['memorystore', 'memory-only', 'redis', 'redis-touch-always'];

const LABELS: Record<Mode, string> = {
	memorystore: 'MemoryStore (express-session)',
	'memory-only': 'ResilientStore, memory-only',
	redis: 'ResilientStore on Redis',
	'redis-touch-always': 'ResilientStore on Redis, touchAfterMs: 0',
};

/**
 * Tests a mode fails by design, with the reason: printed, not counted as regressions.
 * Lazy renewal sends a touch only once it moves the expiry by `touchAfterMs` (60 s) or a
 * tenth of the lifetime; this test touches 100 ms after the write and expects the stored
 * cookie to change. The `touchAfterMs: 0` mode shows the same store passing it.
 */
const BY_DESIGN: Partial<Record<Mode, Record<string, string>>> = {
	redis: {
		'session() req.session .touch() should reset session expiration':
			'lazy renewal: a touch 100 ms after the write is not due (passes with touchAfterMs: 0)',
	},
};

/** The longest one run may take; the suite takes some seconds. */
const RUN_TIMEOUT_MS = 5 * 60_000;

/** How long a run may take to exit after its last test before it counts as hanging. */
const EXIT_GRACE_MS = 10_000;

interface Outcome {
	readonly result: SuiteResult | undefined;
	/** Whether the process ended by itself after the suite. */
	readonly exited: boolean;
	/** Redis mode: the session commands Redis ran, from `INFO commandstats`. */
	redisCommands?: string;
}

/** `set=812, evalsha=301, …` from `INFO commandstats`, leaving out connection set-up. */
const sessionCommands = (info: string): string =>
	[...info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)]
		.filter(([, name]) => !['client|setinfo', 'hello', 'info', 'ping', 'script|load'].includes(name!))
		.sort(([, a], [, b]) => a!.localeCompare(b!))
		.map(([, name, calls]) => `${name}=${calls}`)
		.join(', ');

const runMode = async (checkout: string, mode: Mode, redisUrl?: string): Promise<Outcome> => {
	const resultFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'resilient-session-suite-')), 'result.json');
	const env: NodeJS.ProcessEnv = {
		...process.env,
		SUITE_CHECKOUT: checkout,
		SUITE_MODE: mode,
		SUITE_RESULT: resultFile,
		NODE_ENV: 'test',
	};
	delete env.REDIS_URL;
	if (redisUrl) env.SUITE_REDIS_URL = redisUrl;

	const child = track(
		spawn(process.execPath, ['--import', 'tsx', path.join(__dirname, 'child.ts')], {
			cwd: ROOT,
			env,
			stdio: 'inherit',
		}),
	);
	const exit = once(child, 'exit');
	let exited = true;
	const deadline = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MS);
	// Once the result is written, the process has EXIT_GRACE_MS to end by itself.
	const watch = setInterval(() => {
		if (!fs.existsSync(resultFile)) return;
		clearInterval(watch);
		setTimeout(() => {
			if (child.exitCode === null && child.signalCode === null) {
				exited = false;
				child.kill('SIGKILL');
			}
		}, EXIT_GRACE_MS).unref();
	}, 200);
	await exit;
	clearTimeout(deadline);
	clearInterval(watch);
	const result = fs.existsSync(resultFile)
		? (JSON.parse(fs.readFileSync(resultFile, 'utf8')) as SuiteResult)
		: undefined;
	fs.rmSync(path.dirname(resultFile), { recursive: true, force: true });
	return { result, exited: result !== undefined && exited };
};

const main = async (): Promise<void> => {
	const { positionals, values } = parseArgs({
		allowPositionals: true,
		options: { ref: { type: 'string' }, only: { type: 'string' } },
	});
	if (positionals.length !== 1) {
		console.error('usage: npm run suite:express-session -- <express-session checkout or git dir> [--ref <tag>] [--only <modes>]');
		process.exit(2);
	}

	const modes = values.only ? (values.only.split(',') as Mode[]) : [...MODES];
	for (const mode of modes) if (!MODES.includes(mode)) throw new Error(`unknown mode ${mode}; modes: ${MODES.join(', ')}`);

	killChildrenOnExit();
	const checkout = prepareCheckout(positionals[0]!, values.ref);
	console.log(`express-session ${checkout.version}, from ${checkout.source}\nworking copy: ${checkout.dir}\n`);

	const outcomes = new Map<Mode, Outcome>();
	for (const mode of modes) {
		console.log(`\n=== ${LABELS[mode]} ===`);
		const redis = onRedis(mode) ? await RedisServer.start({ onSpawn: track }) : undefined;
		try {
			const outcome = await runMode(checkout.dir, mode, redis?.url);
			if (redis) outcome.redisCommands = sessionCommands(String(await redis.command('INFO', 'commandstats')));
			outcomes.set(mode, outcome);
		} finally {
			await redis?.kill();
		}
	}

	report(outcomes);
};

const report = (outcomes: Map<Mode, Outcome>): void => {
	const baseline = new Set(outcomes.get('memorystore')?.result?.failures.map((failure) => failure.title));
	let regressions = 0;
	console.log('\n| store | passed | failed | pending | ended by itself |\n|---|---|---|---|---|');
	for (const [mode, { result, exited }] of outcomes) {
		const counts = result ? `${result.passed} | ${result.failed} | ${result.pending}` : 'no result | | ';
		console.log(`| ${LABELS[mode]} | ${counts} | ${exited ? 'yes' : 'no'} |`);
	}

	for (const [mode, { result, exited, redisCommands }] of outcomes) {
		if (!exited) regressions++;
		if (!result) continue;
		if (result.stores) {
			const { created, fellBack, warnings } = result.stores;
			const fallbacks = onRedis(mode) ? `, ${fellBack} fell back to memory` : '';
			console.log(`\n${LABELS[mode]}: ${created} stores${fallbacks}, ${warnings.length} warnings`);
			if (redisCommands) console.log(`  Redis ran: ${redisCommands}`);
		}

		if (mode === 'memorystore') continue;
		// Without a MemoryStore run to compare with, every failure is listed.
		const own = result.failures.filter((failure) => !baseline.has(failure.title));
		for (const failure of own) {
			const reason = BY_DESIGN[mode]?.[failure.title];
			if (reason) {
				console.log(`  failed by design: ${failure.title}\n    (${reason})`);
				continue;
			}

			regressions++;
			console.log(`  FAILED ${failure.title}\n    ${failure.message.split('\n').join('\n    ')}`);
		}
	}

	if (regressions > 0) process.exitCode = 1;
};

main().catch((error: unknown) => {
	console.error(error);
	process.exit(1);
});
