import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { RedisServer } from './redis-server.js';

const run = promisify(execFile);

/**
 * A private Redis Cluster of three masters (no replicas) on free ports, for the tests
 * that must show what a cluster refuses: multi-key commands across slots.
 */
export class RedisCluster {
	readonly #dir: string;

	private constructor(
		readonly nodes: RedisServer[],
		dir: string,
	) {
		this.#dir = dir;
	}

	static async start(): Promise<RedisCluster> {
		const dir = mkdtempSync(path.join(tmpdir(), 'resilient-session-cluster-'));
		const nodes = await Promise.all(
			[0, 1, 2].map(() =>
				RedisServer.start({
					args: (port) => [
					'--cluster-enabled',
					'yes',
					'--cluster-config-file',
					path.join(dir, `nodes-${port}.conf`),
					'--cluster-node-timeout',
					'2000',
					'--dir',
					dir,
					],
				}),
			),
		);
		await run('redis-cli', [
			'--cluster',
			'create',
			...nodes.map((node) => `127.0.0.1:${node.port}`),
			'--cluster-replicas',
			'0',
			'--cluster-yes',
		]);
		const cluster = new RedisCluster(nodes, dir);
		await cluster.#waitUntilOk();
		return cluster;
	}

	get rootNodes(): Array<{ url: string }> {
		return this.nodes.map((node) => ({ url: node.url }));
	}

	async stop(): Promise<void> {
		await Promise.all(this.nodes.map((node) => node.kill()));
		rmSync(this.#dir, { recursive: true, force: true });
	}

	async #waitUntilOk(): Promise<void> {
		for (let attempt = 0; attempt < 100; attempt++) {
			const states = await Promise.all(this.nodes.map((node) => node.command('CLUSTER', 'INFO')));
			if (states.every((info) => String(info).includes('cluster_state:ok'))) return;
			await new Promise((resolve) => setTimeout(resolve, 100));
		}

		throw new Error('the cluster did not reach cluster_state:ok');
	}
}
