import type { SessionData } from 'express-session';
import type { ResilientStore } from '../../lib/index.js';
import { createApp } from './app.js';

/** The `userId` option of the test stores: the app keeps the user's name in `session.user`. */
export const userOfSession = (session: SessionData) => session.user;

/**
 * The test app (see `createApp`) plus what a "your devices" page needs:
 * - `GET /devices` lists the logged-in user's sessions, and which one is this request's,
 * - `POST /logout-others` ends every other session of the user,
 * - `POST /become?user=` hands the session to another user, keeping its id.
 */
export const createDevicesApp = (store: ResilientStore, ...rest: Parameters<typeof createApp> extends [unknown, ...infer R] ? R : never) => {
	const app = createApp(store, ...rest);
	app.get('/devices', async (req, res) => {
		if (!req.session.user) return void res.status(401).json({ error: 'not logged in' });
		const sessions = (await store.sessionsOf(req.session.user)) ?? [];
		res.json({
			current: req.sessionID,
			backend: store.backend,
			devices: sessions.map(({ id, session, expiresAt }) => ({ id, user: session.user, expiresAt })),
		});
	});
	app.post('/logout-others', async (req, res) => {
		if (!req.session.user) return void res.status(401).json({ error: 'not logged in' });
		const ended = await store.destroySessionsOf(req.session.user, { except: req.sessionID });
		res.json({ ended, backend: store.backend });
	});
	app.post('/become', (req, res) => {
		req.session.user = String(req.query.user);
		res.json({ user: req.session.user, id: req.sessionID });
	});
	return app;
};
