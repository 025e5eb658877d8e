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

export interface RedisServerOptions {
	/** More configuration, given the port the server will listen on. */
	readonly args?: (port: number) => string[];
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

	private constructor(port: number, options: RedisServerOptions) {
		this.port = port;
		this.#options = options;
		this.#extraArgs = options.args?.(port) ?? [];
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
		this.#options.onSpawn?.(child);
		let output = '';
		await new Promise<void>((resolve, reject) => {
			const onData = (chunk: Buffer) => {
				output += chunk.toString();
				if (output.includes('Ready to accept connections')) {
					child.stdout!.off('data', onData);
					resolve();
				}
			};

			child.stdout!.on('data', onData);
			child.once('exit', (code) => {
				this.#process = undefined;
				reject(new Error(`redis-server exited with ${code}: ${output}`));
			});
		});
		child.stdout!.resume();
		child.stderr!.resume();
		child.removeAllListeners('exit');
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
