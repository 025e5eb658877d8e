/**
 * The login example as a factory, so that it can be served (server.ts) and driven by the
 * browser tests alike: a login page (HTML form post), a members page, logout, the login
 * guard and a rate limit on the login route, a "your devices" page that logs out the other
 * devices, and a status line with the store's backend.
 */
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import express, { type Express, type RequestHandler } from 'express';
import session, { type SessionData } from 'express-session';
import { Registry } from 'prom-client';
import {
	collectMetrics,
	healthHandler,
	type LoginGuard,
	loginGuard,
	type LoginGuardOptions,
	rateLimit,
	type RateLimitOptions,
	type ResilientStore,
} from '../../lib/index.js';
import { type Device, devicesPage, loginPage, membersPage } from './pages.js';

declare module 'express-session' {
	interface SessionData {
		user?: string;
		signedInAt?: number;
		visits?: number;
	}
}

/**
 * The `userId` option of the example's store: the example keeps the username in
 * `session.user`. The devices page needs it: `new ResilientStore({ userId: userOfSession })`.
 */
export const userOfSession = (session: SessionData): string | undefined => session.user;

/** How much of a session id the devices page shows: enough to tell devices apart, too little to use. */
export const SHORT_ID_LENGTH = 6;

/** The account the example knows, unless `users` says otherwise. */
export const demoUser = Object.freeze({ username: 'alice', password: 'correct horse battery staple' });

export interface LoginAppOptions {
	/**
	 * The store of the sessions, the login guard and the rate limit. Created with
	 * `userId: userOfSession`, for the devices page (without it, that page fails).
	 */
	readonly store: ResilientStore;
	/** Secret signing the session cookie. */
	readonly secret?: string;
	/** Usernames (in lower case, as the guard counts them) and their passwords. Default: the demo user. */
	readonly users?: Readonly<Record<string, string>>;
	/** Options of the login guard (lockouts). */
	readonly guard?: Omit<LoginGuardOptions, 'store'>;
	/** Options of the rate limit of the login route. */
	readonly rateLimit?: Omit<RateLimitOptions, 'store'>;
}

export interface LoginApp {
	readonly app: Express;
	/** The login guard, to unlock a user with `guard.reset(username)`. */
	readonly guard: LoginGuard;
	/** The registry behind `GET /metrics`: the store's metrics, its rate limit's and its guard's. */
	readonly register: Registry;
	/** Stops the metrics (the app can be dropped without them). */
	close(): void;
}

const scryptAsync = promisify(scrypt) as (password: string, salt: Buffer, length: number) => Promise<Buffer>;

/** Password hashes (scrypt), checked in constant time; an unknown user costs the same as a known one. */
const passwordChecker = (users: Readonly<Record<string, string>>) => {
	const salt = randomBytes(16);
	const hashes = new Map(Object.entries(users).map(([name, password]) => [name, scryptAsync(password, salt, 32)]));
	const unknownUser = scryptAsync(randomBytes(16).toString('hex'), salt, 32);
	return async (username: string, password: string): Promise<boolean> => {
		const expected = await (hashes.get(username) ?? unknownUser);
		const given = await scryptAsync(password, salt, 32);
		return timingSafeEqual(expected, given) && hashes.has(username);
	};
};

