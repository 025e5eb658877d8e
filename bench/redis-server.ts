/**
 * A private redis-server for the benchmark, on a free loopback port, persisting nothing,
 * so that it can be killed (SIGKILL) and started again without touching anyone else's
 * Redis. Also reads `INFO commandstats`, to count the commands each request costs.
 */
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { createClient } from 'redis';
import { freePort, RedisServer } from '../__tests__/helpers/redis-server.js';
import { track } from './processes.js';

export { freePort };

/** The `redis-server --version` line, or `undefined` when redis-server is not on PATH. */
export const redisServerVersion = (): string | undefined => {
	const result = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
	if (result.error || result.status !== 0) return undefined;
	return /v=(\S+)/.exec(result.stdout)?.[1] ?? result.stdout.trim();
};

/** A connected node-redis client (RESP2 unless told); its errors are left to its commands. */
export const connectClient = async (url: string, resp: 2 | 3 = 2) => {
	const client = createClient({ url, RESP: resp });
	client.on('error', () => {});
	await client.connect();
	return client;
};

export type BenchClient = Awaited<ReturnType<typeof connectClient>>;

/** Calls per command name (`get`, `expire`, `client|setinfo`, …), from `INFO commandstats`. */
export type CommandStats = Map<string, number>;

const parseCommandStats = (info: string): CommandStats => {
	const stats: CommandStats = new Map();
	for (const match of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) stats.set(match[1]!, Number(match[2]));
	return stats;
};

/** `after - before` per command, leaving out the `INFO` calls that took the snapshots. */
export const commandDelta = (before: CommandStats, after: CommandStats): CommandStats => {
	const delta: CommandStats = new Map();
	for (const [name, calls] of after) {
		const diff = calls - (before.get(name) ?? 0);
		if (diff > 0 && name !== 'info') delta.set(name, diff);
	}

	return delta;
};

/** One command seen by `MONITOR`. */
export interface MonitoredCommand {
	/** Lower-case command name. */
	readonly name: string;
	/** Run by a Lua script (`EVAL`/`EVALSHA`), not sent by a client. */
	readonly fromScript: boolean;
}

export class BenchRedis {
	readonly #server: RedisServer;
	#monitor: BenchClient | undefined;

	private constructor(server: RedisServer) {
		this.#server = server;
	}

	/** Starts a redis-server on a free port; resolves once it accepts connections. */
	static async start(): Promise<BenchRedis> {
		// The tests' own private redis-server, with each process tracked so that it dies
		// with the benchmark.
		return new BenchRedis(await RedisServer.start({ args: () => ['--loglevel', 'notice'], onSpawn: track }));
	}

	get port(): number {
		return this.#server.port;
	}

	get url(): string {
		return this.#server.url;
	}

	/** Starts the server (again) on the same port, empty. Resolves once it accepts connections. */
	restart(): Promise<void> {
		return this.#server.restart();
	}

	/** SIGKILL: the server dies at once, without closing its connections politely. */
	async kill(): Promise<void> {
		this.#monitor?.destroy();
		this.#monitor = undefined;
		await this.#server.kill();
	}

	/** CPU time (user + system) the server has used so far, in microseconds (`INFO cpu`). */
	async cpuMicros(): Promise<number> {
		this.#monitor ??= await connectClient(this.url);
		const info = await this.#monitor.info('cpu');
		const seconds = (field: string) => Number(new RegExp(`^${field}:([\\d.]+)`, 'm').exec(info)?.[1] ?? Number.NaN);
		return Math.round((seconds('used_cpu_user') + seconds('used_cpu_sys')) * 1e6);
	}

	/** Calls per command so far. */
	async commandStats(): Promise<CommandStats> {
		this.#monitor ??= await connectClient(this.url);
		return parseCommandStats(await this.#monitor.info('commandstats'));
	}

	/**
	 * Starts `MONITOR` on a connection of its own; `stop()` ends it and gives every
	 * command Redis ran meanwhile, telling those a client sent from those a Lua script
	 * ran (which `INFO commandstats` counts alike).
	 */
	async monitor(): Promise<{ stop(): Promise<MonitoredCommand[]> }> {
		const socket = net.connect(this.port, '127.0.0.1');
		await once(socket, 'connect');
		const commands: MonitoredCommand[] = [];
		let buffered = '';
		let started: () => void;
		const ready = new Promise<void>((resolve) => (started = resolve));
		socket.setEncoding('utf8');
		socket.on('error', () => {});
		socket.on('data', (chunk: string) => {
			buffered += chunk;
			let end: number;
			while ((end = buffered.indexOf('\r\n')) >= 0) {
				const line = buffered.slice(0, end);
				buffered = buffered.slice(end + 2);
				if (line === '+OK') started();
				const match = /^\+[\d.]+ \[\d+ ([^\]]+)\] "([^"]+)"/.exec(line);
				if (match) commands.push({ name: match[2]!.toLowerCase(), fromScript: match[1] === 'lua' });
			}
		});
		socket.write('MONITOR\r\n');
		await ready;
		return {
			stop: async () => {
				// A PING on another connection marks the end: everything before it has arrived.
				const marker = await connectClient(this.url);
				await marker.ping();
				marker.destroy();
				const deadline = Date.now() + 1_000;
				while (!commands.some((command) => command.name === 'ping') && Date.now() < deadline) {
					await new Promise((resolve) => setTimeout(resolve, 5));
				}

				socket.destroy();
				let last = commands.length - 1;
				while (last >= 0 && commands[last]!.name !== 'ping') last--;
				return commands
					.slice(0, last < 0 ? commands.length : last)
					.filter((command) => !['client', 'hello', 'info'].includes(command.name));
			},
		};
	}

	async stop(): Promise<void> {
		await this.kill();
	}
}
