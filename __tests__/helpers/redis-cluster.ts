import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { RedisServer, waitFor } from './redis-server.js';

const run = promisify(execFile);

export interface RedisClusterOptions {
	/** Replicas per master: 0 (three nodes) or more (a replica takes over when its master dies). */
	readonly replicas?: number;
	/** After how long without an answer a node is failing (`cluster-node-timeout`). */
	readonly nodeTimeoutMs?: number;
}

/** One line of `CLUSTER NODES`. */
interface NodeLine {
	readonly id: string;
	/** For a replica, the id of its master. */
	readonly masterId: string;
	readonly port: number;
	readonly flags: string[];
	readonly slots: string[];
}

/**
 * A private Redis Cluster of three masters on free ports, by default without replicas
 * (for the tests that must show what a cluster refuses: multi-key commands across slots),
 * or with replicas, which take over when their master is killed.
 */
export class RedisCluster {
	readonly #dir: string;

	private constructor(
		readonly nodes: RedisServer[],
		dir: string,
	) {
		this.#dir = dir;
	}

	static async start({ replicas = 0, nodeTimeoutMs = 2_000 }: RedisClusterOptions = {}): Promise<RedisCluster> {
		const dir = mkdtempSync(path.join(tmpdir(), 'resilient-session-cluster-'));
		const nodes: RedisServer[] = [];
		const cluster = new RedisCluster(nodes, dir);
		try {
			nodes.push(
				...(await Promise.all(
					Array.from({ length: 3 * (1 + replicas) }, () =>
						RedisServer.start({
							args: (port) => [
								'--cluster-enabled',
								'yes',
								'--cluster-config-file',
								path.join(dir, `nodes-${port}.conf`),
								'--cluster-node-timeout',
								String(nodeTimeoutMs),
								'--dir',
								dir,
								// A replica that never synced cannot take over: sync at once, not after 5 s.
								'--repl-diskless-sync-delay',
								'0',
							],
						}),
					),
				)),
			);
			await run('redis-cli', [
				'--cluster',
				'create',
				...nodes.map((node) => `127.0.0.1:${node.port}`),
				'--cluster-replicas',
				String(replicas),
				'--cluster-yes',
			]);
			await waitFor('every node sees every replica and cluster_state:ok', async () => {
				const views = await Promise.all(nodes.map((node) => cluster.#nodeLines(node)));
				const infos = await Promise.all(nodes.map((node) => node.command('CLUSTER', 'INFO')));
				const replication = await Promise.all(nodes.map((node) => node.command('INFO', 'replication')));
				return (
					infos.every((info) => String(info).includes('cluster_state:ok')) &&
					replication.every((info) => !String(info).includes('role:slave') || String(info).includes('master_link_status:up')) &&
					views.every((lines) => lines.filter((line) => line.flags.includes('slave')).length === 3 * replicas)
				);
			});
			return cluster;
		} catch (error) {
			await cluster.stop();
			throw error;
		}
	}

	/** The nodes that run now, for `createCluster`. */
	get rootNodes(): Array<{ url: string }> {
		return this.nodes.filter((node) => node.running).map((node) => ({ url: node.url }));
	}

	/** The running node that serves `slot` as master, as the nodes see it now. */
	async masterOf(slot: number): Promise<RedisServer> {
		const witness = this.nodes.find((node) => node.running)!;
		for (const line of await this.#nodeLines(witness)) {
			if (!line.flags.includes('master') || line.flags.some((flag) => flag.startsWith('fail'))) continue;
			const owns = line.slots.some((range) => {
				const [from, to = from] = range.split('-').map(Number);
				return slot >= from! && slot <= to!;
			});
			if (owns) return this.nodes.find((node) => node.port === line.port)!;
		}

		throw new Error(`no master serves slot ${slot}`);
	}

	/**
	 * Ids chosen so that each master owns the keys (`keyOf(id)`) of `perMaster` of them,
	 * by master port.
	 */
	async idsOnEveryMaster(perMaster: number, keyOf: (id: string) => string, newId: () => string): Promise<Map<number, string[]>> {
		const witness = this.nodes.find((node) => node.running)!;
		const masters = (await this.#nodeLines(witness)).filter(
			(line) => line.flags.includes('master') && !line.flags.some((flag) => flag.startsWith('fail')),
		);
		const owned = new Map<number, string[]>(masters.map((line) => [line.port, []]));
		for (let tries = 0; [...owned.values()].some((ids) => ids.length < perMaster); tries++) {
			if (tries > 1_000) throw new Error('could not find ids on every master');
			const id = newId();
			const slot = Number(await witness.command('CLUSTER', 'KEYSLOT', keyOf(id)));
			const ids = owned.get((await this.masterOf(slot)).port)!;
			if (ids.length < perMaster) ids.push(id);
		}

		return owned;
	}

	/** The ports of the masters that have a live replica, which can take over if they die. */
	async mastersWithReplicas(): Promise<number[]> {
		const lines = await this.#nodeLines(this.nodes.find((node) => node.running)!);
		const live = (line: NodeLine) => !line.flags.some((flag) => flag.startsWith('fail'));
		return lines
			.filter((line) => line.flags.includes('master') && live(line))
			.filter((master) => lines.some((line) => line.flags.includes('slave') && live(line) && line.masterId === master.id))
			.map((master) => master.port);
	}

	/** The slot of `key`. */
	async slotOf(key: string): Promise<number> {
		return Number(await this.nodes.find((node) => node.running)!.command('CLUSTER', 'KEYSLOT', key));
	}

	/**
	 * Resolves once another node than `port` serves its slots as master, as every running
	 * node sees it, and the cluster is ok again. Returns the new master's port.
	 */
	async promotedFrom(slot: number, port: number, ms = 20_000): Promise<number> {
		let promoted = port;
		const waiting = waitFor(`a replica to take over from ${port}`, async () => {
			const running = this.nodes.filter((node) => node.running);
			const infos = await Promise.all(running.map((node) => node.command('CLUSTER', 'INFO')));
			if (!infos.every((info) => String(info).includes('cluster_state:ok'))) return false;
			promoted = (await this.masterOf(slot)).port;
			return promoted !== port;
		}, ms);
		try {
			await waiting;
		} catch (error) {
			throw new Error(`${(error as Error).message}; ${await this.describe()}`);
		}

		return promoted;
	}

	/** `CLUSTER NODES` as a running node sees it, for failure messages. */
	async describe(): Promise<string> {
		const witness = this.nodes.find((node) => node.running)!;
		return `the cluster as ${witness.port} sees it:\n${await witness.command('CLUSTER', 'NODES')}`;
	}

	async stop(): Promise<void> {
		await Promise.all(this.nodes.map((node) => node.kill()));
		rmSync(this.#dir, { recursive: true, force: true });
	}

	async #nodeLines(node: RedisServer): Promise<NodeLine[]> {
		const text = String(await node.command('CLUSTER', 'NODES'));
		return text
			.trim()
			.split('\n')
			.map((line) => {
				const [id, address, flags, masterId, , , , , ...slots] = line.split(' ');
				return { id: id!, masterId: masterId!, port: Number(address!.split('@')[0]!.split(':')[1]), flags: flags!.split(','), slots };
			});
	}
}
