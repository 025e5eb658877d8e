import { once } from 'node:events';
import net from 'node:net';

type Mode = 'pass' | 'stall' | 'cut';

/** `PING`s as clients send them (RESP: an array of one bulk string; or inline), any case. */
const PINGS = /^(?:\*1\r\n\$4\r\nping\r\n|ping\r\n)+$/i;

/** Whether `chunk` holds nothing but whole `PING` commands. */
const isPingOnly = (chunk: Buffer): boolean => chunk.length <= 1_400 && PINGS.test(chunk.toString('latin1'));

/**
 * A TCP proxy between the store and redis-server, to inject the faults a process kill
 * cannot show: a link that is cut (connections reset, new ones refused), stalled (TCP
 * stays open and nothing arrives, until it is resumed), or slow (every chunk delayed).
 */
export class TcpProxy {
	readonly #server: net.Server;
	readonly #targetPort: number;
	readonly #sockets = new Set<net.Socket>();
	readonly #held: Array<() => void> = [];
	#mode: Mode = 'pass';
	#latencyMs = 0;
	/** Connections accepted since the proxy started. */
	connections = 0;
	/**
	 * Chunks sent on to the server. Commands the client sends one after the other, each
	 * awaiting its answer, arrive as separate chunks: this counts round trips.
	 */
	chunksToServer = 0;
	/**
	 * Round trips to the server: on each connection, data from the client counts once
	 * when everything it sent before has been answered, or nothing was sent yet; data sent
	 * on before any answer has come back (commands pipelined, in one write or in several)
	 * belongs to the same round trip. An answer is any data from the server delivered to
	 * the client. Two connections waiting on the server at the same time count twice.
	 */
	roundTrips = 0;
	/**
	 * Of {@link roundTrips}, those in which the client sent nothing but `PING`s: a store's
	 * proof that its connection still delivers, sent on a clock rather than for a request.
	 * A round trip that starts with a `PING` and carries another command too counts as a
	 * command's.
	 */
	pingRoundTrips = 0;

	private constructor(targetPort: number) {
		this.#targetPort = targetPort;
		this.#server = net.createServer((socket) => this.#accept(socket));
	}

	static async start(targetPort: number): Promise<TcpProxy> {
		const proxy = new TcpProxy(targetPort);
		proxy.#server.listen(0, '127.0.0.1');
		await once(proxy.#server, 'listening');
		return proxy;
	}

	get port(): number {
		return (this.#server.address() as net.AddressInfo).port;
	}

	get url(): string {
		return `redis://127.0.0.1:${this.port}`;
	}

	/** Forwards everything again; what a stall held back is delivered now, as TCP would. */
	pass(): void {
		this.#mode = 'pass';
		for (const release of this.#held.splice(0)) release();
	}

	/** Keeps every connection open and delivers nothing, either way. */
	stall(): void {
		this.#mode = 'stall';
	}

	/** Resets every connection and refuses new ones until {@link pass}. */
	cut(): void {
		this.#mode = 'cut';
		this.#held.length = 0;
		for (const socket of this.#sockets) socket.destroy();
	}

	/** Delays every chunk by `ms` in each direction. */
	slow(ms: number): void {
		this.#latencyMs = ms;
	}

	async close(): Promise<void> {
		for (const socket of this.#sockets) socket.destroy();
		this.#server.close();
		await once(this.#server, 'close');
	}

	#accept(client: net.Socket): void {
		this.connections++;
		if (this.#mode === 'cut') {
			client.destroy();
			return;
		}

		const upstream = net.connect(this.#targetPort, '127.0.0.1');
		for (const socket of [client, upstream]) {
			this.#sockets.add(socket);
			socket.on('error', () => {});
			socket.on('close', () => {
				this.#sockets.delete(socket);
				client.destroy();
				upstream.destroy();
			});
		}

		// Whether the client has sent data that no answer has followed yet, and whether
		// that data was all PINGs.
		let waiting = false;
		let pingsOnly = false;
		this.#pipe(client, upstream, (chunk) => {
			this.chunksToServer++;
			const ping = isPingOnly(chunk);
			if (!waiting) {
				this.roundTrips++;
				if (ping) this.pingRoundTrips++;
				pingsOnly = ping;
			} else if (pingsOnly && !ping) {
				this.pingRoundTrips--;
				pingsOnly = false;
			}

			waiting = true;
		});
		this.#pipe(upstream, client, undefined, () => (waiting = false));
	}

	#pipe(from: net.Socket, to: net.Socket, onChunk?: (chunk: Buffer) => void, onDelivered?: () => void): void {
		from.on('data', (chunk: Buffer) => {
			onChunk?.(chunk);
			const deliver = () => {
				if (to.destroyed) return;
				to.write(chunk);
				onDelivered?.();
			};

			const forward = () => (this.#latencyMs > 0 ? setTimeout(deliver, this.#latencyMs) : deliver());
			if (this.#mode === 'stall') this.#held.push(forward);
			else forward();
		});
	}
}
