// Commands (issue 11's endpoint): fleet-wide or per agent, newest first,
// filtered by status and type — who, what, when, outcome and latency.
import { useState } from 'preact/hooks';
import { html } from '../html.js';
import { api } from '../store.js';
import { fmtTime, fmtDuration } from '../lib/format.js';
import { stateOf } from '../lib/commands.js';
import { usePaged } from './paged.js';

export function Commands({ arg }) {
	const [agent, setAgent] = useState(arg || '');
	const [status, setStatus] = useState('');
	const [type, setType] = useState('');
	const { rows, error, more } = usePaged((cursor) => api.commands({ agent_id: agent || undefined, status, type, cursor }),
		`${agent}|${status}|${type}`, (r) => r.commands);
	return html`
		<main id="main" class="view commands" tabindex="-1">
			<h1>Commands</h1>
			<div class="toolbar">
				<label class="field grow"><span>Agent</span><input value=${agent} placeholder="every agent" onChange=${(e) => setAgent(e.currentTarget.value.trim())} /></label>
				<label class="field"><span>Status</span><select value=${status} onChange=${(e) => setStatus(e.currentTarget.value)}>
					<option value="">all</option>${['queued', 'sent', 'acked', 'failed', 'expired', 'dead'].map((s) => html`<option value=${s}>${s}</option>`)}</select></label>
				<label class="field"><span>Type</span><select value=${type} onChange=${(e) => setType(e.currentTarget.value)}>
					<option value="">all</option>${['set_fan_speed', 'apply_profile', 'update_settings', 'emergency_stop', 'restore_auto'].map((s) => html`<option value=${s}>${s}</option>`)}</select></label>
			</div>
			${error && html`<p class="error" role="alert">${error}</p>`}
			<div class="card table-wrap" style="max-height:none"><table>
				<thead><tr><th scope="col">issued</th><th scope="col">agent</th><th scope="col">who</th><th scope="col">what</th><th scope="col">outcome</th><th scope="col">latency</th><th scope="col">attempts</th></tr></thead>
				<tbody>${(rows || []).map((c) => {
					const s = stateOf(c.status);
					const latency = c.latency_ms ?? (c.acked_at && c.created_at ? Date.parse(c.acked_at) - Date.parse(c.created_at) : null);
					return html`<tr>
						<td>${fmtTime(c.created_at)}</td><td><a href=${`#/agent/${encodeURIComponent(c.agent_id)}`}>${c.agent_id}</a></td><td>${c.issued_by ?? c.created_by ?? '–'}</td>
						<td><code>${c.command_type}</code> ${c.parameters ? JSON.stringify(c.parameters) : ''}</td>
						<td><span class=${`cmd-state cmd-${s}`}>${c.status}</span>${c.error ? html` <span class="error small">${c.error}</span>` : ''}</td>
						<td>${fmtDuration(latency)}</td><td>${c.attempts ?? '–'}</td></tr>`;
				})}</tbody></table>
				${rows && !rows.length && html`<p class="muted">No commands.</p>`}
			</div>
			${more && html`<button type="button" onClick=${more}>More</button>`}
		</main>`;
}
