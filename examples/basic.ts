/**
 * The main example: an Express app whose sessions live in Redis and survive Redis going
 * down. It counts your visits and says which backend served each page.
 *
 *   npm start                                      # memory only (no REDIS_URL)
 *   REDIS_URL=redis://localhost:6379 npm start     # Redis, with the memory fallback
 *
 * Stop Redis while it runs and reload the page: the count goes on, served from memory.
 * Start Redis again: within a couple of seconds it is back on Redis, with the visits
 * made meanwhile written back.
 */
import express from 'express';
import session from 'express-session';
import { ResilientStore } from '../lib/index.js';

declare module 'express-session' {
	interface SessionData {
		views?: number;
	}
}

const port = Number(process.env.PORT ?? 3000);

// No `url` given: REDIS_URL is used when set, else the store keeps sessions in memory.
const store = new ResilientStore();
store.on('fallback', (error) => console.warn(`[store] Redis failed (${error.message}): serving from memory`));
store.on('recover', () => console.info('[store] back on Redis'));
store.on('writeback', (result) => console.info('[store] written back after the outage:', result));

const app = express();
app.use(
	session({
		store,
		secret: process.env.SESSION_SECRET ?? 'replace me with a real secret',
		resave: false,
		saveUninitialized: false,
		cookie: { maxAge: 24 * 60 * 60 * 1000, sameSite: 'lax' },
	}),
);

app.get('/', (req, res) => {
	req.session.views = (req.session.views ?? 0) + 1;
	res.type('html').send(`<!doctype html>
<title>resilient-session</title>
<h1>Visit number ${req.session.views}</h1>
<p>This page was served from <strong id="backend">${store.backend}</strong>.</p>
<p><a href="/">Reload</a> · <a href="/stats">Store stats</a> ·
<form method="post" action="/logout" style="display:inline"><button>Forget me</button></form></p>`);
});

app.get('/stats', (_req, res) => {
	const stats = store.stats();
	res.json({ ...stats, lastError: stats.lastError?.message });
});

app.post('/logout', (req, res, next) => {
	req.session.destroy((error) => (error ? next(error) : res.redirect('/')));
});

const server = app.listen(port, () => {
	const where = process.env.REDIS_URL ? `Redis at ${process.env.REDIS_URL}` : 'memory (set REDIS_URL to use Redis)';
	console.info(`Listening on http://localhost:${port}, sessions in ${where}`);
});

const shutdown = () => {
	server.close(() => void store.close());
	server.closeAllConnections();
};

process.once('SIGINT', shutdown);
process.once('SIGTERM', shutdown);
