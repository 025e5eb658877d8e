/**
 * The failover timeline as an SVG chart, written by hand (no chart library): per bucket,
 * stacked bars of successful requests served from Redis and from memory and of failed
 * requests (left axis), the worst latency as a line on a log scale (right axis), the
 * latency budget (deadline + 50 ms) as a dashed line, the outage shaded, and the store's
 * fallback and recover events marked.
 */
import type { FailoverResult } from './failover.js';

const WIDTH = 960;
const HEIGHT = 460;
const MARGIN = { left: 64, right: 76, top: 78, bottom: 52 };
const PLOT_WIDTH = WIDTH - MARGIN.left - MARGIN.right;
const PLOT_HEIGHT = HEIGHT - MARGIN.top - MARGIN.bottom;

const COLORS = {
	redis: '#4c78a8',
	memory: '#f58518',
	failed: '#e45756',
	latency: '#222222',
	budget: '#e45756',
	outage: '#eeeeee',
	grid: '#dddddd',
	recover: '#2f7d32',
	text: '#333333',
};

const escapeXml = (text: string): string => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

const round = (value: number): string => value.toFixed(1);

/** The smallest of 1, 2, 5 × 10^n at least `value`. */
const niceCeiling = (value: number): number => {
	if (value <= 0) return 1;
	const power = 10 ** Math.floor(Math.log10(value));
	return [1, 2, 5, 10].map((step) => step * power).find((candidate) => candidate >= value)!;
};

