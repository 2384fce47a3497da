// History: the ranges the picker offers, which data the server reads for a
// span (the rule of pankha.history_source: raw frames up to 2 hours, the
// 1-minute rollup up to 3 days, else the 1-hour rollup) with the resolution
// to ask the API for (its buckets; none for raw frames), and the rows of
// the history endpoint turned into the column arrays uPlot draws.

export const RANGES = [
	{ key: '15m', label: '15 min', ms: 15 * 60e3 },
	{ key: '1h', label: '1 h', ms: 3600e3 },
	{ key: '6h', label: '6 h', ms: 6 * 3600e3 },
	{ key: '24h', label: '24 h', ms: 24 * 3600e3 },
	{ key: '7d', label: '7 d', ms: 7 * 86400e3 },
	{ key: '30d', label: '30 d', ms: 30 * 86400e3 },
];

export function resolutionFor(fromMs, toMs) {
	const span = toMs - fromMs;
	if (span <= 2 * 3600e3) return { source: 'raw', label: 'every frame (raw)' };
	if (span <= 3 * 86400e3) return { source: '1m', label: '1-minute rollup (min–max band)', seconds: 60 };
	return { source: '1h', label: '1-hour rollup (min–max band)', seconds: 3600 };
}

// [{bucket, min, max, avg, samples}] → [x seconds, avg, min, max] as typed arrays.
export function toColumns(rows) {
	const n = rows.length;
	const x = new Float64Array(n), avg = new Float64Array(n), lo = new Float64Array(n), hi = new Float64Array(n);
	for (let i = 0; i < n; i++) {
		const r = rows[i];
		x[i] = Date.parse(r.bucket) / 1000;
		avg[i] = r.avg ?? NaN;
		lo[i] = r.min ?? NaN;
		hi[i] = r.max ?? NaN;
	}
	return [x, avg, lo, hi];
}

// Median spacing of buckets in seconds (what the chart's resolution really is).
export function bucketSpacing(x) {
	if (x.length < 2) return null;
	const d = [];
	for (let i = 1; i < x.length; i++) d.push(x[i] - x[i - 1]);
	d.sort((a, b) => a - b);
	return d[d.length >> 1];
}
