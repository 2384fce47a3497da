// The fan-curve editor: an SVG of speed against temperature whose points
// can be dragged (pointer events, captured), moved with the arrow keys
// (shift: by 5), removed with Delete, with the live temperature of a
// chosen sensor marked on the curve.  The maths is in lib/curve.js.
import { useRef, useState } from 'preact/hooks';
import { html } from '../html.js';
import { movePoint, keyMove, removePoint, speedAt } from '../lib/curve.js';

const W = 560, H = 300, PAD = { l: 44, r: 14, t: 14, b: 34 };

export function CurveEditor({ points, onChange, liveTemp = null, label = 'Fan curve' }) {
	const svg = useRef(null);
	const [sel, setSel] = useState(0);
	const drag = useRef(null);
	const tLo = Math.min(20, ...points.map((p) => p[0])), tHi = Math.max(100, ...points.map((p) => p[0]));
	const x = (t) => PAD.l + ((t - tLo) / (tHi - tLo)) * (W - PAD.l - PAD.r);
	const y = (s) => H - PAD.b - (s / 100) * (H - PAD.t - PAD.b);
	const toData = (ev) => {
		const m = svg.current.getScreenCTM().inverse();
		const pt = new DOMPoint(ev.clientX, ev.clientY).matrixTransform(m);
		return [tLo + ((pt.x - PAD.l) / (W - PAD.l - PAD.r)) * (tHi - tLo), ((H - PAD.b - pt.y) / (H - PAD.t - PAD.b)) * 100];
	};
	const down = (i) => (ev) => {
		ev.preventDefault();
		ev.currentTarget.setPointerCapture(ev.pointerId);
		ev.currentTarget.focus();
		drag.current = i;
		setSel(i);
	};
	const move = (ev) => {
		if (drag.current == null) return;
		const [t, s] = toData(ev);
		onChange(movePoint(points, drag.current, t, s));
	};
	const up = () => { drag.current = null; };
	const key = (i) => (ev) => {
		if (ev.key === 'Delete' || ev.key === 'Backspace') {
			ev.preventDefault();
			onChange(removePoint(points, i));
			setSel(Math.max(0, i - 1));
			return;
		}
		const next = keyMove(points, i, ev.key, ev.shiftKey);
		if (next) { ev.preventDefault(); onChange(next); }
	};
	const ticksT = [];
	for (let t = Math.ceil(tLo / 10) * 10; t <= tHi; t += 10) ticksT.push(t);
	const path = points.map((p, i) => `${i ? 'L' : 'M'}${x(p[0]).toFixed(1)} ${y(p[1]).toFixed(1)}`).join('')
		+ (points.length ? `L${x(tHi)} ${y(points[points.length - 1][1])}` : '');
	const head = points.length ? `M${x(tLo)} ${y(points[0][1])}L${x(points[0][0])} ${y(points[0][1])}` : '';
	const live = liveTemp != null && Number.isFinite(liveTemp) ? { t: liveTemp, s: speedAt(points, liveTemp) } : null;
	return html`
		<svg ref=${svg} class="curve" viewBox=${`0 0 ${W} ${H}`} role="group" aria-label=${`${label}: speed in percent against temperature in °C; each point is adjustable with the arrow keys`}
			onPointerMove=${move} onPointerUp=${up} onPointerCancel=${up}>
			${[0, 25, 50, 75, 100].map((s) => html`<line class="gridline" x1=${PAD.l} x2=${W - PAD.r} y1=${y(s)} y2=${y(s)} /><text class="tick" x=${PAD.l - 6} y=${y(s) + 4} text-anchor="end">${s}%</text>`)}
			${ticksT.map((t) => html`<text class="tick" x=${x(t)} y=${H - PAD.b + 16} text-anchor="middle">${t}°</text>`)}
			<line class="axis" x1=${PAD.l} x2=${W - PAD.r} y1=${y(0)} y2=${y(0)} />
			<path class="line" d=${head + path} />
			${live && html`<line class="live" x1=${x(live.t)} x2=${x(live.t)} y1=${PAD.t} y2=${H - PAD.b} />
				<text class="live-label" x=${x(live.t) + 4} y=${PAD.t + 12}>now ${live.t.toFixed(1)}° → ${Math.round(live.s)}%</text>`}
			${points.map((p, i) => html`<circle class=${`pt ${i === sel ? 'sel' : ''}`} cx=${x(p[0])} cy=${y(p[1])} r="9" tabindex="0" role="slider"
				aria-label=${`point ${i + 1}: ${p[0]} °C, ${p[1]} %`} aria-valuenow=${p[1]} aria-valuemin="0" aria-valuemax="100" aria-valuetext=${`${p[0]} °C at ${p[1]} %`}
				data-point=${i} onPointerDown=${down(i)} onKeyDown=${key(i)} onFocus=${() => setSel(i)} />`)}
		</svg>`;
}
