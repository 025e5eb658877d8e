import express from 'express';
import session, { type SessionOptions } from 'express-session';
import type { ResilientStore } from '../../lib/index.js';

declare module 'express-session' {
	interface SessionData {
		views?: number;
		user?: string;
	}
}

/**
 * A real Express app on express-session, the way users wire the store:
 * - `GET /count` counts visits in the session,
 * - `GET /whoami` reads the session without changing it,
 * - `POST /login?user=` regenerates the session and logs in,
 * - `POST /logout` destroys the session.
 * Every answer says which backend served it.
 */
export const createApp = (store: ResilientStore, options: Partial<SessionOptions> = {}) => {
	const app = express();
	app.use(
		session({
			store,
			secret: 'test secret',
			resave: false,
			saveUninitialized: false,
			...options,
		}),
	);
	app.get('/count', (req, res) => {
		req.session.views = (req.session.views ?? 0) + 1;
		res.json({ views: req.session.views, id: req.sessionID, backend: store.backend });
	});
	app.get('/whoami', (req, res) => {
		res.json({ user: req.session.user ?? null, id: req.sessionID, backend: store.backend });
	});
	app.post('/login', (req, res, next) => {
		req.session.regenerate((error) => {
			if (error) return next(error);
			req.session.user = String(req.query.user ?? 'alice');
			res.json({ user: req.session.user, id: req.sessionID, backend: store.backend });
		});
	});
	app.post('/logout', (req, res, next) => {
		req.session.destroy((error) => (error ? next(error) : res.json({ ok: true })));
	});
	return app;
};

/** A session as express-session hands it to a store, expiring in `seconds`. */
export const sessionData = (seconds = 60, extra: Record<string, unknown> = {}) => ({
	cookie: { originalMaxAge: seconds * 1000, expires: new Date(Date.now() + seconds * 1000), httpOnly: true, path: '/' },
	...extra,
});

/** Sessions in tests are identified by random ids, like express-session's. */
export const newSid = () => `sid-${Math.random().toString(36).slice(2)}`;
