// A small trend line of an agent's hottest temperature (its last frames).
import { html } from '../html.js';

export function Sparkline({ values, len, width = 72, height = 20 }) {
	if (len < 2) return html`<svg class="spark" width=${width} height=${height} aria-hidden="true"></svg>`;
	let lo = Infinity, hi = -Infinity;
	for (let i = 0; i < len; i++) { lo = Math.min(lo, values[i]); hi = Math.max(hi, values[i]); }
	const span = hi - lo || 1;
	let d = '';
	for (let i = 0; i < len; i++) {
		const x = (i / (len - 1)) * (width - 2) + 1;
		const y = height - 2 - ((values[i] - lo) / span) * (height - 4);
		d += `${i ? 'L' : 'M'}${x.toFixed(1)} ${y.toFixed(1)}`;
	}
	return html`<svg class="spark" width=${width} height=${height} aria-hidden="true"><path d=${d} /></svg>`;
}
