/**
 * Small statistics and formatting helpers shared by every part of the benchmark.
 */

/** The median of `values` (NaN when empty). */
export const median = (values: readonly number[]): number => {
	if (values.length === 0) return Number.NaN;
	const sorted = [...values].sort((a, b) => a - b);
	const middle = sorted.length >> 1;
	return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};

/** The nearest-rank `p`-th percentile (0 < p ≤ 100) of values already sorted ascending. */
export const percentileOfSorted = (sorted: ArrayLike<number>, p: number): number => {
	if (sorted.length === 0) return Number.NaN;
	const rank = Math.ceil((p / 100) * sorted.length);
	return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
};

/** p50, p99 and the maximum of `samples` (the array is sorted in place). */
export const latencySummary = (samples: Float64Array | number[]): { p50: number; p99: number; max: number } => {
	const sorted = samples instanceof Float64Array ? samples.sort() : samples.sort((a, b) => a - b);
	return {
		p50: percentileOfSorted(sorted, 50),
		p99: percentileOfSorted(sorted, 99),
		max: sorted.length ? sorted[sorted.length - 1]! : Number.NaN,
	};
};

/** `1234567` → `1,234,567`; `digits` decimals. */
export const formatNumber = (value: number, digits = 0): string =>
	Number.isFinite(value)
		? value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
		: '–';

/** Milliseconds with a precision that suits loopback latencies. */
export const formatMs = (ms: number): string => {
	if (!Number.isFinite(ms)) return '–';
	if (ms < 10) return ms.toFixed(2);
	if (ms < 100) return ms.toFixed(1);
	return ms.toFixed(0);
};

/** A Markdown table; `align` per column, `'r'` for numbers. */
export const markdownTable = (
	header: readonly string[],
	rows: readonly (readonly string[])[],
	align?: string,
): string => {
	const alignments = header.map((_, i) => (align?.[i] === 'r' ? '---:' : '---'));
	const line = (cells: readonly string[]) => `| ${cells.join(' | ')} |`;
	return [line(header), line(alignments), ...rows.map(line)].join('\n');
};
