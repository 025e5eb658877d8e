/**
 * Child processes of the benchmark.
 *
 * Every process the benchmark starts (redis-server, the servers under test, the memory
 * probes) is registered here and killed when the benchmark exits, however it exits.
 * Children written in TypeScript run under tsx with an IPC channel; they exit by
 * themselves when that channel closes (the benchmark died).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { performance } from 'node:perf_hooks';

/** The repository root. */
export const ROOT = path.resolve(__dirname, '..');

const children = new Set<ChildProcess>();

/** Wall-clock milliseconds with sub-millisecond precision, comparable across processes. */
export const wallClockMs = (): number => performance.timeOrigin + performance.now();

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Registers `child` to be killed when the benchmark exits. */
export const track = <T extends ChildProcess>(child: T): T => {
	children.add(child);
	child.once('exit', () => children.delete(child));
	return child;
};

/** Kills every child still running, at once (SIGKILL). */
export const killAll = (): void => {
	for (const child of children) child.kill('SIGKILL');
	children.clear();
};

let installed = false;

/** Makes sure no child outlives the benchmark: on exit, on Ctrl-C, on SIGTERM. */
export const killChildrenOnExit = (): void => {
	if (installed) return;
	installed = true;
	process.on('exit', killAll);
	for (const [signal, code] of [
		['SIGINT', 130],
		['SIGTERM', 143],
	] as const) {
		process.once(signal, () => {
			killAll();
			process.exit(code);
		});
	}
};

/**
 * Runs `bench/<file>` under tsx in a child Node process with an IPC channel.
 * `nodeFlags` go before the script (e.g. `--expose-gc`).
 */
export const spawnScript = (
	file: string,
	args: string[] = [],
	nodeFlags: string[] = [],
	env: NodeJS.ProcessEnv = process.env,
): ChildProcess =>
	track(
		spawn(process.execPath, [...nodeFlags, '--import', 'tsx', path.join(ROOT, 'bench', file), ...args], {
			cwd: ROOT,
			env,
			stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
		}),
	);

/** A message a child sends over IPC: always an object with a `type`. */
export interface ChildMessage {
	readonly type: string;
	readonly [key: string]: unknown;
}

/**
 * The next message of `type` from `child`. Rejects when the child exits first, or
 * sends `{ type: 'failed' }`, or after `timeoutMs`.
 */
export const nextMessage = <T extends ChildMessage>(
	child: ChildProcess,
	type: string,
	timeoutMs = 30_000,
): Promise<T> =>
	new Promise<T>((resolve, reject) => {
		const cleanUp = () => {
			clearTimeout(timer);
			child.off('message', onMessage);
			child.off('exit', onExit);
		};

		const onMessage = (message: ChildMessage) => {
			if (message?.type === 'failed') {
				cleanUp();
				reject(new Error(String(message.error)));
			} else if (message?.type === type) {
				cleanUp();
				resolve(message as T);
			}
		};

		const onExit = (code: number | null, signal: string | null) => {
			cleanUp();
			reject(new Error(`child process exited (${signal ?? code}) before sending '${type}'`));
		};

		const timer = setTimeout(() => {
			cleanUp();
			reject(new Error(`no '${type}' from the child process within ${timeoutMs} ms`));
		}, timeoutMs);
		child.on('message', onMessage);
		child.once('exit', onExit);
	});

/** Asks `child` to stop (`{ type: 'stop' }`), and kills it if it has not exited within `graceMs`. */
export const stopChild = async (child: ChildProcess, graceMs = 3_000): Promise<void> => {
	if (child.exitCode !== null || child.signalCode !== null) return;
	const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
	if (child.connected) child.send({ type: 'stop' });
	const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
	await exited;
	clearTimeout(timer);
};
