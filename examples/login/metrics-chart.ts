/**
 * Draws the README's picture of the metrics: the login example on a private redis-server,
 * with members browsing and a password-guessing script, scraped at GET /metrics every
 * 500 ms while Redis is killed and restarted; the samples are plotted as the panels of
 * examples/grafana-dashboard.json plot them (same queries, computed here), and the page is
 * saved as a PNG by a real headless Chromium (/usr/bin/chromium).
 *
 *   npm run metrics-chart        # writes examples/login/screenshots/metrics.png
 */
import { join } from 'node:path';
import { ResilientStore, silentLogger } from '../../lib/index.js';
import { launchChromium } from '../../__tests__/helpers/browser.js';
import { RedisServer } from '../../__tests__/helpers/redis-server.js';
import { connected, listen, sleep } from '../../__tests__/helpers/common.js';
import { createLoginApp, userOfSession } from './app.js';

const OUTPUT = join(__dirname, 'screenshots', 'metrics.png');
const SCRAPE_MS = 500;
const KILL_AT_S = 10;
const RESTART_AT_S = 20;
const END_AT_S = 32;
const MEMBERS = ['ann', 'ben', 'cid', 'dee'];
const PASSWORD = 'members only';

/** One scrape: every sample by its series (`name{labels}`), and when it was taken (seconds from the start). */
interface Scrape {
	readonly at: number;
	readonly series: ReadonlyMap<string, number>;
}

/** Reads the Prometheus text format: `name{labels} value` per line, comments skipped. */
const parse = (text: string): Map<string, number> => {
	const series = new Map<string, number>();
	for (const line of text.split('\n')) {
		if (line === '' || line.startsWith('#')) continue;
		const space = line.lastIndexOf(' ');
		series.set(line.slice(0, space), Number(line.slice(space + 1)));
	}

	return series;
};

const P = 'resilient_session_';

/** The traffic: members browsing (each visit writes the session), and a script guessing passwords. */
const traffic = (url: string) => {
	let running = true;
	const signIn = async (username: string, password: string): Promise<Response> =>
		fetch(`${url}/login`, {
			method: 'POST',
			headers: { 'content-type': 'application/x-www-form-urlencoded' },
			body: new URLSearchParams({ username, password }),
			redirect: 'manual',
		});

	const member = async (name: string) => {
		const cookie = (await signIn(name, PASSWORD)).headers.getSetCookie()[0]!.split(';')[0]!;
		while (running) {
			await (await fetch(`${url}/members`, { headers: { cookie } })).arrayBuffer();
			await sleep(50);
		}
	};

	const guesser = async () => {
		for (let guess = 0; running; guess++) {
			await (await signIn(`user${guess % 12}`, `guess ${guess}`)).arrayBuffer();
			await sleep(100);
		}
	};

	const loops = [...MEMBERS.map(member), guesser()];
	return async () => {
		running = false;
		await Promise.all(loops);
	};
};

/** A series of points (seconds, value); `null` values leave a gap. */
type Line = { readonly label: string; readonly color: string; readonly points: Array<[number, number | null]> };

const sum = (scrape: Scrape, prefix: string): number => {
	let total = 0;
	for (const [key, value] of scrape.series) if (key.startsWith(prefix)) total += value;
	return total;
};

/** Per-second rate of a counter between scrapes `window` apart, as `rate()` does. */
const rate = (scrapes: Scrape[], series: string, window = 4): Array<[number, number | null]> =>
	scrapes.slice(window).map((scrape, index) => {
		const before = scrapes[index]!;
		return [scrape.at, (sum(scrape, series) - sum(before, series)) / (scrape.at - before.at)];
	});

