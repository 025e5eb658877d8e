/**
 * The login example (examples/login) in a real headless Chromium, against a real
 * redis-server of this file's own: what a person sees when they mistype their password,
 * log in and out, and when Redis dies and comes back while they are signed in.
 */
import type { Page } from 'playwright-core';
import { ResilientStore, silentLogger } from '../lib/index.js';
import { createLoginApp, demoUser, type LoginAppOptions } from '../examples/login/app.js';
import { type Chromium, launchChromium } from './helpers/browser.js';
import { logOut, sessionIdOf, signIn, textOf } from './helpers/login-page.js';
import { RedisServer } from './helpers/redis-server.js';
import { connected, fastFailover, listen, nextEvent } from './helpers/common.js';

/**
 * A lockout after three failures, that outlasts the test by far: every attempt past the
 * threshold is refused however slow the machine, and the test lifts it with `guard.reset()`.
 */
const MAX_FAILURES = 3;
const LOCKOUT_MS = 60_000;

let redis: RedisServer;
let chromium: Chromium;
let page: Page;
const cleanups: Array<() => unknown> = [];

beforeAll(async () => {
	[redis, chromium] = await Promise.all([RedisServer.start(), launchChromium()]);
});

beforeEach(async () => {
	if (!redis.running) await redis.restart();
	await redis.command('FLUSHALL');
	await chromium.context.clearCookies();
	page = await chromium.context.newPage();
	cleanups.push(() => page.close());
});

afterEach(async () => {
	for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

afterAll(async () => {
	await chromium?.close();
	await redis?.kill();
});

/** The login example on a store of this file's redis-server, served on a free port. */
const startExample = async (options: Omit<LoginAppOptions, 'store'> = {}) => {
	const store = new ResilientStore({ url: redis.url, logger: silentLogger, ...fastFailover });
	cleanups.push(() => store.close());
	await connected(store);
	const { app, guard } = createLoginApp({
		store,
		guard: { maxFailures: MAX_FAILURES, lockoutMs: LOCKOUT_MS, lockoutFactor: 1, logger: silentLogger },
		rateLimit: { logger: silentLogger },
		...options,
	});
	const server = await listen(app);
	cleanups.push(() => server.close());
	return { store, guard, url: server.url };
};

describe('the login example in a browser', () => {
	it('locks out wrong passwords, lets the person in once unlocked, and logs them out', async () => {
		const { store, guard, url } = await startExample();
		// The page's own timers (the lockout countdown) run when the test says so.
		await page.clock.install();

		await page.goto(url);
		expect(new URL(page.url()).pathname).toBe('/login');
		expect(await textOf(page, 'h1')).toBe('Sign in');
		expect(await textOf(page, '#backend')).toBe('redis');

		// Wrong passwords: each one is refused, until the username is locked.
		for (let attempt = 1; attempt <= MAX_FAILURES; attempt++) {
			await signIn(page, demoUser.username, `not the password ${attempt}`);
			expect(await textOf(page, '#error')).toBe('Wrong username or password.');
		}

		await signIn(page, demoUser.username, 'one more guess');
		const lockout = /^Too many failed attempts\. Try again in (\d+) seconds\.$/;
		expect(await textOf(page, '#error')).toMatch(lockout);
		const seconds = Number(lockout.exec((await textOf(page, '#error'))!)![1]);
		expect(seconds).toBeGreaterThan(1);
		expect(seconds).toBeLessThanOrEqual(LOCKOUT_MS / 1000);
		expect(await page.isDisabled('#sign-in')).toBe(true);
		expect(await textOf(page, '#sign-in')).toBe(`Try again in ${seconds} s`);
		// The username is kept in the form.
		expect(await page.inputValue('#username')).toBe(demoUser.username);

		// The button counts the lockout down and comes back at its end (the page's clock is
		// run ahead here; the server's is not).
		await page.clock.runFor(1_000);
		expect(await textOf(page, '#sign-in')).toBe(`Try again in ${seconds - 1} s`);
		await page.clock.runFor(seconds * 1_000);
		expect(await page.isEnabled('#sign-in')).toBe(true);
		expect(await textOf(page, '#sign-in')).toBe('Sign in');

		// The server still holds the lock: even the right password is refused.
		await signIn(page, demoUser.username, demoUser.password);
		expect(await textOf(page, '#error')).toMatch(lockout);
		expect(new URL(page.url()).pathname).toBe('/login');

		// Unlocked (as an administrator would), the person signs in from the login page.
		await guard.reset(demoUser.username);
		await page.goto(`${url}/login`);
		await signIn(page, demoUser.username, demoUser.password);
		expect(new URL(page.url()).pathname).toBe('/members');
		expect(await textOf(page, '#user')).toBe(demoUser.username);
		expect(await textOf(page, '#visits')).toBe('1');
		expect(await textOf(page, '#backend')).toBe('redis');
		const sessionId = await sessionIdOf(page);
		expect(sessionId).toBeDefined();
		expect(await store.get(sessionId!)).toMatchObject({ user: demoUser.username });

		await logOut(page);
		expect(new URL(page.url()).pathname).toBe('/login');
		expect(await textOf(page, '#notice')).toBe('You are logged out.');
		expect(await store.get(sessionId!)).toBeFalsy();

		// The members page is closed again.
		await page.goto(`${url}/members`);
		expect(new URL(page.url()).pathname).toBe('/login');
	});

	it('keeps the person signed in while Redis is down, and says where the session is served from', async () => {
		const { store, url } = await startExample();

		await page.goto(`${url}/login`);
		await signIn(page, demoUser.username, demoUser.password);
		expect(await textOf(page, '#user')).toBe(demoUser.username);
		expect(await textOf(page, '#backend')).toBe('redis');
		expect(await textOf(page, '#visits')).toBe('1');
		const sessionId = (await sessionIdOf(page))!;

		const fellBack = nextEvent(store, 'fallback');
		await redis.kill();
		await fellBack;

		await page.reload();
		expect(new URL(page.url()).pathname).toBe('/members');
		expect(await textOf(page, '#user')).toBe(demoUser.username);
		expect(await textOf(page, '#backend')).toBe('memory');
		expect(await textOf(page, '#visits')).toBe('2');

		// Redis comes back on the same port, empty.
		const recovered = nextEvent(store, 'recover');
		await redis.restart();
		await recovered;

		await page.reload();
		expect(await textOf(page, '#user')).toBe(demoUser.username);
		expect(await textOf(page, '#backend')).toBe('redis');
		expect(await textOf(page, '#visits')).toBe('3');
		// The session is in Redis again, with the visits made during the outage.
		const stored = JSON.parse((await redis.command('GET', `sess:${sessionId}`)) as string);
		expect(stored).toMatchObject({ user: demoUser.username, visits: 3 });

		await logOut(page);
		expect(await textOf(page, '#notice')).toBe('You are logged out.');
		expect(await textOf(page, '#backend')).toBe('redis');
		// Destroyed: its key holds a tombstone (JSON null) that no late save overwrites.
		expect(await redis.command('GET', `sess:${sessionId}`)).toBe('null');
	});
});
