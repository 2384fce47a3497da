// Commands: fleet-wide or per agent (#/commands/<agent>), newest first,
// filtered by status and type — who asked, what, when, the outcome (with
// the agent's error) and the latency from issue to acknowledgement.  The
// list reloads as command news arrives on the socket.
import { useEffect, useRef, useState } from 'preact/hooks';
import { html } from '../html.js';
import { api, fleet, commandsVersion } from '../store.js';
import { fmtWhen, fmtTime, fmtDuration } from '../lib/format.js';
import { stateOf } from '../lib/commands.js';
import { usePaged } from './paged.js';

const TYPES = ['set_fan_speed', 'apply_profile', 'update_settings', 'emergency_stop', 'restore_auto'];
const STATES = ['queued', 'sent', 'acked', 'failed', 'expired', 'dead'];

function what(c) {
	const p = c.parameters || {};
	switch (c.command_type) {
		case 'set_fan_speed': return `${p.fan_id} to ${p.speed} %`;
		case 'apply_profile': return `${p.fan_id ?? ''} ← ${typeof p.profile === 'object' ? (p.profile?.name ?? 'curve') : p.profile ?? ''}${p.sensor_id ? ` from ${p.sensor_id}` : ''}`;
		case 'restore_auto': return p.fan_id ? `${p.fan_id} to automatic` : 'every fan to automatic';
		case 'emergency_stop': return 'every fan to 100 %';
		case 'update_settings': return Object.keys(p.settings || p).slice(0, 6).join(', ');
		default: return JSON.stringify(p);
	}
}

export function Commands({ arg }) {
	const [agent, setAgent] = useState(arg || '');
	const [status, setStatus] = useState('');
	const [type, setType] = useState('');
	useEffect(() => setAgent(arg || ''), [arg]);
	const { rows, error, more, reload } = usePaged((cursor) => api.commands({ agent_id: agent || undefined, status, command_type: type, cursor }),
		`${agent}|${status}|${type}`);
	const v = commandsVersion.value;
	const t = useRef(null);
	useEffect(() => {
		clearTimeout(t.current);
		t.current = setTimeout(reload, 400);
		return () => clearTimeout(t.current);
	}, [v]);
	const ids = [...fleet.keys()].sort();
	return html`
		<main id="main" class="view commands" tabindex="-1">
			<h1>Commands${agent ? html` <span class="muted">of ${agent}</span>` : ''}</h1>
			<div class="toolbar">
				<label class="field"><span>Agent</span><select id="commands-agent" value=${agent} onChange=${(e) => { location.hash = e.currentTarget.value ? `#/commands/${encodeURIComponent(e.currentTarget.value)}` : '#/commands'; }}>
					<option value="">every agent</option>${ids.slice(0, 500).map((i) => html`<option value=${i}>${i}</option>`)}</select></label>
				<label class="field"><span>Outcome</span><select id="commands-status" value=${status} onChange=${(e) => setStatus(e.currentTarget.value)}>
					<option value="">all</option>${STATES.map((s) => html`<option value=${s}>${s}</option>`)}</select></label>
				<label class="field"><span>Type</span><select id="commands-type" value=${type} onChange=${(e) => setType(e.currentTarget.value)}>
					<option value="">all</option>${TYPES.map((s) => html`<option value=${s}>${s}</option>`)}</select></label>
			</div>
			${error && html`<p class="error" role="alert">${error}</p>`}
			<div class="card table-wrap stack-wrap" style="max-height:none" tabindex="0" role="region" aria-label="commands, scrollable"><table class="commands-table stack">
				<thead><tr><th scope="col">issued</th><th scope="col">agent</th><th scope="col">who</th><th scope="col">what</th><th scope="col">outcome</th><th scope="col">latency</th><th scope="col">tries</th></tr></thead>
				<tbody>${(rows || []).map((c) => {
					const s = stateOf(c.status);
					return html`<tr data-command=${c.command_id} data-type=${c.command_type} data-status=${c.status}>
						<td class="nowrap" data-label="issued" title=${fmtTime(c.created_at)}>${fmtWhen(c.created_at)}</td><td data-label="agent"><a href=${`#/agent/${encodeURIComponent(c.agent_id)}`}>${c.agent_id}</a></td>
						<td class="who nowrap" data-label="who">${c.issued_by ?? '–'}</td>
						<td class="what wide" data-label="what"><code>${c.command_type}</code> <span class="small">${what(c)}</span></td>
						<td class="outcome" data-label="outcome"><span class=${`cmd-state cmd-${s}`}>${c.status}</span>${c.error || c.status_reason ? html` <span class=${`small ${c.status === 'acked' ? 'muted' : 'error'}`}>${c.error || c.status_reason}</span>` : ''}</td>
						<td class="latency nowrap" data-label="latency">${fmtDuration(c.latency_ms)}</td><td data-label="tries">${c.attempts ?? '–'}</td></tr>`;
				})}</tbody></table>
				${rows && !rows.length && html`<p class="muted">No commands.</p>`}
			</div>
			${more && html`<button type="button" onClick=${more}>More</button>`}
		</main>`;
}
