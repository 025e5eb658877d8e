/**
 * The login example: a login page, a members page, logout and a "your devices" page that
 * logs out the other devices, with failed logins locked out by loginGuard(), the login route
 * rate limited by rateLimit(), and a status line that says where sessions are served from.
 *
 *   npm run example:login                                   # memory only (no REDIS_URL)
 *   REDIS_URL=redis://localhost:6379 npm run example:login  # Redis, with the memory fallback
 *
 * Sign in, then stop Redis and reload the members page: you stay signed in, and the status
 * line says `memory`. Start Redis again: a moment later it says `redis`.
 *
 * GET /healthz answers how the store is doing (JSON, always 200 while serving), GET /readyz
 * the same with 503 while on memory, GET /metrics the Prometheus metrics
 * (examples/grafana-dashboard.json plots them).
 */
import { ResilientStore } from '../../lib/index.js';
import { createLoginApp, demoUser, userOfSession } from './app.js';

const port = Number(process.env.PORT ?? 3000);

// No `url` given: REDIS_URL is used when set, else the store keeps sessions in memory.
// `userId` indexes sessions by user, for the devices page.
const store = new ResilientStore({ userId: userOfSession });
store.on('fallback', (error) => console.warn(`[store] Redis failed (${error.message}): serving from memory`));
store.on('recover', () => console.info('[store] back on Redis'));

const { app } = createLoginApp({ store, secret: process.env.SESSION_SECRET });

const server = app.listen(port, () => {
	const where = process.env.REDIS_URL ? `Redis at ${process.env.REDIS_URL}` : 'memory (set REDIS_URL to use Redis)';
	console.info(`Login example on http://localhost:${port}, sessions in ${where}`);
	console.info(`Demo account: username "${demoUser.username}", password "${demoUser.password}"`);
	console.info('Five wrong passwords in a row lock that username out for 30 seconds.');
	console.info(`Health: http://localhost:${port}/healthz, metrics: http://localhost:${port}/metrics`);
});

const shutdown = () => {
	server.close(() => void store.close());
	server.closeAllConnections();
};

process.once('SIGINT', shutdown);
process.once('SIGTERM', shutdown);