/** `histogram_quantile(q, sum by (le) (rate(..._bucket[window])))`, in milliseconds; a gap when nothing was observed. */
const quantile = (scrapes: Scrape[], q: number, window = 4): Array<[number, number | null]> => {
	const name = `${P}redis_operation_duration_seconds_bucket{`;
	const buckets = (scrape: Scrape) => {
		const byBound = new Map<number, number>();
		for (const [key, value] of scrape.series) {
			if (!key.startsWith(name)) continue;
			const le = /le="([^"]+)"/.exec(key)![1]!;
			const bound = le === '+Inf' ? Infinity : Number(le);
			byBound.set(bound, (byBound.get(bound) ?? 0) + value);
		}

		return byBound;
	};

	return scrapes.slice(window).map((scrape, index) => {
		const now = buckets(scrape);
		const before = buckets(scrapes[index]!);
		const bounds = [...now.keys()].sort((a, b) => a - b);
		const counts = bounds.map((bound) => now.get(bound)! - (before.get(bound) ?? 0));
		const total = counts.at(-1) ?? 0;
		if (total === 0) return [scrape.at, null];
		const rank = q * total;
		const at = counts.findIndex((count) => count >= rank);
		const upper = bounds[at]!;
		const lower = at === 0 ? 0 : bounds[at - 1]!;
		if (upper === Infinity) return [scrape.at, lower * 1000];
		const below = at === 0 ? 0 : counts[at - 1]!;
		const share = (rank - below) / (counts[at]! - below || 1);
		return [scrape.at, (lower + (upper - lower) * share) * 1000];
	});
};

const gauge = (scrapes: Scrape[], series: string): Array<[number, number | null]> =>
	scrapes.map((scrape) => [scrape.at, sum(scrape, series)]);

/** One panel: a title and lines on a shared time axis, with the kill and the restart marked. */
const panel = (title: string, lines: Line[], options: { unit?: string; step?: boolean } = {}): string => {
	const width = 470;
	const height = 190;
	const left = 44;
	const top = 30;
	const plotW = width - left - 14;
	const plotH = height - top - 40;
	const values = lines.flatMap((line) => line.points.map(([, value]) => value).filter((value): value is number => value !== null));
	const max = Math.max(1, ...values) * 1.1;
	const x = (s: number) => left + (s / END_AT_S) * plotW;
	const y = (value: number) => top + plotH - (value / max) * plotH;
	const ticks = [0, max / 2, max].map(
		(value) =>
			`<line x1="${left}" x2="${left + plotW}" y1="${y(value)}" y2="${y(value)}" class="grid"/>` +
			`<text x="${left - 6}" y="${y(value) + 4}" class="tick" text-anchor="end">${value >= 10 ? Math.round(value) : value.toFixed(1)}</text>`,
	);
	const seconds = [0, 5, 10, 15, 20, 25, 30].map(
		(s) => `<text x="${x(s)}" y="${top + plotH + 16}" class="tick" text-anchor="middle">${s} s</text>`,
	);
	const marks = [
		[KILL_AT_S, 'Redis killed'],
		[RESTART_AT_S, 'restarted'],
	].map(
		([s, label]) =>
			`<line x1="${x(s as number)}" x2="${x(s as number)}" y1="${top}" y2="${top + plotH}" class="mark"/>` +
			`<text x="${x(s as number) + 4}" y="${top + 11}" class="marktext">${label}</text>`,
	);
	const paths = lines.map((line) => {
		let d = '';
		let pen = 'M';
		let previous: number | undefined;
		for (const [s, value] of line.points) {
			if (value === null) {
				pen = 'M';
				continue;
			}

			if (options.step && previous !== undefined && pen === 'L') d += `L${x(s).toFixed(1)},${y(previous).toFixed(1)}`;
			d += `${pen}${x(s).toFixed(1)},${y(value).toFixed(1)}`;
			pen = 'L';
			previous = value;
		}

		return `<path d="${d}" fill="none" stroke="${line.color}" stroke-width="2"/>`;
	});
	const legend = lines.map(
		(line, index) =>
			`<rect x="${left + index * 150}" y="${height - 14}" width="10" height="3" fill="${line.color}"/>` +
			`<text x="${left + 14 + index * 150}" y="${height - 9}" class="tick">${line.label}</text>`,
	);
	return (
		`<svg width="${width}" height="${height}" class="panel"><text x="10" y="19" class="title">${title}` +
		`${options.unit ? ` <tspan class="unit">(${options.unit})</tspan>` : ''}</text>` +
		[...ticks, ...seconds, ...marks, ...paths, ...legend].join('') +
		'</svg>'
	);
};

