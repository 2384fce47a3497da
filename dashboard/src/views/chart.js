// A history chart: uPlot with the average as a line and the min–max band
// of the rollups, a range picker (relative ranges and a custom one), drag
// to zoom (the zoomed span becomes the custom range and is fetched at its
// own resolution), the resolution shown, a table alternative, and a cursor
// shared with the other charts of the page.  New frames are appended live
// while the range ends now and is read from raw frames, at most once per
// animation frame and only while the chart is on screen.
import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import { html } from '../html.js';
import { api, onFrame, paused } from '../store.js';
import { RANGES, resolutionFor, toColumns, bucketSpacing } from '../lib/history.js';
import { fmtTime } from '../lib/format.js';

// the most the API gives (the 1-minute rollup of 3 days fits)
const MAX_POINTS = 5000;
const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
const toLocalInput = (ms) => { const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000); return d.toISOString().slice(0, 16); };

export function HistoryChart({ agentId, series, unit, label, pick }) {
	const [range, setRange] = useState({ key: '15m', from: null, to: null });
	const [rows, setRows] = useState(null);
	const [error, setError] = useState(null);
	const [custom, setCustom] = useState({ from: '', to: '' });
	const el = useRef(null);
	const plot = useRef(null);
	const cols = useRef(null);
	const visible = useRef(true);
	const pending = useRef(false);

	const span = () => {
		if (range.key === 'custom') return [range.from, range.to];
		const r = RANGES.find((x) => x.key === range.key);
		const now = Date.now();
		return [now - r.ms, now];
	};

	useEffect(() => {
		if (!series) return;
		let cancelled = false;
		const [from, to] = span();
		setError(null);
		api.history(agentId, series, new Date(from), new Date(to), resolutionFor(from, to).seconds, MAX_POINTS).then(
			(r) => { if (!cancelled) setRows(r); },
			(e) => { if (!cancelled) { setRows([]); setError(e.message); } });
		return () => { cancelled = true; };
	}, [agentId, series, range]);

	// (re)build the plot when the data set changes
	useEffect(() => {
		if (!rows || !el.current) return;
		const [x, avg, lo, hi] = toColumns(rows);
		cols.current = { x: Array.from(x), avg: Array.from(avg), lo: Array.from(lo), hi: Array.from(hi) };
		const node = el.current;
		const width = node.clientWidth || 600;
		const opts = {
			width, height: 240,
			cursor: { sync: { key: `pankha-${agentId}` }, drag: { x: true, y: false } },
			select: { show: true },
			legend: { live: true },
			scales: { x: { time: true } },
			axes: [
				{ stroke: css('--muted'), grid: { stroke: css('--line') }, ticks: { stroke: css('--line') } },
				{ stroke: css('--muted'), grid: { stroke: css('--line') }, ticks: { stroke: css('--line') }, size: 52,
					values: (u, v) => v.map((n) => `${n}${unit === '°C' ? '°' : ''}`) },
			],
			series: [
				{ value: (u, v) => (v == null ? '–' : new Date(v * 1000).toLocaleString()) },
				{ label: `${label} (avg)`, stroke: css('--chart-1'), width: 2, value: (u, v) => (v == null || Number.isNaN(v) ? '–' : `${v.toFixed(1)} ${unit}`) },
				{ label: 'min', stroke: 'transparent', value: (u, v) => (v == null || Number.isNaN(v) ? '–' : `${v.toFixed(1)}`) },
				{ label: 'max', stroke: 'transparent', value: (u, v) => (v == null || Number.isNaN(v) ? '–' : `${v.toFixed(1)}`) },
			],
			bands: [{ series: [3, 2], fill: css('--chart-band') }],
			hooks: {
				setSelect: [(u) => {
					if (u.select.width < 5) return;
					const from = u.posToVal(u.select.left, 'x') * 1000;
					const to = u.posToVal(u.select.left + u.select.width, 'x') * 1000;
					u.setSelect({ left: 0, width: 0 }, false);
					setCustom({ from: toLocalInput(from), to: toLocalInput(to) });
					setRange({ key: 'custom', from: Math.round(from), to: Math.round(to) });
				}],
			},
		};
		const c = cols.current;
		plot.current?.destroy();
		plot.current = new uPlot(opts, [c.x, c.avg, c.lo, c.hi], node);
		node.dataset.draws = '0';	// live redraws, for the test: none while off screen
		const ro = new ResizeObserver(() => plot.current && plot.current.setSize({ width: node.clientWidth || width, height: 240 }));
		ro.observe(node);
		const io = new IntersectionObserver((entries) => { visible.current = entries[0].isIntersecting; });
		io.observe(node);
		return () => { ro.disconnect(); io.disconnect(); plot.current?.destroy(); plot.current = null; };
	}, [rows]);

	// live append for raw ranges that end now
	useEffect(() => {
		const [from, to] = span();
		if (range.key === 'custom' || resolutionFor(from, to).source !== 'raw') return;
		return onFrame((id, frame) => {
			if (id !== agentId || !cols.current || paused.value) return;
			const v = pick(frame, series);
			if (v == null) return;
			const c = cols.current;
			const t = (frame.timestamp || Date.now()) / 1000;
			if (c.x.length && t <= c.x[c.x.length - 1]) return;
			c.x.push(t); c.avg.push(v); c.lo.push(v); c.hi.push(v);
			const cut = t - (to - from) / 1000;
			while (c.x.length && c.x[0] < cut) { c.x.shift(); c.avg.shift(); c.lo.shift(); c.hi.shift(); }
			if (pending.current || !visible.current) return;
			pending.current = true;
			requestAnimationFrame(() => {
				pending.current = false;
				if (!plot.current) return;
				plot.current.setData([c.x, c.avg, c.lo, c.hi]);
				el.current.dataset.draws = String(Number(el.current.dataset.draws || 0) + 1);
			});
		});
	}, [agentId, series, range, rows]);

	const [from, to] = span();
	const res = resolutionFor(from, to);
	const spacing = rows && rows.length > 1 ? bucketSpacing(toColumns(rows)[0]) : null;
	const applyCustom = (e) => {
		e.preventDefault();
		const f = Date.parse(custom.from), t = Date.parse(custom.to);
		if (Number.isFinite(f) && Number.isFinite(t) && f < t) setRange({ key: 'custom', from: f, to: t });
		else setError('choose a start before the end');
	};
	return html`
		<div class="chart-block" data-series=${series} data-points=${rows ? rows.length : ''} data-spacing=${spacing ?? ''} data-source=${res.source}>
			<div class="ranges" role="group" aria-label=${`Range of the ${label} chart`}>
				${RANGES.map((r) => html`<button type="button" aria-pressed=${range.key === r.key} data-range=${r.key}
					onClick=${() => setRange({ key: r.key, from: null, to: null })}>${r.label}</button>`)}
				<button type="button" aria-pressed=${range.key === 'custom'} onClick=${() => { setCustom({ from: toLocalInput(from), to: toLocalInput(to) }); setRange({ key: 'custom', from, to }); }}>custom</button>
			</div>
			${range.key === 'custom' && html`
				<form class="toolbar" onSubmit=${applyCustom}>
					<label class="field"><span>From</span><input type="datetime-local" value=${custom.from} onInput=${(e) => setCustom({ ...custom, from: e.currentTarget.value })} /></label>
					<label class="field"><span>To</span><input type="datetime-local" value=${custom.to} onInput=${(e) => setCustom({ ...custom, to: e.currentTarget.value })} /></label>
					<button type="submit">Show</button>
				</form>`}
			<div class="chart-meta small muted">
				<span>resolution: <strong class="resolution">${res.label}</strong>${spacing ? ` · buckets ${spacing >= 60 ? `${Math.round(spacing / 60)} min` : `${Math.round(spacing)} s`} apart` : ''}</span>
				<span>${rows ? `${rows.length} points` : 'loading…'}</span>
				<span>drag across the chart to zoom</span>
			</div>
			${error && html`<p class="error" role="alert">${error}</p>`}
			<div class="chart" ref=${el} role="img" aria-label=${`${label} history chart; the table below has the same data`}></div>
			${rows && rows.length === 0 && !error && html`<p class="muted">No data in this range.</p>`}
			<details>
				<summary>Table of this chart</summary>
				<div class="table-wrap">
					<table class="compact">
						<caption class="sr-only">${label} history</caption>
						<thead><tr><th scope="col">time</th><th scope="col">min</th><th scope="col">avg</th><th scope="col">max</th><th scope="col">samples</th></tr></thead>
						<tbody>${(rows || []).slice(-500).reverse().map((r) => html`<tr><td>${fmtTime(r.bucket)}</td><td>${r.min?.toFixed(1)}</td><td>${r.avg?.toFixed(1)}</td><td>${r.max?.toFixed(1)}</td><td>${r.samples}</td></tr>`)}</tbody>
					</table>
				</div>
			</details>
		</div>`;
}
