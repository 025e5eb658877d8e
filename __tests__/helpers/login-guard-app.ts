import express, { type Express } from 'express';
import session from 'express-session';
import request from 'supertest';
import { type LoginGuard, loginGuard, type LoginGuardOptions } from '../../lib/login-guard/login-guard.js';
import { silentLogger } from '../../lib/logger.js';
import type { ResilientStore } from '../../lib/session/store.js';

/** The one account the test apps know. */
export const KNOWN_USER = 'alice';
export const PASSWORD = 'correct horse battery staple';

/** The address requests come from unless a test says otherwise. */
export const CLIENT_IP = '203.0.113.1';

export interface LoginApp {
	readonly app: Express;
	readonly guard: LoginGuard;
	/** How many attempts reached a handler. */
	readonly handled: { count: number };
}

/**
 * A real Express app wired the way users wire the guard: express-session on the store,
 * `express.json()`, `trust proxy` (so tests choose the address with X-Forwarded-For),
 * and the guard in front of:
 * - `POST /login`: 200 for alice's password, 401 for anything else (unknown user or wrong
 *   password alike),
 * - `POST /status/:code`: answers `code`, to show how outcomes are inferred,
 * - `POST /explicit/:outcome`: calls `req.loginGuard.fail()` and answers 200, or calls
 *   `req.loginGuard.succeed()` and answers 401, to show the explicit calls win.
 */
export const createLoginApp = (store: ResilientStore, options: Omit<LoginGuardOptions, 'store'> = {}): LoginApp => {
	const guard = loginGuard({ store, logger: silentLogger, ...options });
	const handled = { count: 0 };
	const app = express();
	app.set('trust proxy', true);
	app.use(session({ store, secret: 'test secret', resave: false, saveUninitialized: false }));
	app.use(express.json());
	app.post('/login', guard, (req, res) => {
		handled.count++;
		// Always set behind the guard.
		const { username } = req.loginGuard!;
		if (username === KNOWN_USER && req.body.password === PASSWORD) {
			res.json({ ok: true, username });
		} else {
			res.status(401).json({ error: 'Invalid username or password.' });
		}
	});
	app.post('/status/:code', guard, (req, res) => {
		handled.count++;
		const code = Number(req.params.code);
		if (code >= 300 && code < 400) res.redirect(code, '/');
		else res.status(code).json({ status: code });
	});
	app.post('/explicit/:outcome', guard, (req, res) => {
		handled.count++;
		const guarded = req.loginGuard!;
		if (req.params.outcome === 'fail') {
			guarded.fail();
			res.status(200).json({ username: guarded.username, ip: guarded.ip });
		} else {
			guarded.succeed();
			res.status(401).json({ username: guarded.username, ip: guarded.ip });
		}
	});
	return { app, guard, handled };
};

/** One login attempt through supertest. */
export const attempt = (
	app: Express,
	username: unknown,
	password = 'wrong password',
	ip = CLIENT_IP,
	path = '/login',
) => request(app).post(path).set('X-Forwarded-For', ip).send({ username, password });
