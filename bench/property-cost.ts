/**
 * What it costs to add one property to a request object, as Node's HTTP server makes it,
 * and after Express gave it the prototype of its application (`Object.setPrototypeOf` in
 * `app.handle`). Each request object then has a hidden class of its own: V8 cannot reuse
 * the transition that the previous request took when the same property was added, and
 * builds a new hidden class every time. This is why the package marks neither `req` nor
 * `res` with properties of its own (lib/session/request-session.ts,
 * lib/rate-limit/tickets.ts); it sets `req.rateLimit`, which express-rate-limit sets too.
 *
 * Run: `npm run bench:property-cost`. Prints, with and without the prototype swap and the
 * added property, whether two objects made alike share their hidden class (V8's own
 * `%HaveSameMap`), and nanoseconds per object made, the median of 5 rounds.
 */
import { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { median } from './stats.js';

setFlagsFromString('--allow-natives-syntax');
/** Whether `a` and `b` have the same hidden class (compiled after the flag is set). */
const haveSameMap = new Function('a', 'b', 'return %HaveSameMap(a, b)') as (a: object, b: object) => boolean;

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

/** Nanoseconds per object made by `make`, with the last hundred kept alive as requests in flight are. */
const nanosPerObject = (make: () => object): number => {
	const inFlight: object[] = [];
	const start = process.hrtime.bigint();
	for (let i = 0; i < OBJECTS; i++) {
		inFlight.push(make());
		if (inFlight.length > 100) inFlight.length = 0;
	}

	return Number(process.hrtime.bigint() - start) / OBJECTS;
};

const samples = new Map<string, number[]>();
for (let round = 0; round < ROUNDS; round++) {
	for (const [name, make] of Object.entries(variants)) {
		samples.set(name, [...(samples.get(name) ?? []), nanosPerObject(make)]);
	}
}

console.log(`request objects made, ${OBJECTS.toLocaleString('en')} per round, median of ${ROUNDS} rounds (Node ${process.version})`);
console.log(`  ${''.padEnd(36)} ${'ns'.padStart(6)}  two alike share a hidden class`);
for (const [name, values] of samples) {
	const make = variants[name as keyof typeof variants];
	const shared = haveSameMap(make(), make()) ? 'yes' : 'no';
	console.log(`  ${name.padEnd(36)} ${median(values).toFixed(0).padStart(6)}  ${shared}`);
}