export const createLoginApp = (options: LoginAppOptions): LoginApp => {
	const { store } = options;
	const checkPassword = passwordChecker(options.users ?? { [demoUser.username]: demoUser.password });
	const guard = loginGuard({ store, ...options.guard });
	// The store's metrics, with those of the guard and the rate limit below, for GET /metrics.
	const register = new Registry();
	const metrics = collectMetrics({ store, register });

	const app = express();

	// Before the session: a probe or a scrape needs none. A real app keeps /metrics off the
	// public internet (a separate port, or its proxy refusing the path).
	app.get('/healthz', healthHandler({ store }));
	app.get('/readyz', healthHandler({ store, degradedStatusCode: 503 }));
	app.get('/metrics', async (_req, res, next) => {
		try {
			res.type(register.contentType).send(await register.metrics());
		} catch (error) {
			next(error);
		}
	});

	app.use(
		session({
			store,
			secret: options.secret ?? 'replace me with a real secret',
			resave: false,
			saveUninitialized: false,
			cookie: { httpOnly: true, sameSite: 'lax', maxAge: 60 * 60 * 1000 },
		}),
	);

	// Twenty attempts a minute per visitor, whatever the usernames: a person never gets
	// near it, a script does. A person at a form gets the login page, not JSON.
	const limitLogins = rateLimit({
		store,
		windowMs: 60_000,
		limit: 20,
		prefix: 'rl:login:',
		handler: (req, res) => {
			const retryAfterSeconds = Number(res.get('Retry-After'));
			res.status(429).type('html').send(
				loginPage({
					backend: store.backend,
					username: typeof req.body?.username === 'string' ? req.body.username : '',
					error: `Too many sign-in attempts. Try again in ${retryAfterSeconds} seconds.`,
					retryAfterSeconds,
				}),
			);
		},
		...options.rateLimit,
	});

	// The guard refuses a locked attempt (429) or one without a username (400) with a JSON
	// body, before the login handler runs. For a person at a form, those answers become
	// the login page with the message.
	const guardAnswersAsPage: RequestHandler = (req, res, next) => {
		const sendJson = res.json.bind(res);
		res.json = (body: { error?: string; retryAfter?: number }) => {
			if (res.statusCode !== 429 && res.statusCode !== 400) return sendJson(body);
			const locked = res.statusCode === 429;
			return res.type('html').send(
				loginPage({
					backend: store.backend,
					username: typeof req.body?.username === 'string' ? req.body.username : '',
					error: locked ? `Too many failed attempts. Try again in ${body.retryAfter} seconds.` : body.error,
					retryAfterSeconds: locked ? body.retryAfter : undefined,
				}),
			);
		};
		next();
	};

	app.get('/', (req, res) => res.redirect(req.session.user ? '/members' : '/login'));

	app.get('/login', (req, res) => {
		if (req.session.user) return res.redirect('/members');
		const notice = req.query.bye === undefined ? undefined : 'You are logged out.';
		res.type('html').send(loginPage({ backend: store.backend, notice }));
	});

	app.post(
		'/login',
		express.urlencoded({ extended: false }),
		limitLogins,
		guardAnswersAsPage,
		guard,
		async (req, res, next) => {
			const { username, password } = req.body as { username?: unknown; password?: unknown };
			// The guard only lets a non-empty username through; it counts a 401 as a failure.
			const name = req.loginGuard!.username;
			if (typeof password !== 'string' || !(await checkPassword(name, password))) {
				res.status(401).type('html').send(
					loginPage({
						backend: store.backend,
						username: typeof username === 'string' ? username : '',
						error: 'Wrong username or password.',
					}),
				);
				return;
			}

			// A new session id at login, so that an id planted before it is worth nothing.
			req.session.regenerate((error) => {
				if (error) return next(error);
				req.session.user = name;
				req.session.signedInAt = Date.now();
				req.session.save((error) => (error ? next(error) : res.redirect(303, '/members')));
			});
		},
	);

	app.get('/members', (req, res) => {
		const { user, signedInAt } = req.session;
		if (!user || signedInAt === undefined) return res.redirect('/login');
		req.session.visits = (req.session.visits ?? 0) + 1;
		res.type('html').send(membersPage({ backend: store.backend, user, signedInAt, visits: req.session.visits }));
	});

	// The user's sessions, from every instance: a short id, when each expires, and which one is this.
	const devicesOf = async (user: string, currentId: string): Promise<Device[]> =>
		((await store.sessionsOf(user)) ?? []).map(({ id, session, expiresAt }) => ({
			shortId: id.slice(0, SHORT_ID_LENGTH),
			signedInAt: session.signedInAt,
			expiresAt,
			current: id === currentId,
		}));

	app.get('/devices', async (req, res) => {
		const { user } = req.session;
		if (!user) return res.redirect('/login');
		res.type('html').send(devicesPage({ backend: store.backend, devices: await devicesOf(user, req.sessionID) }));
	});

	// Every other session of the user ends as a logout would, on every instance; this one stays.
	app.post('/devices/logout-others', async (req, res) => {
		const { user } = req.session;
		if (!user) return res.redirect(303, '/login');
		const loggedOut = (await store.destroySessionsOf(user, { except: req.sessionID })) ?? 0;
		const devices = await devicesOf(user, req.sessionID);
		res.type('html').send(devicesPage({ backend: store.backend, devices, loggedOut }));
	});

	app.post('/logout', (req, res, next) => {
		req.session.destroy((error) => {
			if (error) return next(error);
			res.clearCookie('connect.sid');
			res.redirect(303, '/login?bye');
		});
	});

	return { app, guard, register, close: () => metrics.close() };
};
