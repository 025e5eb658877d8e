import { spawn } from 'node:child_process';
import path from 'node:path';
import { freePort, RedisServer } from './helpers/redis-server.js';

let redis: RedisServer;

beforeAll(async () => {
	redis = await RedisServer.start();
});

afterAll(() => redis.kill());

/** Runs the close-and-exit fixture; resolves with its output and how long it lived after closing. */
const runFixture = (target: string) =>
	new Promise<{ output: string; code: number | null; lingeredMs: number }>((resolve, reject) => {
		const child = spawn(
			process.execPath,
			['--import', 'tsx', path.join(__dirname, 'helpers', 'close-and-exit.ts'), target],
			{ stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, REDIS_URL: '' } },
		);
		let output = '';
		let closedAt = 0;
		child.stdout.on('data', (chunk: Buffer) => {
			output += chunk.toString();
			if (output.includes('closed')) closedAt ||= Date.now();
		});
		const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
		child.on('error', reject);
		child.on('exit', (code) => {
			clearTimeout(killer);
			resolve({ output, code, lingeredMs: closedAt ? Date.now() - closedAt : Infinity });
		});
	});

describe('close()', () => {
	it.each([
		['on Redis', () => redis.url, 'redis'],
		['while Redis is unreachable and the client keeps reconnecting', async () => `redis://127.0.0.1:${await freePort()}`, 'memory'],
		['on memory only', async () => 'memory', 'memory'],
	])('lets the process exit by itself %s', async (_name, target, backend) => {
		const { output, code, lingeredMs } = await runFixture(await target());
		expect(output).toContain(`closed on ${backend}`);
		expect(code).toBe(0);
		// A reconnect attempt already under way may take its last turn; nothing more.
		expect(lingeredMs).toBeLessThan(1_500);
	}, 20_000);
});
