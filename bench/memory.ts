/**
 * Memory per session on the in-process side: 10,000 sessions of about 260 bytes stored
 * in memorystore, in express-session's MemoryStore, in ResilientStore on Redis (its warm
 * copies) and in ResilientStore fallen back (memory side plus outage journal); and in
 * connect-redis, which keeps nothing in process, as a check of the method.
 *
 * Each measurement runs in a fresh process (memory-probe.ts, `--expose-gc`), repeated
 * and interleaved across stores; the median is reported.
 */
import { type ChildMessage, nextMessage, spawnScript } from './processes.js';
import { median } from './stats.js';
import type { StoreKind, StoreUrls } from './stores.js';

/** connect-redis keeps nothing in process: its row shows what the method itself counts. */
export const MEMORY_KINDS: readonly StoreKind[] = [
	'memorystore',
	'resilient',
	'resilient-fallback',
	'express-memory',
	'connect-redis',
];

export interface MemoryOptions {
	readonly sessions: number;
	readonly repeats: number;
}

export interface MemoryResult {
	readonly kind: StoreKind;
	/** Median heap growth for `sessions` sessions, in bytes. */
	readonly bytes: number;
	readonly bytesPerSession: number;
	/** Median heap growth per session over the second half only (the marginal cost). */
	readonly marginalBytesPerSession: number;
	/** Sessions the store held in memory at the end. */
	readonly held: number;
	readonly samples: number[];
}

export interface MemoryRunResult {
	readonly options: MemoryOptions;
	readonly results: MemoryResult[];
}

export const runMemory = async (
	urls: StoreUrls,
	options: MemoryOptions,
	log: (line: string) => void,
): Promise<MemoryRunResult> => {
	const samples = new Map<StoreKind, { bytes: number; secondHalfBytes: number; held: number }[]>(
		MEMORY_KINDS.map((kind) => [kind, []]),
	);
	for (let repeat = 1; repeat <= options.repeats; repeat++) {
		for (const kind of MEMORY_KINDS) {
			const child = spawnScript(
				'memory-probe.ts',
				[kind, urls.redisUrl, urls.downUrl, String(options.sessions)],
				['--expose-gc'],
			);
			const result = await nextMessage<ChildMessage & { bytes: number; secondHalfBytes: number; held: number }>(
				child,
				'result',
				60_000,
			);
			samples.get(kind)!.push({ bytes: result.bytes, secondHalfBytes: result.secondHalfBytes, held: result.held });
		}

		log(`memory: round ${repeat}/${options.repeats}`);
	}

	const results = MEMORY_KINDS.map((kind) => {
		const measured = samples.get(kind)!;
		const bytes = median(measured.map((sample) => sample.bytes));
		return {
			kind,
			bytes,
			bytesPerSession: bytes / options.sessions,
			marginalBytesPerSession:
				median(measured.map((sample) => sample.secondHalfBytes)) /
				(options.sessions - Math.floor(options.sessions / 2)),
			held: measured.at(-1)!.held,
			samples: measured.map((sample) => sample.bytes / options.sessions),
		};
	});
	return { options, results };
};
