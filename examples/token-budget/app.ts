/**
 * The token-budget example as a factory, so that it can be served (server.ts) and tested
 * alike: a fake model endpoint whose users each get a budget of tokens per minute and per
 * day. Each completion reserves its `maxTokens` up front (the request's cost), and once
 * the "model" has answered, charges what it really used: the unused part of the
 * reservation is refunded, so the budget counts the tokens generated, exactly.
 */
import express, { type Express, type Request } from 'express';
import session from 'express-session';
import {
	type BudgetInfo,
	ipKeyGenerator,
	rateLimit,
	type RateLimitOptions,
	type ResilientStore,
} from '../../lib/index.js';

declare module 'express-session' {
	interface SessionData {
		user?: string;
	}
}

export interface TokenBudgetAppOptions {
	/** The store of the sessions and of the budgets. */
	readonly store: ResilientStore;
	/** Secret signing the session cookie. */
	readonly secret?: string;
	/** Options of the budget. */
	readonly budget?: Omit<RateLimitOptions, 'store'>;
}

/** The most tokens one completion may ask for, and what it reserves when it does not say. */
const MAX_TOKENS = 500;
const DEFAULT_MAX_TOKENS = 200;

/** The tokens a completion asks for: its `maxTokens`, a whole number from 1 to {@link MAX_TOKENS}. */
const maxTokensOf = (req: Request): number => {
	const asked = Number((req.body as { maxTokens?: unknown } | undefined)?.maxTokens ?? DEFAULT_MAX_TOKENS);
	return Number.isInteger(asked) && asked >= 1 ? Math.min(asked, MAX_TOKENS) : DEFAULT_MAX_TOKENS;
};

/** A pretend model: a few words per prompt word, never more than `maxTokens`; one token a word. */
const fakeModel = (prompt: string, maxTokens: number) => {
	const promptTokens = prompt.split(/\s+/).filter(Boolean).length;
	const words = ['budgets', 'are', 'counted', 'in', 'redis', 'and', 'in', 'memory', 'when', 'it', 'fails'];
	const completionTokens = Math.min(maxTokens, 3 * promptTokens + 5);
	const completion = Array.from({ length: completionTokens }, (_, i) => words[i % words.length]).join(' ');
	return { completion, promptTokens, completionTokens };
};

export const createTokenBudgetApp = (options: TokenBudgetAppOptions): Express => {
	const { store } = options;
	const app = express();
	app.use(express.json());
	app.use(
		session({
			store,
			secret: options.secret ?? 'replace me with a real secret',
			resave: false,
			saveUninitialized: false,
		}),
	);

	// Not limited. A real app checks a password (and puts loginGuard() in front).
	app.post('/login', (req, res, next) => {
		const user = String((req.body as { user?: unknown } | undefined)?.user ?? '').trim();
		if (!/^\w{1,32}$/.test(user)) return res.status(400).json({ error: 'user: 1 to 32 letters or digits' });
		req.session.regenerate((error) => {
			if (error) return next(error);
			req.session.user = user;
			res.json({ user });
		});
	});

	// A budget per user, whichever session or instance they come through: 1 000 tokens a
	// minute and 10 000 a day. Without a login, per address. The headers describe the
	// window closest to its limit, and RateLimit-Policy lists both.
	app.use(
		'/v1',
		rateLimit({
			store,
			prefix: 'rl:tokens:',
			windows: [
				{ windowMs: 60_000, limit: 1_000, identifier: 'tokens-per-minute' },
				{ windowMs: 86_400_000, limit: 10_000, identifier: 'tokens-per-day' },
			],
			keyGenerator: (req) => (req.session.user ? `user:${req.session.user}` : `ip:${ipKeyGenerator(req.ip ?? '')}`),
			// Reserved before the model runs: a completion that could overspend is refused.
			cost: maxTokensOf,
			message: { error: 'Token budget spent: wait for the time in Retry-After.' },
			...options.budget,
		}),
	);

	app.post('/v1/complete', async (req, res, next) => {
		try {
			const prompt = String((req.body as { prompt?: unknown } | undefined)?.prompt ?? '');
			const reserved = maxTokensOf(req);
			const { completion, promptTokens, completionTokens } = fakeModel(prompt, reserved);
			// What the model used, known only now: the unused part of the reservation is
			// given back (a negative charge), the prompt's tokens added.
			const budget = (req as Request & { rateLimit: BudgetInfo }).rateLimit;
			const { remaining, limited } = await budget.charge(promptTokens + completionTokens - reserved);
			res.json({
				completion,
				usage: { promptTokens, completionTokens, totalTokens: promptTokens + completionTokens },
				budget: { limit: budget.limit, used: budget.used, remaining, limited },
				backend: store.backend,
			});
		} catch (error) {
			next(error);
		}
	});

	return app;
};
