/**
 * The API rate-limit example as a factory, so that it can be served (server.ts) and
 * tested alike: a JSON API whose routes are limited per session (per address without
 * one), with the IETF RateLimit headers on every response.
 */
import express, { type Express } from 'express';
import session from 'express-session';
import { rateLimit, type RateLimitOptions, type ResilientStore } from '../../lib/index.js';

declare module 'express-session' {
	interface SessionData {
		apiClient?: string;
	}
}

/** What rateLimit() puts on `req.rateLimit` (express-rate-limit's `RateLimitInfo`). */
interface RateLimitInfo {
	readonly limit: number;
	readonly used: number;
	readonly remaining: number;
	readonly resetTime?: Date;
}

export interface ApiAppOptions {
	/** The store of the sessions and of the counts. */
	readonly store: ResilientStore;
	/** Secret signing the session cookie. */
	readonly secret?: string;
	/** Options of the API's rate limit. */
	readonly rateLimit?: Omit<RateLimitOptions, 'store'>;
}

const quotes = [
	'Make it work, make it right, make it fast.',
	'Simplicity is prerequisite for reliability.',
	'The cheapest, fastest and most reliable components are those that are not there.',
];

export const createApiApp = (options: ApiAppOptions): Express => {
	const { store } = options;
	const app = express();
	app.use(
		session({
			store,
			secret: options.secret ?? 'replace me with a real secret',
			resave: false,
			saveUninitialized: false,
		}),
	);

	// Not limited: gives the client a session, whose requests are then counted under it.
	app.post('/api/session', (req, res, next) => {
		req.session.regenerate((error) => {
			if (error) return next(error);
			req.session.apiClient = 'demo';
			res.status(201).json({ session: 'created' });
		});
	});

	// Five requests per ten seconds, per session (per address for requests without one).
	// Every response carries `RateLimit-Policy` and `RateLimit`; a refused one `Retry-After`.
	app.use(
		'/api',
		rateLimit({
			store,
			windowMs: 10_000,
			limit: 5,
			prefix: 'rl:api:',
			message: { error: 'Too many requests: wait for the time in Retry-After.' },
			...options.rateLimit,
		}),
	);

	app.get('/api/quote', (req, res) => {
		const { limit, remaining, resetTime } = (req as typeof req & { rateLimit: RateLimitInfo }).rateLimit;
		res.json({
			quote: quotes[Math.floor(Math.random() * quotes.length)],
			countedPer: req.session.apiClient ? 'session' : 'address',
			rateLimit: { limit, remaining, resetTime },
			backend: store.backend,
		});
	});

	return app;
};