export const failoverSvg = (result: FailoverResult): string => {
	const { options, buckets } = result;
	const durationMs = options.durationS * 1000;
	const budgetMs = result.deadlineMs + 50;
	const x = (ms: number) => MARGIN.left + (ms / durationMs) * PLOT_WIDTH;
	const maxCount = niceCeiling(Math.max(1, ...buckets.map((b) => b.okRedis + b.okMemory + b.failed)));
	const yCount = (count: number) => MARGIN.top + PLOT_HEIGHT - (count / maxCount) * PLOT_HEIGHT;
	// Latency on a log scale, from 1 ms to a power of ten above the worst and the budget.
	const latencyTop = 10 ** Math.ceil(Math.log10(Math.max(budgetMs, ...buckets.map((b) => b.worstMs)) * 1.05));
	const yLatency = (ms: number) =>
		MARGIN.top + PLOT_HEIGHT - (Math.log10(Math.max(1, ms)) / Math.log10(latencyTop)) * PLOT_HEIGHT;

	const parts: string[] = [];
	const add = (element: string) => parts.push(element);
	const text = (px: number, py: number, content: string, attributes = '') =>
		add(`<text x="${round(px)}" y="${round(py)}" ${attributes}>${escapeXml(content)}</text>`);

	add(`<rect width="${WIDTH}" height="${HEIGHT}" fill="#ffffff"/>`);
	text(
		MARGIN.left,
		24,
		`ResilientStore under steady load (${options.ratePerS} req/s): Redis killed at ${(result.killedAtMs / 1000).toFixed(1)} s, restarted at ${(result.restartedAtMs / 1000).toFixed(1)} s`,
		'font-size="16" font-weight="bold"',
	);

	// The outage, shaded.
	add(
		`<rect x="${round(x(result.killedAtMs))}" y="${MARGIN.top}" width="${round(x(result.restartedAtMs) - x(result.killedAtMs))}" height="${PLOT_HEIGHT}" fill="${COLORS.outage}"/>`,
	);

	// Grid and left axis: requests per bucket.
	for (let i = 0; i <= 4; i++) {
		const count = (maxCount * i) / 4;
		const py = yCount(count);
		add(`<line x1="${MARGIN.left}" x2="${MARGIN.left + PLOT_WIDTH}" y1="${round(py)}" y2="${round(py)}" stroke="${COLORS.grid}"/>`);
		text(MARGIN.left - 8, py + 4, String(Math.round(count)), 'text-anchor="end"');
	}

	text(18, MARGIN.top + PLOT_HEIGHT / 2, `requests per ${options.bucketMs} ms`, `text-anchor="middle" transform="rotate(-90 18 ${MARGIN.top + PLOT_HEIGHT / 2})"`);

	// Right axis: worst latency, log scale.
	for (let ms = 1; ms <= latencyTop; ms *= 10) {
		const py = yLatency(ms);
		add(`<line x1="${MARGIN.left + PLOT_WIDTH}" x2="${MARGIN.left + PLOT_WIDTH + 5}" y1="${round(py)}" y2="${round(py)}" stroke="${COLORS.latency}"/>`);
		text(MARGIN.left + PLOT_WIDTH + 8, py + 4, `${ms} ms`);
	}

	const rightLabelX = WIDTH - 14;
	text(rightLabelX, MARGIN.top + PLOT_HEIGHT / 2, 'worst latency (log scale)', `text-anchor="middle" transform="rotate(90 ${rightLabelX} ${MARGIN.top + PLOT_HEIGHT / 2})"`);

	// X axis: seconds.
	for (let s = 0; s <= options.durationS; s++) {
		const px = x(s * 1000);
		add(`<line x1="${round(px)}" x2="${round(px)}" y1="${MARGIN.top + PLOT_HEIGHT}" y2="${MARGIN.top + PLOT_HEIGHT + 5}" stroke="${COLORS.text}"/>`);
		text(px, MARGIN.top + PLOT_HEIGHT + 20, `${s}`, 'text-anchor="middle"');
	}

	text(MARGIN.left + PLOT_WIDTH / 2, HEIGHT - 8, 'time since the load started (s)', 'text-anchor="middle"');

	// Stacked bars.
	const barWidth = Math.max(1, (PLOT_WIDTH / buckets.length) * 0.8);
	for (const bucket of buckets) {
		const px = x(bucket.startMs) + (PLOT_WIDTH / buckets.length - barWidth) / 2;
		let below = 0;
		for (const [count, color] of [
			[bucket.okRedis, COLORS.redis],
			[bucket.okMemory, COLORS.memory],
			[bucket.failed, COLORS.failed],
		] as const) {
			if (count === 0) continue;
			const top = yCount(below + count);
			add(`<rect x="${round(px)}" y="${round(top)}" width="${round(barWidth)}" height="${round(yCount(below) - top)}" fill="${color}"/>`);
			below += count;
		}
	}

	// Latency budget and worst-latency line.
	const budgetY = yLatency(budgetMs);
	add(`<line x1="${MARGIN.left}" x2="${MARGIN.left + PLOT_WIDTH}" y1="${round(budgetY)}" y2="${round(budgetY)}" stroke="${COLORS.budget}" stroke-dasharray="6 4"/>`);
	text(MARGIN.left + 6, budgetY - 5, `deadline + 50 ms = ${budgetMs} ms`, `fill="${COLORS.budget}"`);
	const points = buckets
		.map((bucket) => `${round(x(bucket.startMs + options.bucketMs / 2))},${round(yLatency(bucket.worstMs))}`)
		.join(' ');
	add(`<polyline points="${points}" fill="none" stroke="${COLORS.latency}" stroke-width="1.8"/>`);

	// Events.
	const marker = (atMs: number | undefined, label: string, color: string, row: number, dash: string) => {
		if (atMs === undefined || !Number.isFinite(atMs)) return;
		const px = x(atMs);
		add(`<line x1="${round(px)}" x2="${round(px)}" y1="${MARGIN.top - 4 - row * 14}" y2="${MARGIN.top + PLOT_HEIGHT}" stroke="${color}" stroke-width="1.5" stroke-dasharray="${dash}"/>`);
		text(px + 4, MARGIN.top - 6 - row * 14, label, `fill="${color}" font-size="12"`);
	};

	marker(result.killedAtMs, 'Redis killed', COLORS.failed, 1, '4 3');
	marker(result.fallbackAtMs, "'fallback'", COLORS.memory, 0, '2 2');
	marker(result.restartedAtMs, 'Redis back', COLORS.recover, 1, '4 3');
	marker(
		result.recoverAtMs,
		`'recover' (+${result.restartToRecoverMs === undefined ? '?' : Math.round(result.restartToRecoverMs)} ms)`,
		COLORS.redis,
		0,
		'2 2',
	);

	// Legend.
	const legend: Array<[string, string, 'box' | 'line']> = [
		['2xx from Redis', COLORS.redis, 'box'],
		['2xx from memory', COLORS.memory, 'box'],
		['non-2xx or failed', COLORS.failed, 'box'],
		['worst latency', COLORS.latency, 'line'],
	];
	let legendX = MARGIN.left;
	for (const [label, color, kind] of legend) {
		if (kind === 'box') add(`<rect x="${legendX}" y="36" width="12" height="12" fill="${color}"/>`);
		else add(`<line x1="${legendX}" x2="${legendX + 12}" y1="42" y2="42" stroke="${color}" stroke-width="2"/>`);
		text(legendX + 17, 47, label);
		legendX += 30 + label.length * 7;
	}

	add(`<rect x="${MARGIN.left}" y="${MARGIN.top}" width="${PLOT_WIDTH}" height="${PLOT_HEIGHT}" fill="none" stroke="${COLORS.text}"/>`);

	return [
		`<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="Helvetica, Arial, sans-serif" font-size="12" fill="${COLORS.text}">`,
		...parts.map((part) => `\t${part}`),
		'</svg>',
		'',
	].join('\n');
};