const page = (scrapes: Scrape[]): string => {
	const panels = [
		panel(
			'Backend',
			[
				{ label: 'redis', color: '#73bf69', points: gauge(scrapes, `${P}backend{backend="redis"}`) },
				{ label: 'memory', color: '#ff9830', points: gauge(scrapes, `${P}backend{backend="memory"}`) },
			],
			{ step: true },
		),
		panel(
			'Failovers and recoveries',
			[
				{ label: 'failovers_total', color: '#f2495c', points: gauge(scrapes, `${P}failovers_total`) },
				{ label: 'recoveries_total', color: '#5794f2', points: gauge(scrapes, `${P}recoveries_total`) },
			],
			{ step: true },
		),
		panel(
			'Redis command latency',
			[
				{ label: 'p50', color: '#5794f2', points: quantile(scrapes, 0.5) },
				{ label: 'p99', color: '#b877d9', points: quantile(scrapes, 0.99) },
			],
			{ unit: 'ms' },
		),
		panel(
			'Rate-limit decisions',
			[
				{ label: 'allowed', color: '#73bf69', points: rate(scrapes, `${P}rate_limit_decisions_total{outcome="allowed"}`) },
				{ label: 'limited', color: '#f2495c', points: rate(scrapes, `${P}rate_limit_decisions_total{outcome="limited"}`) },
			],
			{ unit: 'per second' },
		),
		panel(
			'Logins',
			[
				{ label: 'failed', color: '#ff9830', points: rate(scrapes, `${P}login_attempts_total{outcome="failure"}`) },
				{ label: 'locked out', color: '#f2495c', points: rate(scrapes, `${P}login_attempts_total{outcome="locked"}`) },
				{ label: 'lockouts', color: '#b877d9', points: rate(scrapes, `${P}lockouts_total`) },
			],
			{ unit: 'per second' },
		),
		panel(
			'Write-back',
			[
				{ label: 'pending sessions', color: '#ff9830', points: gauge(scrapes, `${P}write_back_pending_sessions`) },
				{ label: 'sessions in memory', color: '#5794f2', points: gauge(scrapes, `${P}memory_sessions`) },
			],
			{ step: true },
		),
	];
	return `<!doctype html><html><head><style>
		body { margin: 0; background: #111217; font: 12px sans-serif; }
		main { display: grid; grid-template-columns: 470px 470px; gap: 8px; padding: 8px; }
		.panel { background: #181b1f; border: 1px solid #2c3235; border-radius: 2px; }
		.title { fill: #ccccdc; font-weight: 600; font-size: 13px; }
		.unit { fill: #8e8e99; font-weight: 400; }
		.tick { fill: #8e8e99; font-size: 11px; }
		.grid { stroke: #2c3235; }
		.mark { stroke: #8e8e99; stroke-dasharray: 4 3; }
		.marktext { fill: #8e8e99; font-size: 10px; }
	</style></head><body><main>${panels.join('')}</main></body></html>`;
};

const main = async () => {
	const redis = await RedisServer.start();
	const store = await connected(new ResilientStore({ url: redis.url, logger: silentLogger, userId: userOfSession }));
	const example = createLoginApp({
		store,
		users: Object.fromEntries(MEMBERS.map((name) => [name, PASSWORD])),
		// A short window, so that the guessing script is limited and let through by turns.
		rateLimit: { windowMs: 5_000, limit: 20 },
	});
	const server = await listen(example.app);
	const started = Date.now();
	const scrapes: Scrape[] = [];
	const stopTraffic = traffic(server.url);
	try {
		let killed = false;
		let restarted = false;
		while (Date.now() - started < END_AT_S * 1000) {
			const at = (Date.now() - started) / 1000;
			scrapes.push({ at, series: parse(await (await fetch(`${server.url}/metrics`)).text()) });
			if (!killed && at >= KILL_AT_S) {
				killed = true;
				await redis.kill();
			}

			if (!restarted && at >= RESTART_AT_S) {
				restarted = true;
				await redis.restart();
			}

			await sleep(SCRAPE_MS - ((Date.now() - started) % SCRAPE_MS));
		}
	} finally {
		await stopTraffic();
		await server.close();
		example.close();
		await store.close();
		await redis.kill();
	}

	const chromium = await launchChromium({ viewport: { width: 972, height: 608 } });
	try {
		const tab = await chromium.context.newPage();
		await tab.setContent(page(scrapes));
		await tab.screenshot({ path: OUTPUT });
		console.info(`examples/login/screenshots/metrics.png (${scrapes.length} scrapes)`);
	} finally {
		await chromium.close();
	}
};

main().catch((error: unknown) => {
	console.error(error);
	process.exit(1);
});
