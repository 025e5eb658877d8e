import { once } from 'node:events';
import net from 'node:net';
import { sleep } from './helpers/common.js';
import { RedisServer } from './helpers/redis-server.js';
import { TcpProxy } from './helpers/tcp-proxy.js';

let redis: RedisServer;
let proxy: TcpProxy;
const sockets: net.Socket[] = [];

beforeAll(async () => {
	redis = await RedisServer.start();
	proxy = await TcpProxy.start(redis.port);
});

afterEach(() => {
	for (const socket of sockets.splice(0)) socket.destroy();
	proxy.slow(0);
});

afterAll(async () => {
	await proxy.close();
	await redis.kill();
});

/** A raw connection through the proxy; `replies(n)` resolves once `n` replies (`+PONG`) have arrived. */
const connect = async () => {
	const socket = net.connect(proxy.port, '127.0.0.1');
	sockets.push(socket);
	await once(socket, 'connect');
	let received = '';
	socket.setEncoding('utf8');
	socket.on('data', (chunk: string) => (received += chunk));
	const replies = async (count: number) => {
		while (received.split('\r\n').length - 1 < count) await new Promise((resolve) => setTimeout(resolve, 2));
	};

	return { socket, replies };
};

/** The round trips, and of them those of PINGs alone, that the proxy counts during `step`. */
const counted = async (step: () => Promise<void>) => {
	const [trips, pings] = [proxy.roundTrips, proxy.pingRoundTrips];
	await step();
	return { trips: proxy.roundTrips - trips, pings: proxy.pingRoundTrips - pings };
};

describe('TcpProxy round trip count', () => {
	it('counts commands sent one after the other, each after its answer, once each', async () => {
		const { socket, replies } = await connect();
		const before = proxy.roundTrips;
		socket.write('PING\r\n');
		await replies(1);
		socket.write('PING\r\n');
		await replies(2);
		expect(proxy.roundTrips - before).toBe(2);
	});

	it('counts commands pipelined in one write once', async () => {
		const { socket, replies } = await connect();
		const before = proxy.roundTrips;
		socket.write('PING\r\nPING\r\nPING\r\n');
		await replies(3);
		expect(proxy.roundTrips - before).toBe(1);
	});

	it('counts commands pipelined in several writes, before any answer, once', async () => {
		const { socket, replies } = await connect();
		proxy.slow(50);
		const before = proxy.roundTrips;
		socket.write('PING\r\n');
		await sleep(10);
		socket.write('PING\r\n');
		await replies(2);
		expect(proxy.roundTrips - before).toBe(1);
		expect(proxy.chunksToServer).toBeGreaterThanOrEqual(2);
	});

	it('tells round trips of PINGs alone from those of other commands', async () => {
		const { socket, replies } = await connect();
		const counts = await counted(async () => {
			socket.write('*1\r\n$4\r\nPING\r\n');
			await replies(1);
			socket.write('*2\r\n$3\r\nGET\r\n$1\r\nk\r\n');
			await replies(2);
			socket.write('ping\r\nPING\r\n');
			await replies(4);
		});
		expect(counts).toEqual({ trips: 3, pings: 2 });
	});

	it("counts a round trip that starts with a PING and carries another command as the command's", async () => {
		const { socket, replies } = await connect();
		proxy.slow(50);
		const counts = await counted(async () => {
			socket.write('PING\r\n');
			await sleep(10);
			socket.write('GET k\r\n');
			await replies(2);
		});
		expect(counts).toEqual({ trips: 1, pings: 0 });
	});

	it('counts two connections waiting at the same time twice', async () => {
		const first = await connect();
		const second = await connect();
		const before = proxy.roundTrips;
		first.socket.write('PING\r\n');
		second.socket.write('PING\r\n');
		await Promise.all([first.replies(1), second.replies(1)]);
		expect(proxy.roundTrips - before).toBe(2);
	});
});
