import express, { type RequestHandler } from 'express';
import session, { type SessionOptions } from 'express-session';
import type { RateLimitInfo } from 'express-rate-limit';
import request from 'supertest';
import type { ResilientStore } from '../../lib/index.js';

declare module 'express-session' {
	interface SessionData {
		member?: string;
	}
}

/**
 * A real Express app with a rate limit mounted after express-session:
 * - `POST /login` and `POST /logout`, before the limit (never counted),
 * - `GET /api`, behind the limit: says which key it was counted under, and where.
 * With `sessionOptions` `false`, there is no session() at all (a misconfigured app).
 */
export const createLimitedApp = (
	store: ResilientStore,
	limiter: RequestHandler,
	sessionOptions: Partial<SessionOptions> | false = {},
) => {
	const app = express();
	if (sessionOptions) {
		app.use(session({ store, secret: 'test secret', resave: false, saveUninitialized: false, ...sessionOptions }));
	}

	app.post('/login', (req, res, next) => {
		req.session.regenerate((error) => {
			if (error) return next(error);
			req.session.member = 'ann';
			res.json({ id: req.sessionID });
		});
	});
	app.post('/logout', (req, res, next) => {
		req.session.destroy((error) => (error ? next(error) : res.json({ ok: true })));
	});
	app.use(limiter);
	app.get('/api', (req, res) => {
		// No count for a skipped request.
		const info = (req as unknown as { rateLimit?: RateLimitInfo }).rateLimit;
		res.json({ key: info?.key, used: info?.used, limit: info?.limit, backend: store.backend });
	});
	return app;
};

/** What supertest sends requests to: a served app's URL, or the app itself. */
type Target = string | express.Express;

/** Logs in on `url`: the cookie of a session that is now in the store, and its id. */
export const login = async (url: Target) => {
	const res = await request(url).post('/login').expect(200);
	const cookie = (res.headers['set-cookie'] as unknown as string[])[0]!.split(';')[0]!;
	return { cookie, id: res.body.id as string };
};

/** `GET /api` on `url`, with `cookie` if given. */
export const callApi = (url: Target, cookie?: string) => {
	const call = request(url).get('/api');
	return cookie ? call.set('Cookie', cookie) : call;
};

/** Parses `INFO commandstats` into calls per command name (lower case). */
export const commandCalls = (info: string): Record<string, number> => {
	const calls: Record<string, number> = {};
	for (const match of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls[match[1]!] = Number(match[2]);
	return calls;
};
