import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Express } from 'express';
import type { ResilientStore } from '../../lib/index.js';

/** Store options that make failover quick to observe in tests. */
export const fastFailover = { timeoutMs: 200, probeIntervalMs: 50, minFallbackMs: 200, recoverAfterProbes: 2 } as const;

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Resolves once `condition()` holds, checking every 10 ms; rejects after `ms`. For state
 * that settles after a response with no event to wait for (a count taken back once the
 * response finished, say).
 */
export const until = async (condition: () => Promise<boolean> | boolean, ms = 5_000): Promise<void> => {
	const deadline = Date.now() + ms;
	while (!(await condition())) {
		if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
		await sleep(10);
	}
};

/** Resolves with the first `event` of `store`, or rejects after `ms`. */
export const nextEvent = <T = unknown>(store: ResilientStore, event: string, ms = 10_000): Promise<T> =>
	new Promise((resolve, reject) => {
		const timer = setTimeout(() => reject(new Error(`no '${event}' within ${ms} ms`)), ms);
		store.once(event, (value: T) => {
			clearTimeout(timer);
			resolve(value);
		});
	});

/**
 * Resolves once the store has reached Redis: a bulk read waits for the first connection
 * (longer than a request would), so that a slow start does not begin a test on memory.
 */
export const connected = async (store: ResilientStore): Promise<ResilientStore> => {
	await store.length();
	return store;
};

/** Serves `app` on a free loopback port until {@link close}; supertest agents then keep their connections. */
export const listen = async (app: Express) => {
	const server: Server = app.listen(0, '127.0.0.1');
	await once(server, 'listening');
	const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
	const close = () =>
		new Promise<void>((resolve) => {
			server.closeAllConnections();
			server.close(() => resolve());
		});
	return { server, url, close };
};

/** A logger that keeps what it is given, to assert on. */
export const recordingLogger = () => {
	const warnings: string[] = [];
	const errors: string[] = [];
	return {
		warnings,
		errors,
		warn: (message: string) => void warnings.push(message),
		error: (message: string) => void errors.push(message),
	};
};
