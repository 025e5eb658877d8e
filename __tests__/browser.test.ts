/**
 * The login example (examples/login) in a real headless Chromium, against a real
 * redis-server of this file's own: what a person sees when they mistype their password,
 * log in and out, when Redis dies and comes back while they are signed in, and when they
 * log out their other devices.
 */
import type { ElementHandle, Page } from 'playwright-core';
import { ResilientStore, silentLogger } from '../lib/index.js';
import { createLoginApp, demoUser, type LoginAppOptions, SHORT_ID_LENGTH, userOfSession } from '../examples/login/app.js';
import { type Chromium, launchChromium } from './helpers/browser.js';
import { andLoad, logOut, sessionIdOf, signIn, textOf } from './helpers/login-page.js';
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
	const store = new ResilientStore({ url: redis.url, logger: silentLogger, userId: userOfSession, ...fastFailover });
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

	it('lists the devices of the user and logs out the others, which land on the login page', async () => {
		const { store, url } = await startExample();
		// A second device: a browser of its own, with its own cookies.
		const other = await launchChromium();
		cleanups.push(() => other.close());
		const deviceA = page;
		const deviceB = await other.context.newPage();

		for (const device of [deviceA, deviceB]) {
			await device.goto(`${url}/login`);
			await signIn(device, demoUser.username, demoUser.password);
			expect(new URL(device.url()).pathname).toBe('/members');
		}
		const idA = (await sessionIdOf(deviceA))!;
		const idB = (await sessionIdOf(deviceB))!;
		expect(idA).toBeDefined();
		expect(idB).toBeDefined();
		expect(idA).not.toBe(idB);

		// From the members page to the devices page: both sessions, this one marked.
		await andLoad(deviceA, () => deviceA.click('#devices-link'));
		expect(new URL(deviceA.url()).pathname).toBe('/devices');
		expect(await devicesOn(deviceA)).toEqual(
			expect.arrayContaining([idA.slice(0, SHORT_ID_LENGTH) + 'this device', idB.slice(0, SHORT_ID_LENGTH)]),
		);
		expect(await devicesOn(deviceA)).toHaveLength(2);
		expect(await textOf(deviceA, '#this-device code')).toBe(idA.slice(0, SHORT_ID_LENGTH));
		// Each device shows when it expires (an hour after its last request), never another's whole id.
		for (const expires of await expiryOn(deviceA)) {
			expect(Math.abs(expires - (Date.now() + 60 * 60 * 1000))).toBeLessThan(5 * 60 * 1000);
		}
		expect(await deviceA.content()).not.toContain(idB);
		expect(await deviceA.isEnabled('#log-out-others')).toBe(true);

		// Device B sees the same two, itself marked.
		await deviceB.goto(`${url}/devices`);
		expect(await textOf(deviceB, '#this-device code')).toBe(idB.slice(0, SHORT_ID_LENGTH));
		expect(await devicesOn(deviceB)).toHaveLength(2);

		await andLoad(deviceA, () => deviceA.click('#log-out-others'));
		expect(await textOf(deviceA, '#notice')).toBe('Logged out 1 other device.');
		expect(await devicesOn(deviceA)).toEqual([idA.slice(0, SHORT_ID_LENGTH) + 'this device']);
		expect(await deviceA.isDisabled('#log-out-others')).toBe(true);
		// B's session is destroyed as a logout is: a tombstone in Redis.
		expect(await store.get(idB)).toBeFalsy();
		expect(await redis.command('GET', `sess:${idB}`)).toBe('null');

		// Device B's next visit: logged out, its pages closed.
		await deviceB.goto(`${url}/members`);
		expect(new URL(deviceB.url()).pathname).toBe('/login');
		expect(await textOf(deviceB, 'h1')).toBe('Sign in');
		await deviceB.goto(`${url}/devices`);
		expect(new URL(deviceB.url()).pathname).toBe('/login');

		// Device A is still signed in, in the same session, and alone on its devices page.
		await deviceA.goto(`${url}/members`);
		expect(new URL(deviceA.url()).pathname).toBe('/members');
		expect(await textOf(deviceA, '#user')).toBe(demoUser.username);
		expect(await sessionIdOf(deviceA)).toBe(idA);
		await deviceA.goto(`${url}/devices`);
		expect(await devicesOn(deviceA)).toEqual([idA.slice(0, SHORT_ID_LENGTH) + 'this device']);
		expect(await textOf(deviceA, '#notice')).toBeUndefined();
	});
});

/** The devices page's list: each device's short id, followed by "this device" for the current one. */
const devicesOn = async (page: Page): Promise<string[]> => {
	const text = async (element: ElementHandle | null) => ((await element?.textContent()) ?? '').trim();
	const items = await page.$$('#devices li');
	return Promise.all(items.map(async (item) => (await text(await item.$('code'))) + (await text(await item.$('.current')))));
};

/** When each device on the devices page expires, in ms since the epoch. */
const expiryOn = async (page: Page): Promise<number[]> => {
	const items = await page.$$('#devices small');
	return Promise.all(
		items.map(async (item) => {
			const text = ((await item.textContent()) ?? '').trim();
			const match = /expires (\d{4}-\d\d-\d\d) (\d\d:\d\d) UTC$/.exec(text);
			expect(match).not.toBeNull();
			return Date.parse(`${match![1]}T${match![2]}:00Z`);
		}),
	);
};
