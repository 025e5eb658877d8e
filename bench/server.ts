/**
 * The server under test, run in a child process so that the load generator does not
 * share its event loop: Express 5 + express-session on one store, with
 * `resave: false, saveUninitialized: false` and a one-day cookie.
 *
 *   POST /login    regenerates the session and logs in (a new session is stored)
 *   GET  /read     reads the logged-in session, changes nothing (401 without a login)
 *   POST /write    changes the session (a visit counter)
 *   GET  /limited  /read behind a rate limit (when one can be built, see rate-limits.ts)
 *
 * Every answer carries `X-Backend`: where ResilientStore served the session from (redis or
 * memory), and for the other kinds their one backend, so that every store pays for the header.
 *
 * The ResilientStore kinds' metrics (`collectMetrics()` on a prom-client registry, served
 * at `GET /metrics`) are off until the benchmark sends `{ type: 'metrics', on: true }`.
 *
 * The package is loaded compiled, as it is published: from `BENCH_LIB_DIST`, the working
 * tree's or a revision's (revisions.ts).
 *
 * Started by the benchmark as `server.ts <store kind> <redis url> <down url>`; reports over
 * IPC `{ type: 'ready', port, rateLimit }`, then the store's events with their wall-clock
 * time, and stops on `{ type: 'stop' }` or when the benchmark goes away.
 */
import type { AddressInfo } from 'node:net';
import express, { type NextFunction, type Request, type Response } from 'express';
import session from 'express-session';
import { Registry } from 'prom-client';
import type { StoreMetrics } from '../lib/index.js';
import { wallClockMs } from './processes.js';
import { buildRateLimit } from './rate-limits.js';
import { library } from './revisions.js';
import { buildStore, COOKIE_MAX_AGE_MS, isStoreKind, loginFields } from './stores.js';

const send = (message: object): void => {
	if (process.connected) process.send!(message);
};

const main = async (): Promise<void> => {
	const [kind, redisUrl, downUrl] = process.argv.slice(2);
	if (!isStoreKind(kind) || !redisUrl || !downUrl)
		throw new Error(`usage: server.ts <store kind> <redis url> <down url>`);
	// The benchmark is gone: nothing is left to serve.
	process.on('disconnect', () => process.exit(0));

	const { collectMetrics } = await library();
	const built = await buildStore(kind, { redisUrl, downUrl });
	const resilient = built.resilient;
	for (const event of ['fallback', 'recover', 'writeback'] as const) {
		resilient?.on(event, (detail?: unknown) =>
			send({
				type: 'store-event',
				event,
				at: wallClockMs(),
				detail: detail instanceof Error ? detail.message : detail,
			}),
		);
	}

	const register = new Registry();
	let metrics: StoreMetrics | undefined;
	const limiter = await buildRateLimit(built);
	let serverErrors = 0;
	let logins = 0;

	const app = express();
	app.disable('x-powered-by');
	app.use(
		session({
			store: built.store,
			secret: 'benchmark secret',
			name: 'sid',
			resave: false,
			saveUninitialized: false,
			cookie: { maxAge: COOKIE_MAX_AGE_MS },
		}),
	);
	// After the session is loaded: the backend that served it. Every kind gets the same
	// middleware and header (the others name their one backend), so that what it costs a
	// request, an Express layer and a header, is paid alike by every store compared.
	const fixedBackend = built.client ? 'redis' : 'memory';
	app.use((_req, res, next) => {
		res.setHeader('x-backend', resilient ? resilient.backend : fixedBackend);
		next();
	});

	const requireLogin = (req: Request, res: Response, next: NextFunction) => {
		if (req.session.user) next();
		else res.status(401).json({ error: 'not logged in' });
	};

	app.post('/login', (req, res, next) => {
		req.session.regenerate((error) => {
			if (error) return next(error);
			Object.assign(req.session, loginFields(`user-${++logins}`));
			res.json({ user: req.session.user });
		});
	});
	app.get('/read', requireLogin, (req, res) => {
		res.json({ user: req.session.user });
	});
	app.post('/write', requireLogin, (req, res) => {
		req.session.views = (req.session.views ?? 0) + 1;
		res.json({ views: req.session.views });
	});
	if (typeof limiter === 'function') {
		app.get('/limited', limiter, requireLogin, (req, res) => {
			res.json({ user: req.session.user });
		});
	}

	app.get('/metrics', async (_req, res) => {
		res.type(register.contentType).send(await register.metrics());
	});

	app.use((error: Error, _req: Request, res: Response, _next: NextFunction) => {
		serverErrors++;
		res.status(500).json({ error: error.message });
	});

	const server = app.listen(0, '127.0.0.1');
	await new Promise<void>((resolve, reject) => {
		server.once('listening', resolve);
		server.once('error', reject);
	});

	process.on('message', (message: { type?: string; on?: boolean }) => {
		if (message?.type === 'metrics') {
			metrics?.close();
			metrics = message.on && resilient ? collectMetrics({ store: resilient, register }) : undefined;
			send({ type: 'metrics-set' });
		}

		if (message?.type === 'cpu') {
			const { user, system } = process.cpuUsage();
			send({ type: 'cpu-usage', micros: user + system });
		}

		if (message?.type !== 'stop') return;
		server.closeAllConnections();
		server.close();
		void built
			.close()
			.catch(() => {})
			.finally(() => {
				send({ type: 'stopped', serverErrors });
				process.disconnect();
				process.exit(0);
			});
	});

	send({
		type: 'ready',
		port: (server.address() as AddressInfo).port,
		rateLimit: typeof limiter === 'function' ? 'available' : limiter,
	});
};

main().catch((error: unknown) => {
	send({ type: 'failed', error: error instanceof Error ? error.stack : String(error) });
	process.exit(1);
});
