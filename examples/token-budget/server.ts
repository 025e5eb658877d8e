/**
 * The token-budget example: a fake model endpoint with a budget of tokens per user,
 * 1 000 a minute and 10 000 a day, charged after each answer with the tokens it used.
 *
 *   npm run example:budget                                   # memory only (no REDIS_URL)
 *   REDIS_URL=redis://localhost:6379 npm run example:budget  # budgets in Redis, shared by every instance
 */
import { ResilientStore } from '../../lib/index.js';
import { createTokenBudgetApp } from './app.js';

const port = Number(process.env.PORT ?? 3002);

// No `url` given: REDIS_URL is used when set, else sessions and budgets stay in memory.
const store = new ResilientStore();
store.on('fallback', (error) => console.warn(`[store] Redis failed (${error.message}): counting in memory`));
store.on('recover', () => console.info('[store] back on Redis'));

const app = createTokenBudgetApp({ store, secret: process.env.SESSION_SECRET });

const server = app.listen(port, () => {
	const where = process.env.REDIS_URL ? `Redis at ${process.env.REDIS_URL}` : 'memory (set REDIS_URL to use Redis)';
	const base = `http://localhost:${port}`;
	console.info(`Token-budget example on ${base}, budgets in ${where}`);
	console.info(`Log in: curl -c jar -H 'content-type: application/json' -d '{"user":"ann"}' ${base}/login`);
	console.info(
		`Complete: curl -i -b jar -H 'content-type: application/json' ` +
			`-d '{"prompt":"tell me about budgets","maxTokens":300}' ${base}/v1/complete`,
	);
});

const shutdown = () => {
	server.close(() => void store.close());
	server.closeAllConnections();
};

process.once('SIGINT', shutdown);
process.once('SIGTERM', shutdown);
