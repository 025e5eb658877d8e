/**
 * One autocannon run against a server under test, with latencies recorded per response
 * at sub-millisecond precision (autocannon's own histogram counts whole milliseconds,
 * too coarse on loopback).
 */
import autocannon from 'autocannon';
import { latencySummary } from './stats.js';

export interface LoadRequest {
	readonly method: 'GET' | 'POST';
	readonly path: string;
	/** Session cookies (`sid=…`), used in turn, one per request; none for a new visitor. */
	readonly cookies?: readonly string[];
}

export interface LoadOptions {
	readonly port: number;
	readonly request: LoadRequest;
	readonly durationS: number;
	readonly connections: number;
}

export interface LoadResult {
	/** Responses received, whatever their status. */
	readonly responses: number;
	readonly non2xx: number;
	/** Connection errors and timeouts. */
	readonly errors: number;
	readonly durationS: number;
	readonly requestsPerSecond: number;
	/** Latency of 2xx responses, in milliseconds. */
	readonly p50Ms: number;
	readonly p99Ms: number;
	readonly maxMs: number;
}

/** Runs autocannon for `durationS` seconds on 127.0.0.1. */
export const runLoad = (options: LoadOptions): Promise<LoadResult> => {
	const { cookies, method, path } = options.request;
	const latencies: number[] = [];
	let next = 0;
	const setupRequest = cookies?.length
		? (request: autocannon.Request): autocannon.Request => ({
				...request,
				headers: { ...request.headers, cookie: cookies[next++ % cookies.length]! },
			})
		: undefined;

	return new Promise((resolve, reject) => {
		const instance = autocannon(
			{
				url: `http://127.0.0.1:${options.port}`,
				connections: options.connections,
				duration: options.durationS,
				timeout: 10,
				requests: [{ method, path, ...(setupRequest ? { setupRequest } : {}) }],
			},
			(error: unknown, result: autocannon.Result) => {
				if (error) return reject(error);
				const { p50, p99, max } = latencySummary(latencies);
				const responses = result['1xx'] + result['2xx'] + result['3xx'] + result['4xx'] + result['5xx'];
				resolve({
					responses,
					non2xx: result.non2xx,
					errors: result.errors + result.timeouts,
					durationS: result.duration,
					requestsPerSecond: responses / result.duration,
					p50Ms: p50,
					p99Ms: p99,
					maxMs: max,
				});
			},
		);
		instance.on('response', (_client, statusCode, _bytes, responseTime) => {
			if (statusCode >= 200 && statusCode < 300) latencies.push(responseTime);
		});
	});
};
