import type { Page } from 'playwright-core';

/** Runs `action` (a click that submits a form, a reload) and resolves once the next page has loaded. */
export const andLoad = async (page: Page, action: () => Promise<unknown>): Promise<void> => {
	const loaded = page.waitForEvent('load');
	await action();
	await loaded;
};

/** Types `username` and `password` into the login example's form and sends it, as a person would. */
export const signIn = async (page: Page, username: string, password: string): Promise<void> => {
	await page.fill('#username', username);
	await page.fill('#password', password);
	await andLoad(page, () => page.click('#sign-in'));
};

/** Presses the members page's logout button. */
export const logOut = (page: Page): Promise<void> => andLoad(page, () => page.click('#log-out'));

/** The text of `selector`, or `undefined` when the page has no such element. */
export const textOf = async (page: Page, selector: string): Promise<string | undefined> => {
	const element = await page.$(selector);
	return element ? ((await element.textContent()) ?? '').trim() : undefined;
};

/** The session id in the browser's session cookie (`connect.sid`, signed: `s:<id>.<signature>`). */
export const sessionIdOf = async (page: Page): Promise<string | undefined> => {
	const cookie = (await page.context().cookies()).find((c) => c.name === 'connect.sid');
	if (!cookie) return undefined;
	return /^s:([^.]+)\./.exec(decodeURIComponent(cookie.value))?.[1];
};
