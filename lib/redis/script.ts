import { createHash } from 'node:crypto';
import { isStandalone, type RedisClient } from './client.js';

/** An argument of a script; numbers are sent as their decimal text. */
export type ScriptArgument = string | number;

/** Whether `error` is Redis saying it does not know the script (`NOSCRIPT`). */
export const isNoScriptError = (error: unknown): boolean =>
	typeof (error as Error)?.message === 'string' && (error as Error).message.startsWith('NOSCRIPT');

/**
 * A Lua script that runs through any node-redis client: a standalone client, a cluster
 * or a sentinel, redis v5 or v6 (they share `evalSha(sha, { keys, arguments })`).
 *
 * - It is sent by its SHA1 (`EVALSHA`), so the script text crosses the wire only once
 *   per server.
 * - Redis forgets scripts when it restarts and on `SCRIPT FLUSH`, and answers `NOSCRIPT`.
 *   The script is then sent whole with `EVAL`, which runs it and caches it again, in the
 *   same round trip. `SCRIPT LOAD` would need one more, and on a cluster it carries no
 *   key, so it would load the script on a random node rather than the one that needs it.
 * - Every key the script touches must be passed in `keys`. A cluster routes the command
 *   by the first key, so all keys must hash to the same slot: give them one hash tag
 *   (`{...}`).
 * - On a plain client (`createClient`) the command goes as it is through `sendCommand`:
 *   node-redis's `evalSha` would parse it into the same words again and, on a client with
 *   a client-side cache (the store's, for its near cache), look up for every call whether
 *   its reply may be cached, which a script's never is. A cluster routes by key and a
 *   sentinel by role, so they take `evalSha`.
 */
export class RedisScript {
	readonly source: string;
	readonly sha1: string;

	constructor(source: string) {
		this.source = source;
		this.sha1 = createHash('sha1').update(source).digest('hex');
	}

	/** Runs the script on `client`. Rejects with the client's error for anything but `NOSCRIPT`. */
	run(client: RedisClient, keys: readonly string[], args: readonly ScriptArgument[] = []): Promise<unknown> {
		if (isStandalone(client)) {
			const command = ['EVALSHA', this.sha1, String(keys.length), ...keys];
			for (const arg of args) command.push(String(arg));
			return (client.sendCommand(command) as Promise<unknown>).catch((error: unknown) => {
				if (!isNoScriptError(error)) throw error;
				return client.sendCommand(['EVAL', this.source, ...command.slice(2)]);
			});
		}

		// node-redis only reads the keys, which need no copy.
		const options = { keys: keys as string[], arguments: args.map(String) };
		return (client.evalSha(this.sha1, options) as Promise<unknown>).catch((error: unknown) => {
			if (!isNoScriptError(error)) throw error;
			return client.eval(this.source, options);
		});
	}
}

/**
 * Lua: `decrement_live(key)` takes one from a counter that still lives (has an expiry),
 * returning what is left, or `false` when there is no such counter. A bare `DECR` would
 * create a key at -1 without expiry when the counter expired meanwhile (or was counted
 * in memory during an outage), and that key would never go away.
 */
export const LUA_DECREMENT_LIVE = `
local function decrement_live(key)
	if redis.call('PTTL', key) > 0 then return redis.call('DECR', key) end
	return false
end
`;
