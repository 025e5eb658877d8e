/**
 * Starts a server under test (server.ts) in a child process and talks to it: waits until
 * it listens, logs users in to get session cookies, collects the store events it reports.
 */
import type { ChildProcess } from 'node:child_process';
import { type ChildMessage, nextMessage, spawnScript, stopChild } from './processes.js';
import { compiledLibrary } from './revisions.js';
import type { StoreKind, StoreUrls } from './stores.js';

/** A store event as the server reports it: `'fallback'`, `'recover'` or `'writeback'`. */
export interface StoreEvent {
	readonly event: string;
	/** Wall-clock milliseconds (see `wallClockMs`). */
	readonly at: number;
	readonly detail?: unknown;
}

export interface ServerProcess {
	readonly kind: StoreKind;
	readonly port: number;
	/** The server's process id (its main thread's id too, on Linux). */
	readonly pid: number;
	/** `'available'`, or why the rate-limited route is missing. */
	readonly rateLimit: string;
	/** Every store event reported so far. */
	readonly events: StoreEvent[];
	/** Stops the server; resolves with the number of requests it answered with a 500. */
	stop(): Promise<number | undefined>;
	/** Turns the store's metrics (`collectMetrics()`, ResilientStore kinds) on or off. */
	setMetrics(on: boolean): Promise<void>;
	/** The CPU time the server process has used so far, in microseconds (user + system). */
	cpuMicros(): Promise<number>;
}

/**
 * Starts a server of `kind`, on the working tree's package compiled, or with
 * `compiledPackage` on the one found there (a revision's, see revisions.ts).
 */
export const startServer = async (kind: StoreKind, urls: StoreUrls, compiledPackage?: string): Promise<ServerProcess> => {
	const env = { ...process.env, BENCH_LIB_DIST: compiledPackage ?? compiledLibrary() };
	const child: ChildProcess = spawnScript('server.ts', [kind, urls.redisUrl, urls.downUrl], [], env);
	const events: StoreEvent[] = [];
	let serverErrors: number | undefined;
	child.on('message', (message: ChildMessage) => {
		if (message.type === 'store-event') events.push(message as unknown as StoreEvent);
		if (message.type === 'stopped') serverErrors = message.serverErrors as number;
	});
	const ready = await nextMessage<ChildMessage & { port: number; rateLimit: string }>(child, 'ready');
	return {
		kind,
		port: ready.port,
		pid: child.pid!,
		rateLimit: ready.rateLimit,
		events,
		stop: async () => {
			await stopChild(child);
			return serverErrors;
		},
		setMetrics: async (on) => {
			const done = nextMessage(child, 'metrics-set');
			child.send({ type: 'metrics', on });
			await done;
		},
		cpuMicros: async () => {
			const answer = nextMessage<ChildMessage & { micros: number }>(child, 'cpu-usage');
			child.send({ type: 'cpu' });
			return (await answer).micros;
		},
	};
};

/** Logs `count` users in on the server at `port`; resolves with their `sid=…` cookies. */
export const logIn = async (port: number, count: number): Promise<string[]> => {
	const cookies: string[] = [];
	for (let i = 0; i < count; i++) {
		const response = await fetch(`http://127.0.0.1:${port}/login`, { method: 'POST' });
		await response.arrayBuffer();
		const cookie = response.headers.getSetCookie()[0]?.split(';')[0];
		if (response.status !== 200 || !cookie) throw new Error(`login failed on port ${port}: ${response.status}`);
		cookies.push(cookie);
	}

	return cookies;
};
