import type { NextFunction, Request, Response } from 'express';
import { checkBoolean, checkIntegerIn, checkObject, invalidOption, rejectUnknownOptions } from '../options/checks.js';
import { canSend } from '../redis/client.js';
import type { Backend } from '../redis/failover.js';
import { redisLinkOf } from '../redis/link.js';
import { isResilientStore } from '../session/options.js';
import type { ResilientStore } from '../session/store.js';

/** Options of {@link healthHandler}. */
export interface HealthHandlerOptions {
	/** The store to report on. Required. */
	readonly store: ResilientStore;
	/**
	 * The status code of a `degraded` answer. A process serving from memory is alive and
	 * serving, so by default it answers like `ok`; `503` suits a readiness probe that
	 * should take a degraded instance out of rotation.
	 * @default 200
	 */
	readonly degradedStatusCode?: number;
	/**
	 * While the store is on Redis, send a `PING` (within the store's deadline, `timeoutMs`)
	 * before answering, so that an idle instance notices a Redis that stopped answering: a
	 * `PING` that fails or misses the deadline makes the store fall back, as any command
	 * does, and the answer says `degraded`. Off, the answer tells what the store last saw.
	 * @default true
	 */
	readonly ping?: boolean;
	/**
	 * Add `lastError`, the message of the last error Redis or its client gave. It may name
	 * hosts and ports: keep it off on an endpoint the public can reach.
	 * @default false
	 */
	readonly exposeErrors?: boolean;
}

/** The JSON body of a {@link healthHandler} answer. */
export interface HealthAnswer {
	/** `degraded` while the store serves from memory because Redis failed; a store without Redis is `ok`. */
	readonly status: 'ok' | 'degraded';
	/** Where operations go right now. */
	readonly backend: Backend;
	/** Whether the store has a Redis at all (`false`: memory only, by configuration). */
	readonly redis: boolean;
	/** Since when (ISO 8601); `null` on a store without Redis. */
	readonly since: string | null;
	/** Times the store fell back to memory. */
	readonly failovers: number;
	/** Sessions waiting to be written back to Redis (tombstones included). */
	readonly pendingWriteBack: number;
	/** Of those, sessions destroyed. */
	readonly tombstones: number;
	/** Sessions held in memory. */
	readonly memorySessions: number;
	/** Smoothed Redis latency in milliseconds; `null` before the first command. */
	readonly redisLatencyMs: number | null;
	/** With `exposeErrors`: the last error's message, or `null`. */
	readonly lastError?: string | null;
}

/** Defaults of every {@link HealthHandlerOptions} that has one. */
export const healthHandlerDefaults = Object.freeze({
	degradedStatusCode: 200,
	ping: true,
	exposeErrors: false,
});

const KNOWN_OPTIONS = Object.freeze({
	store: true,
	degradedStatusCode: true,
	ping: true,
	exposeErrors: true,
} satisfies Record<keyof HealthHandlerOptions, true>);

/**
 * Express middleware that answers how the store is doing, as JSON, for a health check
 * or a readiness probe: `{ "status": "ok" | "degraded", "backend": "redis" | "memory", … }`.
 * Both answer `200` unless `degradedStatusCode` says otherwise. It never waits on Redis
 * longer than the store's deadline.
 *
 * @example
 * app.get('/healthz', healthHandler({ store }));
 * app.get('/readyz', healthHandler({ store, degradedStatusCode: 503 }));
 */
export const healthHandler = (options: HealthHandlerOptions) => {
	const given = checkObject('options', options) as unknown as HealthHandlerOptions;
	rejectUnknownOptions('healthHandler()', given, KNOWN_OPTIONS);
	if (!isResilientStore(given.store)) invalidOption('store', 'a ResilientStore', given.store);
	const { store } = given;
	const degradedStatusCode = checkIntegerIn(
		'degradedStatusCode',
		given.degradedStatusCode ?? healthHandlerDefaults.degradedStatusCode,
		200,
		599,
	);
	const ping = checkBoolean('ping', given.ping ?? healthHandlerDefaults.ping);
	const exposeErrors = checkBoolean('exposeErrors', given.exposeErrors ?? healthHandlerDefaults.exposeErrors);

	/** A `PING` through the failover, only on a client that can take it now: bounded by the deadline. */
	const probe = async (): Promise<void> => {
		const link = redisLinkOf(store);
		if (!ping || !link || link.failover.backend !== 'redis' || !canSend(link.client)) return;
		await link.failover.ping();
	};

	const answer = (): { code: number; body: HealthAnswer } => {
		const stats = store.stats();
		const redis = redisLinkOf(store) !== undefined;
		const status = redis && stats.backend === 'memory' ? 'degraded' : 'ok';
		const body: HealthAnswer = {
			status,
			backend: stats.backend,
			redis,
			since: redis ? stats.since.toISOString() : null,
			failovers: stats.failovers,
			pendingWriteBack: stats.pendingWriteBack,
			tombstones: stats.tombstones,
			memorySessions: stats.memorySessions,
			redisLatencyMs: stats.redisLatencyMs === undefined ? null : Math.round(stats.redisLatencyMs * 1000) / 1000,
			...(exposeErrors ? { lastError: stats.lastError?.message ?? null } : {}),
		};
		return { code: status === 'ok' ? 200 : degradedStatusCode, body };
	};

	return (_req: Request, res: Response, next: NextFunction): void => {
		probe()
			.then(() => {
				const { code, body } = answer();
				res.status(code).set('Cache-Control', 'no-store').json(body);
			})
			.catch(next);
	};
};
