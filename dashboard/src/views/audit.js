// The audit log (admins; issue 11's endpoint), filtered by agent, actor,
// action and time, keyset-paged.
import { useState } from 'preact/hooks';
import { html } from '../html.js';
import { api } from '../store.js';
import { fmtTime } from '../lib/format.js';
import { usePaged } from './paged.js';

export function Audit() {
	const [f, setF] = useState({ agent_id: '', actor: '', action: '', from: '' });
	const [applied, setApplied] = useState(f);
	const { rows, error, more } = usePaged((cursor) => api.audit({ ...applied, from: applied.from ? new Date(applied.from) : undefined, cursor }),
		JSON.stringify(applied), (r) => r.entries || r.audit);
	const field = (k, label, type = 'text') => html`<label class="field"><span>${label}</span><input type=${type} value=${f[k]} onInput=${(e) => setF({ ...f, [k]: e.currentTarget.value })} /></label>`;
	return html`
		<main id="main" class="view audit" tabindex="-1">
			<h1>Audit log</h1>
			<form class="toolbar" onSubmit=${(e) => { e.preventDefault(); setApplied(f); }}>
				${field('agent_id', 'Agent')}${field('actor', 'Actor')}${field('action', 'Action')}${field('from', 'Since', 'datetime-local')}
				<button type="submit">Filter</button>
			</form>
			${error && html`<p class="error" role="alert">${error}</p>`}
			<div class="card table-wrap" style="max-height:none"><table>
				<thead><tr><th scope="col">when</th><th scope="col">actor</th><th scope="col">action</th><th scope="col">agent</th><th scope="col">details</th></tr></thead>
				<tbody>${(rows || []).map((a) => html`<tr><td>${fmtTime(a.at ?? a.created_at ?? a.ts)}</td><td>${a.actor}</td><td><code>${a.action}</code></td><td>${a.agent_id ?? '–'}</td>
					<td class="small">${a.details ? JSON.stringify(a.details) : ''}</td></tr>`)}</tbody></table>
				${rows && !rows.length && html`<p class="muted">Nothing matches.</p>`}
			</div>
			${more && html`<button type="button" onClick=${more}>More</button>`}
		</main>`;
}
