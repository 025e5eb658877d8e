import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { RedisServer, waitFor } from './redis-server.js';

/** The name the sentinels monitor the master under. */
export const SENTINEL_MASTER_NAME = 'sessions';

/** A `SENTINEL …` reply (RESP2: a flat array of field, value) as an object. */
const fields = (reply: unknown): Record<string, string> => {
	const flat = (reply as string[]) ?? [];
	const record: Record<string, string> = {};
	for (let i = 0; i + 1 < flat.length; i += 2) record[flat[i]!] = flat[i + 1]!;
	return record;
};

/**
 * A private Redis Sentinel set-up on free loopback ports: one master, `replicas` replicas
 * and three sentinels (quorum 2) that declare the master down after `downAfterMs`, so that
 * a replica is promoted within a few seconds of the master being killed. Nothing is
 * persisted; every process is killed by {@link stop}.
 */
export class RedisSentinel {
	readonly #dir: string;

	private constructor(
		/** The master first, then the replicas; after a promotion, see {@link master}. */
		readonly servers: RedisServer[],
		readonly sentinels: RedisServer[],
		dir: string,
	) {
		this.#dir = dir;
	}

	static async start({ replicas = 1, downAfterMs = 500, failoverTimeoutMs = 2_000 } = {}): Promise<RedisSentinel> {
		const dir = mkdtempSync(path.join(tmpdir(), 'resilient-session-sentinel-'));
		const servers: RedisServer[] = [];
		const sentinels: RedisServer[] = [];
		const setUp = new RedisSentinel(servers, sentinels, dir);
		try {
			// In the set-up's directory: a replica writes the master's data to a file as it syncs.
			servers.push(await RedisServer.start({ args: () => ['--dir', dir, '--repl-diskless-sync-delay', '0'] }));
			const masterPort = servers[0]!.port;
			for (let i = 0; i < replicas; i++) {
				servers.push(
					await RedisServer.start({ args: () => ['--dir', dir, '--replicaof', '127.0.0.1', String(masterPort)] }),
				);
			}

			await waitFor('the replicas to sync', async () => {
				const infos = await Promise.all(servers.slice(1).map((server) => server.command('INFO', 'replication')));
				return infos.every((info) => String(info).includes('master_link_status:up'));
			});
			for (let i = 0; i < 3; i++) {
				sentinels.push(
					await RedisServer.start({
						configFile: (port) => {
							const file = path.join(dir, `sentinel-${port}.conf`);
							writeFileSync(
								file,
								[
									`sentinel monitor ${SENTINEL_MASTER_NAME} 127.0.0.1 ${masterPort} 2`,
									`sentinel down-after-milliseconds ${SENTINEL_MASTER_NAME} ${downAfterMs}`,
									`sentinel failover-timeout ${SENTINEL_MASTER_NAME} ${failoverTimeoutMs}`,
									`sentinel parallel-syncs ${SENTINEL_MASTER_NAME} 1`,
									'',
								].join('\n'),
							);
							return file;
						},
						args: () => ['--dir', dir, '--sentinel'],
						readyLine: '+monitor master',
					}),
				);
			}

			// A failover needs every sentinel to know the others (they meet on the master every
			// 2 s) and the replicas.
			await waitFor('the sentinels to meet and see the replicas', async () => {
				const views = await Promise.all(
					sentinels.map(async (sentinel) => ({
						others: ((await sentinel.command('SENTINEL', 'SENTINELS', SENTINEL_MASTER_NAME)) as unknown[]).length,
						replicas: ((await sentinel.command('SENTINEL', 'REPLICAS', SENTINEL_MASTER_NAME)) as unknown[])
							.map(fields)
							.filter((replica) => !/down|disconnected/.test(replica.flags ?? '')).length,
					})),
				);
				return views.every((view) => view.others === 2 && view.replicas === replicas);
			});
			return setUp;
		} catch (error) {
			await setUp.stop();
			throw error;
		}
	}

	/** What `createSentinel` needs to find the master. */
	get sentinelRootNodes(): Array<{ host: string; port: number }> {
		return this.sentinels.map((sentinel) => ({ host: '127.0.0.1', port: sentinel.port }));
	}

	/** The port of the master, as the first sentinel sees it now. */
	async masterPort(): Promise<number> {
		const [, port] = (await this.sentinels[0]!.command('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', SENTINEL_MASTER_NAME)) as string[];
		return Number(port);
	}

	/** The running server that is the master now. */
	async master(): Promise<RedisServer> {
		const port = await this.masterPort();
		const master = this.servers.find((server) => server.port === port && server.running);
		if (!master) throw new Error(`no running master on port ${port}`);
		return master;
	}

	/**
	 * Resolves once every sentinel names a master other than `oldPort` and that server
	 * answers as a master. Returns its port.
	 */
	async promotedFrom(oldPort: number, ms = 20_000): Promise<number> {
		let port = oldPort;
		await waitFor(`a replica to be promoted in place of ${oldPort}`, async () => {
			const named = await Promise.all(
				this.sentinels.map(
					async (sentinel) =>
						((await sentinel.command('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', SENTINEL_MASTER_NAME)) as string[])[1],
				),
			);
			if (new Set(named).size !== 1 || Number(named[0]) === oldPort) return false;
			port = Number(named[0]);
			const server = this.servers.find((candidate) => candidate.port === port)!;
			return String(await server.command('ROLE')).startsWith('master');
		}, ms);
		return port;
	}

	/** Kills every process (servers and sentinels) and removes the configuration files. */
	async stop(): Promise<void> {
		await Promise.all([...this.sentinels, ...this.servers].map((server) => server.kill()));
		rmSync(this.#dir, { recursive: true, force: true });
	}
}
