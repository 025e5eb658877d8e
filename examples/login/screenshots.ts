/**
 * Takes the README's screenshots of the login example in a real headless Chromium
 * (/usr/bin/chromium), on a private redis-server: the login page, the lockout message, the
 * members page and the devices page, saved in examples/login/screenshots/.
 *
 *   npm run screenshots
 */
import { join } from 'node:path';
import { ResilientStore, silentLogger } from '../../lib/index.js';
import { launchChromium } from '../../__tests__/helpers/browser.js';
import { andLoad, logOut, signIn } from '../../__tests__/helpers/login-page.js';
import { RedisServer } from '../../__tests__/helpers/redis-server.js';
import { connected, listen } from '../../__tests__/helpers/common.js';
import { createLoginApp, demoUser, userOfSession } from './app.js';

const directory = join(__dirname, 'screenshots');

const main = async () => {
	const redis = await RedisServer.start();
	const store = await connected(new ResilientStore({ url: redis.url, logger: silentLogger, userId: userOfSession }));
	const server = await listen(createLoginApp({ store }).app);
	const chromium = await launchChromium({ viewport: { width: 720, height: 580 } });
	// A second device of the same user, for the devices page.
	const otherDevice = await launchChromium();
	try {
		const page = await chromium.context.newPage();
		const shoot = async (name: string) => {
			await page.screenshot({ path: join(directory, `${name}.png`) });
			console.info(`examples/login/screenshots/${name}.png`);
		};

		await page.goto(`${server.url}/login`);
		await page.fill('#username', demoUser.username);
		await page.fill('#password', demoUser.password);
		await shoot('login');

		await signIn(page, demoUser.username, demoUser.password);
		await shoot('members');

		const other = await otherDevice.context.newPage();
		await other.goto(`${server.url}/login`);
		await signIn(other, demoUser.username, demoUser.password);
		await andLoad(page, () => page.click('#devices-link'));
		await shoot('devices');
		await page.goto(`${server.url}/members`);
		await logOut(page);

		// The default guard: five wrong passwords, then a 30-second lockout.
		for (let attempt = 1; attempt <= 6; attempt++) await signIn(page, demoUser.username, `guess ${attempt}`);
		await page.fill('#password', 'one more guess');
		await shoot('lockout');
	} finally {
		await otherDevice.close();
		await chromium.close();
		await server.close();
		await store.close();
		await redis.kill();
	}
};

main().catch((error: unknown) => {
	console.error(error);
	process.exitCode = 1;
});
