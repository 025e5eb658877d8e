/**
 * The API rate-limit example: a JSON route limited to 5 requests per 10 seconds, per
 * session, with the RateLimit headers on every response.
 *
 *   npm run example:api                                   # memory only (no REDIS_URL)
 *   REDIS_URL=redis://localhost:6379 npm run example:api  # counts in Redis, shared by every instance
 *
 *   curl -i http://localhost:3001/api/quote               # RateLimit-Policy, RateLimit; 429 + Retry-After at the sixth
 */
import { ResilientStore } from '../../lib/index.js';
import { createApiApp } from './app.js';

const port = Number(process.env.PORT ?? 3001);

// No `url` given: REDIS_URL is used when set, else sessions and counts stay in memory.
const store = new ResilientStore();
store.on('fallback', (error) => console.warn(`[store] Redis failed (${error.message}): counting in memory`));
store.on('recover', () => console.info('[store] back on Redis'));

const app = createApiApp({ store, secret: process.env.SESSION_SECRET });

const server = app.listen(port, () => {
	const where = process.env.REDIS_URL ? `Redis at ${process.env.REDIS_URL}` : 'memory (set REDIS_URL to use Redis)';
	console.info(`API example on http://localhost:${port}, counts in ${where}`);
	console.info(`Try it: for i in 1 2 3 4 5 6; do curl -si http://localhost:${port}/api/quote | grep -iE '^(HTTP|ratelimit|retry-after)'; done`);
	console.info(
		`With a session of its own (counted apart from the address): ` +
			`curl -c jar -X POST http://localhost:${port}/api/session, then curl -i -b jar http://localhost:${port}/api/quote`,
	);
});

const shutdown = () => {
	server.close(() => void store.close());
	server.closeAllConnections();
};

process.once('SIGINT', shutdown);
process.once('SIGTERM', shutdown);
