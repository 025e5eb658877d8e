import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium } from 'playwright-core';

/** Debian's `chromium` package (`apt-get install chromium`); `.ci/run` installs it. */
export const CHROMIUM_PATH = '/usr/bin/chromium';

/** Headless, and nothing that reaches out to the network or depends on a desktop. */
export const CHROMIUM_ARGS = [
	'--headless',
	'--no-sandbox',
	'--disable-gpu',
	'--disable-background-networking',
	'--disable-component-update',
	'--disable-sync',
	'--no-first-run',
] as const;

export interface Chromium {
	/** The browser's one context: cookies are shared by its pages until `clearCookies()`. */
	readonly context: BrowserContext;
	/** Closes the browser and removes its profile. */
	close(): Promise<void>;
}

/** A real headless Chromium on a fresh, empty profile. */
export const launchChromium = async (
	options: { viewport?: { width: number; height: number } } = {},
): Promise<Chromium> => {
	const profile = await mkdtemp(join(tmpdir(), 'resilient-session-chromium-'));
	const context = await chromium.launchPersistentContext(profile, {
		executablePath: CHROMIUM_PATH,
		headless: true,
		args: [...CHROMIUM_ARGS],
		viewport: options.viewport ?? { width: 800, height: 600 },
	});
	return {
		context,
		close: async () => {
			await context.close();
			await rm(profile, { recursive: true, force: true });
		},
	};
};
