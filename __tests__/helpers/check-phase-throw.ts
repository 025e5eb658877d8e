/**
 * Run as its own process by check-phase.test.ts: one of three calls queued for the check
 * phase throws. Prints what happened, in order, as JSON.
 */
import { inCheckPhase } from '../../lib/callback.js';

const seen: string[] = [];
process.on('uncaughtException', (error) => seen.push(`uncaught: ${error.message}`));
inCheckPhase(() => seen.push('first'));
inCheckPhase(() => {
	throw new Error('thrown by the second');
});
inCheckPhase(() => seen.push('third'));
setTimeout(() => process.stdout.write(JSON.stringify(seen)), 50);
