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
const MARGIN = { left: 64, right: 76, top: 92, bottom: 52 };
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

type Attributes = Record<string, string | number>;

/** `<name a="1" …/>`, or with `content` (escaped) inside. Numbers are rounded to 0.1. */
const element = (name: string, attributes: Attributes, content?: string): string => {
	const list = Object.entries(attributes)
		.map(([key, value]) => `${key}="${typeof value === 'number' ? Number(value.toFixed(1)) : escapeXml(value)}"`)
		.join(' ');
	return content === undefined ? `<${name} ${list}/>` : `<${name} ${list}>${escapeXml(content)}</${name}>`;
};

/** A round step (1, 2 or 5 × 10^n) that splits `max` in about four. */
const niceStep = (max: number): number => {
	const rough = Math.max(1, max) / 4;
	const power = 10 ** Math.floor(Math.log10(rough));
	return [1, 2, 5, 10].map((step) => step * power).find((candidate) => candidate >= rough)!;
};

export const failoverSvg = (result: FailoverResult): string => {
	const { options, buckets } = result;
	const durationMs = options.durationS * 1000;
	const budgetMs = result.deadlineMs + 50;
	const plotBottom = MARGIN.top + PLOT_HEIGHT;
	const plotRight = MARGIN.left + PLOT_WIDTH;
	const middleY = MARGIN.top + PLOT_HEIGHT / 2;
	const x = (ms: number) => MARGIN.left + (ms / durationMs) * PLOT_WIDTH;

	const highest = Math.max(1, ...buckets.map((b) => b.okRedis + b.okMemory + b.failed));
	const countStep = niceStep(highest);
	// Headroom above the bars, so that they stay clear of the latency budget line.
	const maxCount = countStep * Math.ceil((highest * 1.4) / countStep);
	const yCount = (count: number) => plotBottom - (count / maxCount) * PLOT_HEIGHT;
	// Latency on a log scale, from 1 ms to a power of ten above the worst and the budget.
	const latencyTop = 10 ** Math.ceil(Math.log10(Math.max(budgetMs, ...buckets.map((b) => b.worstMs)) * 1.05));
	const yLatency = (ms: number) => plotBottom - (Math.log10(Math.max(1, ms)) / Math.log10(latencyTop)) * PLOT_HEIGHT;

	const parts: string[] = [];
	const add = (name: string, attributes: Attributes, content?: string) =>
		parts.push(element(name, attributes, content));
	const seconds = (ms: number) => (ms / 1000).toFixed(1);

	add('rect', { width: WIDTH, height: HEIGHT, fill: '#ffffff' });
	add(
		'text',
		{ x: MARGIN.left, y: 24, 'font-size': 16, 'font-weight': 'bold' },
		`ResilientStore under steady load (${options.ratePerS} req/s): ` +
			`Redis killed at ${seconds(result.killedAtMs)} s, restarted at ${seconds(result.restartedAtMs)} s`,
	);

	// The outage, shaded.
	add('rect', {
		x: x(result.killedAtMs),
		y: MARGIN.top,
		width: x(result.restartedAtMs) - x(result.killedAtMs),
		height: PLOT_HEIGHT,
		fill: COLORS.outage,
	});

	// Grid and left axis: requests per bucket.
	for (let count = 0; count <= maxCount; count += countStep) {
		const y = yCount(count);
		add('line', { x1: MARGIN.left, x2: plotRight, y1: y, y2: y, stroke: COLORS.grid });
		add('text', { x: MARGIN.left - 8, y: y + 4, 'text-anchor': 'end' }, String(count));
	}

	add(
		'text',
		{ x: 18, y: middleY, 'text-anchor': 'middle', transform: `rotate(-90 18 ${middleY})` },
		`requests per ${options.bucketMs} ms (by send time)`,
	);

	// Right axis: worst latency, log scale.
	for (let ms = 1; ms <= latencyTop; ms *= 10) {
		const y = yLatency(ms);
		add('line', { x1: plotRight, x2: plotRight + 5, y1: y, y2: y, stroke: COLORS.latency });
		add('text', { x: plotRight + 8, y: y + 4 }, `${ms} ms`);
	}

	const rightLabelX = WIDTH - 14;
	add(
		'text',
		{ x: rightLabelX, y: middleY, 'text-anchor': 'middle', transform: `rotate(90 ${rightLabelX} ${middleY})` },
		'worst latency per bucket (log scale)',
	);

	// X axis: seconds.
	for (let s = 0; s <= options.durationS; s++) {
		const px = x(s * 1000);
		add('line', { x1: px, x2: px, y1: plotBottom, y2: plotBottom + 5, stroke: COLORS.text });
		add('text', { x: px, y: plotBottom + 20, 'text-anchor': 'middle' }, String(s));
	}

	add(
		'text',
		{ x: MARGIN.left + PLOT_WIDTH / 2, y: HEIGHT - 8, 'text-anchor': 'middle' },
		'time since the load started (s)',
	);

	// Stacked bars.
	const slot = PLOT_WIDTH / buckets.length;
	const barWidth = Math.max(1, slot * 0.8);
	for (const bucket of buckets) {
		const px = x(bucket.startMs) + (slot - barWidth) / 2;
		let below = 0;
		for (const [count, fill] of [
			[bucket.okRedis, COLORS.redis],
			[bucket.okMemory, COLORS.memory],
			[bucket.failed, COLORS.failed],
		] as const) {
			if (count === 0) continue;
			const top = yCount(below + count);
			add('rect', { x: px, y: top, width: barWidth, height: yCount(below) - top, fill });
			below += count;
		}
	}

	// Latency budget and worst-latency line.
	const budgetY = yLatency(budgetMs);
	add('line', {
		x1: MARGIN.left,
		x2: plotRight,
		y1: budgetY,
		y2: budgetY,
		stroke: COLORS.budget,
		'stroke-dasharray': '6 4',
	});
	add('text', { x: MARGIN.left + 6, y: budgetY - 5, fill: COLORS.budget }, `deadline + 50 ms = ${budgetMs} ms`);
	const points = buckets.map(
		(bucket) => `${x(bucket.startMs + options.bucketMs / 2).toFixed(1)},${yLatency(bucket.worstMs).toFixed(1)}`,
	);
	add('polyline', { points: points.join(' '), fill: 'none', stroke: COLORS.latency, 'stroke-width': 1.8 });

	// Events, on two rows of labels above the plot.
	const marker = (atMs: number | undefined, label: string, color: string, row: number, dash: string) => {
		if (atMs === undefined || !Number.isFinite(atMs)) return;
		const px = x(atMs);
		const labelY = MARGIN.top - 6 - row * 15;
		add('line', {
			x1: px,
			x2: px,
			y1: labelY + 2,
			y2: plotBottom,
			stroke: color,
			'stroke-width': 1.5,
			'stroke-dasharray': dash,
		});
		add('text', { x: px + 4, y: labelY, fill: color }, label);
	};

	const recoverAfter = result.restartToRecoverMs === undefined ? '' : ` (+${Math.round(result.restartToRecoverMs)} ms)`;
	marker(result.killedAtMs, 'Redis killed', COLORS.failed, 1, '4 3');
	marker(result.fallbackAtMs, "'fallback'", COLORS.memory, 0, '2 2');
	marker(result.restartedAtMs, 'Redis back', COLORS.recover, 1, '4 3');
	marker(result.recoverAtMs, `'recover'${recoverAfter}`, COLORS.redis, 0, '2 2');

	// Legend.
	const legend: Array<[string, string, 'box' | 'line']> = [
		['2xx from Redis', COLORS.redis, 'box'],
		['2xx from memory', COLORS.memory, 'box'],
		['non-2xx or failed', COLORS.failed, 'box'],
		['worst latency', COLORS.latency, 'line'],
	];
	let legendX = MARGIN.left;
	for (const [label, color, kind] of legend) {
		if (kind === 'box') add('rect', { x: legendX, y: 36, width: 12, height: 12, fill: color });
		else add('line', { x1: legendX, x2: legendX + 12, y1: 42, y2: 42, stroke: color, 'stroke-width': 2 });
		add('text', { x: legendX + 17, y: 47 }, label);
		legendX += 30 + label.length * 7;
	}

	add('rect', {
		x: MARGIN.left,
		y: MARGIN.top,
		width: PLOT_WIDTH,
		height: PLOT_HEIGHT,
		fill: 'none',
		stroke: COLORS.text,
	});

	const root = element('svg', {
		xmlns: 'http://www.w3.org/2000/svg',
		width: WIDTH,
		height: HEIGHT,
		viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
		'font-family': 'Helvetica, Arial, sans-serif',
		'font-size': 12,
		fill: COLORS.text,
	});
	return [root.replace(/\/>$/, '>'), ...parts.map((part) => `\t${part}`), '</svg>', ''].join('\n');
};
