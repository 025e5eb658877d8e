/**
 * What it costs to add one property to a request object, as Node's HTTP server makes it,
 * and after Express gave it the prototype of its application (`Object.setPrototypeOf` in
 * `app.handle`). Each request object then has a hidden class of its own: V8 cannot reuse
 * the transition that the previous request took when the same property was added, and
 * builds a new hidden class every time. This is why the package marks neither `req` nor
 * `res` with properties of its own (lib/session/request-session.ts,
 * lib/rate-limit/tickets.ts); it sets `req.rateLimit`, which express-rate-limit sets too.
 *
 * Each such hidden class also leaves garbage in the old generation, which only a full
 * collection frees, however short-lived the object: V8 makes the hidden class there, and
 * with it a copy of the object's property descriptors (`Map::CopyAddDescriptor`), which
 * the next scavenge promotes while the hidden class points to it. With Node 20 on 64-bit
 * Linux that is about 70 bytes made in the old generation and 550 promoted, per object.
 *
 * Run: `npm run bench:property-cost`. Prints, with and without the prototype swap and the
 * added property, whether two objects made alike share their hidden class (V8's own
 * `%HaveSameMap`), nanoseconds per object made, and the bytes per object the old
 * generation grew by meanwhile (V8's `GCProfiler`: what each scavenge promoted, and what
 * was allocated there between collections), each the median of 5 rounds.
 */
import { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { GCProfiler, type GCProfilerResult, getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { median } from './stats.js';

setFlagsFromString('--allow-natives-syntax');
/** Whether `a` and `b` have the same hidden class (compiled after the flag is set). */
const haveSameMap = new Function('a', 'b', 'return %HaveSameMap(a, b)') as (a: object, b: object) => boolean;
/** A full collection, so that what one variant left behind is not counted against the next. */
const collectGarbage = new Function('%CollectGarbage(null)') as () => void;

const OBJECTS = 200_000;
const ROUNDS = 5;
const socket = new Socket();
const appRequest = Object.create(IncomingMessage.prototype) as object;
const mark = Symbol('mark');

const variants = {
	'as Node makes it': () => new IncomingMessage(socket),
	'+ one property': () => Object.assign(new IncomingMessage(socket), { [mark]: 1 }),
	"Express's prototype": () => Object.setPrototypeOf(new IncomingMessage(socket), appRequest),
	"Express's prototype + one property": () => {
		const request = Object.setPrototypeOf(new IncomingMessage(socket), appRequest) as Record<symbol, number>;
		request[mark] = 1;
		return request;
	},
} satisfies Record<string, () => object>;

/** Bytes in use in the old generation, from a `GCProfiler` record. */
const oldSpaceUsed = (spaces: readonly { spaceName: string; spaceUsedSize: number }[]): number =>
	spaces.find((space) => space.spaceName === 'old_space')?.spaceUsedSize ?? 0;

/** Bytes in use in the old generation now. */
const oldSpaceUsedNow = (): number =>
	getHeapSpaceStatistics().find((space) => space.space_name === 'old_space')?.space_used_size ?? 0;

/**
 * How many bytes the old generation grew by from `startUsed` to `endUsed` (its bytes in
 * use at the start and at the end), over the collections of `statistics`: what each
 * scavenge moved there, and what was allocated there between them (before the first and
 * after the last too). A full collection's own shrinking is left out: it frees, it does
 * not add.
 */
const oldGenerationGrowth = (startUsed: number, statistics: GCProfilerResult['statistics'], endUsed: number): number => {
	let grown = 0;
	let used = startUsed;
	for (const { gcType, beforeGC, afterGC } of statistics) {
		const [before, after] = [oldSpaceUsed(beforeGC.heapSpaceStatistics), oldSpaceUsed(afterGC.heapSpaceStatistics)];
		grown += Math.max(0, before - used);
		if (gcType === 'Scavenge') grown += Math.max(0, after - before);
		used = after;
	}

	return grown + Math.max(0, endUsed - used);
};

/**
 * Nanoseconds per object made by `make`, with the last hundred kept alive as requests in
 * flight are, and the old generation's growth per object meanwhile (`oldGenerationGrowth`).
 */
const perObject = (make: () => object): { readonly nanos: number; readonly oldBytes: number } => {
	const inFlight: object[] = [];
	collectGarbage();
	const startUsed = oldSpaceUsedNow();
	const profiler = new GCProfiler();
	profiler.start();
	const start = process.hrtime.bigint();
	for (let i = 0; i < OBJECTS; i++) {
		inFlight.push(make());
		if (inFlight.length > 100) inFlight.length = 0;
	}

	const nanos = Number(process.hrtime.bigint() - start) / OBJECTS;
	const { statistics } = profiler.stop();
	return { nanos, oldBytes: oldGenerationGrowth(startUsed, statistics, oldSpaceUsedNow()) / OBJECTS };
};

const samples = new Map<string, { nanos: number[]; oldBytes: number[] }>();
for (let round = 0; round < ROUNDS; round++) {
	for (const [name, make] of Object.entries(variants)) {
		const { nanos, oldBytes } = perObject(make);
		const sample = samples.get(name) ?? { nanos: [], oldBytes: [] };
		sample.nanos.push(nanos);
		sample.oldBytes.push(oldBytes);
		samples.set(name, sample);
	}
}

console.log(`request objects made, ${OBJECTS.toLocaleString('en')} per round, median of ${ROUNDS} rounds (Node ${process.version})`);
console.log(`  ${''.padEnd(36)} ${'ns'.padStart(6)} ${'old-generation B'.padStart(17)}  two alike share a hidden class`);
for (const [name, { nanos, oldBytes }] of samples) {
	const make = variants[name as keyof typeof variants];
	const shared = haveSameMap(make(), make()) ? 'yes' : 'no';
	console.log(`  ${name.padEnd(36)} ${median(nanos).toFixed(0).padStart(6)} ${median(oldBytes).toFixed(0).padStart(17)}  ${shared}`);
}
