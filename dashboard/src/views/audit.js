// The audit log (admins): who did what to which agent, filtered by agent,
// actor, action (a trailing * matches a prefix, e.g. "alert.*") and time,
// keyset-paged.
import { useState } from 'preact/hooks';
import { html } from '../html.js';
import { api, fleet } from '../store.js';
import { fmtWhen, fmtTime } from '../lib/format.js';
import { usePaged } from './paged.js';

const EMPTY = { agent_id: '', actor: '', action: '', from: '', to: '' };
const ACTIONS = ['command.*', 'setting.*', 'alert.*', 'alert_rule.*', 'fan_limits.*', 'profile.*', 'token.*', 'agent.*', 'auth.*'];

function details(d) {
	if (!d || typeof d !== 'object') return '';
	return Object.entries(d).filter(([, v]) => v != null).map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : v}`).join(' · ');
}

const clip = (t, n) => (t.length > n ? `${t.slice(0, n - 1)}…` : t);

export function Audit() {
	const [f, setF] = useState(EMPTY);
	const [applied, setApplied] = useState(EMPTY);
	const { rows, error, more } = usePaged((cursor) => api.audit({ ...applied, from: applied.from ? new Date(applied.from) : undefined,
		to: applied.to ? new Date(applied.to) : undefined, cursor }), JSON.stringify(applied));
	const field = (k, label, type = 'text', extra = {}) => html`<label class="field"><span>${label}</span><input id=${`audit-${k}`} name=${k} type=${type} value=${f[k]} ...${extra} onInput=${(e) => setF({ ...f, [k]: e.currentTarget.value })} /></label>`;
	const active = Object.values(applied).some((v) => v);
	return html`
		<main id="main" class="view audit" tabindex="-1">
			<h1>Audit log</h1>
			<form class="toolbar" onSubmit=${(e) => { e.preventDefault(); setApplied(f); }} aria-label="Filter the audit log">
				${field('agent_id', 'Agent', 'text', { list: 'audit-agents' })}${field('actor', 'Actor')}${field('action', 'Action', 'text', { list: 'audit-actions', placeholder: 'e.g. setting.*' })}
				${field('from', 'Since', 'datetime-local')}${field('to', 'Before', 'datetime-local')}
				<datalist id="audit-agents">${[...fleet.keys()].slice(0, 200).map((id) => html`<option value=${id} />`)}</datalist>
				<datalist id="audit-actions">${ACTIONS.map((a) => html`<option value=${a} />`)}</datalist>
				<div class="actions" style="margin:0"><button type="submit" class="primary">Filter</button>
					${active && html`<button type="button" onClick=${() => { setF(EMPTY); setApplied(EMPTY); }}>Clear</button>`}</div>
			</form>
			${error && html`<p class="error" role="alert">${error}</p>`}
			<div class="card table-wrap stack-wrap" style="max-height:none" tabindex="0" role="region" aria-label="audit log, scrollable"><table class="audit-table stack">
				<thead><tr><th scope="col">when</th><th scope="col">actor</th><th scope="col">action</th><th scope="col">agent</th><th scope="col">details</th></tr></thead>
				<tbody>${(rows || []).map((a) => html`<tr data-event=${a.event}><td class="nowrap" data-label="when" title=${fmtTime(a.logged_at)}>${fmtWhen(a.logged_at)}</td>
					<td class="actor nowrap" data-label="actor">${a.ui_user || a.db_role}${a.ui_user && a.db_role ? html` <span class="muted small">via ${a.db_role}</span>` : ''}</td>
					<td data-label="action"><code>${a.event}</code></td><td data-label="agent">${a.agent_id ?? '–'}</td>
					<td class="small details wide" data-label="details" title=${details(a.details)}>${clip(details(a.details), 220)}</td></tr>`)}</tbody></table>
				${rows && !rows.length && html`<p class="muted">Nothing matches.</p>`}
			</div>
			${more && html`<button type="button" onClick=${more}>More</button>`}
		</main>`;
}
