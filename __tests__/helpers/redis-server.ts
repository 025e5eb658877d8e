import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { createClient } from 'redis';

/** A port nobody listens on right now. */
export const freePort = async (): Promise<number> => {
	const server = net.createServer();
	server.listen(0, '127.0.0.1');
	await once(server, 'listening');
	const { port } = server.address() as net.AddressInfo;
	server.close();
	await once(server, 'close');
	return port;
};

/** Every redis-server this process started and that still runs: killed if the process exits first. */
const running = new Set<ChildProcess>();
process.once('exit', () => {
	for (const child of running) child.kill('SIGKILL');
});

/** Polls `check` every 100 ms until it holds (an error counts as not yet), or throws after `ms`. */
export const waitFor = async (what: string, check: () => Promise<boolean>, ms = 20_000): Promise<void> => {
	const deadline = Date.now() + ms;
	while (Date.now() < deadline) {
		if (await check().catch(() => false)) return;
		await new Promise((resolve) => setTimeout(resolve, 100));
	}

	throw new Error(`timed out after ${ms} ms waiting for ${what}`);
};

export interface RedisServerOptions {
	/** More configuration, given the port the server will listen on. */
	readonly args?: (port: number) => string[];
	/**
	 * A configuration file to start from, given the port; it comes first, as Sentinel (which
	 * rewrites its file) requires.
	 */
	readonly configFile?: (port: number) => string;
	/** What the server writes once it accepts connections (Sentinel writes no such line). */
	readonly readyLine?: string;
	/** Called with each redis-server process started, for instance to kill it on exit. */
	readonly onSpawn?: (child: ChildProcess) => void;
}

/**
 * A private redis-server for one test file, on its own port, with nothing persisted,
 * so that a test can kill it and start it again (empty) without touching anyone else.
 */
export class RedisServer {
	readonly port: number;
	#process: ChildProcess | undefined;

	readonly #options: RedisServerOptions;
	readonly #extraArgs: string[];
	readonly #configFile: string[];

	private constructor(port: number, options: RedisServerOptions) {
		this.port = port;
		this.#options = options;
		this.#extraArgs = options.args?.(port) ?? [];
		this.#configFile = options.configFile ? [options.configFile(port)] : [];
	}

	static async start(options: RedisServerOptions = {}): Promise<RedisServer> {
		const server = new RedisServer(await freePort(), options);
		await server.restart();
		return server;
	}

	get url(): string {
		return `redis://127.0.0.1:${this.port}`;
	}

	get running(): boolean {
		return this.#process !== undefined;
	}

	/** Starts the server (again) on the same port, empty. Resolves once it accepts connections. */
	async restart(): Promise<void> {
		if (this.#process) throw new Error('redis-server is already running');
		const child = spawn(
			'redis-server',
			[
				...this.#configFile,
				'--port',
				String(this.port),
				'--bind',
				'127.0.0.1',
				'--save',
				'',
				'--appendonly',
				'no',
				'--daemonize',
				'no',
				...this.#extraArgs,
			],
			{ stdio: ['ignore', 'pipe', 'pipe'] },
		);
		this.#process = child;
		running.add(child);
		child.once('exit', () => running.delete(child));
		this.#options.onSpawn?.(child);
		let output = '';
		let onExit: ((code: number | null) => void) | undefined;
		await new Promise<void>((resolve, reject) => {
			const onData = (chunk: Buffer) => {
				output += chunk.toString();
				if (output.includes(this.#options.readyLine ?? 'Ready to accept connections')) {
					child.stdout!.off('data', onData);
					resolve();
				}
			};

			child.stdout!.on('data', onData);
			onExit = (code) => {
				this.#process = undefined;
				reject(new Error(`redis-server exited with ${code}: ${output}`));
			};
			child.once('exit', onExit);
		});
		child.stdout!.resume();
		child.stderr!.resume();
		child.off('exit', onExit!);
	}

	/** `kill -9`: the server dies at once, without closing its connections politely. */
	async kill(): Promise<void> {
		const child = this.#process;
		if (!child) return;
		this.#process = undefined;
		const exited = once(child, 'exit');
		child.kill('SIGKILL');
		await exited;
	}

	/** Runs one command on a short-lived connection of its own. */
	async command(...args: string[]): Promise<unknown> {
		const client = createClient({ url: this.url });
		await client.connect();
		try {
			return await client.sendCommand(args);
		} finally {
			client.destroy();
		}
	}
}

/** A test file's own redis-server, emptied before each test, and what each test leaves to close. */
export interface RedisFixture {
	/** The server (set once the file's `beforeAll` ran). */
	readonly redis: RedisServer;
	/** Runs `cleanup` after the test, after those registered later (last in, first out). */
	afterTest(...cleanups: Array<() => unknown>): void;
}

/**
 * Starts a redis-server for the test file (with `REDIS_URL` unset, so that no store
 * reaches another), starts it again if a test left it killed, empties it before each test, runs each test's cleanups after it, and
 * kills it after the file.
 */
export const useRedisServer = (): RedisFixture => {
	let redis: RedisServer | undefined;
	const cleanups: Array<() => unknown> = [];
	beforeAll(async () => {
		delete process.env.REDIS_URL;
		redis = await RedisServer.start();
	});
	beforeEach(async () => {
		// A test that killed it and failed before restarting it leaves it down.
		if (!redis!.running) await redis!.restart();
		await redis!.command('FLUSHALL');
	});
	afterEach(async () => {
		for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
	});
	afterAll(() => redis?.kill());
	return {
		get redis() {
			if (!redis) throw new Error('the redis-server starts in beforeAll');
			return redis;
		},
		afterTest: (...more) => cleanups.push(...more),
	};
};
