// Alerts: the live list (pushed on /ws/ui), the history by state and
// severity from the alerts endpoint (issue 11), acknowledge and silence
// (operators), and the rules (admins).
import { useState } from 'preact/hooks';
import { html } from '../html.js';
import { api, liveAlerts, canControl, isAdmin, say } from '../store.js';
import { fmtTime } from '../lib/format.js';
import { usePaged } from './paged.js';

export function Alerts() {
	const [state, setState] = useState('');
	const [severity, setSeverity] = useState('');
	const { rows, error, more, reload } = usePaged((cursor) => api.alerts({ state, severity, cursor }), `${state}|${severity}`, (r) => r.alerts);
	const [msg, setMsg] = useState(null);
	const act = async (fn, text) => {
		try { await fn(); setMsg({ ok: true, text }); say(text); reload(); } catch (e) { setMsg({ ok: false, text: e.message }); }
	};
	const live = liveAlerts.value;
	return html`
		<main id="main" class="view alerts" tabindex="-1">
			<h1>Alerts</h1>
			<section class="card" aria-labelledby="h-live">
				<h2 id="h-live">Live</h2>
				${live.length ? html`<ul class="plain">${live.slice(0, 30).map((a) => html`<li>
					<span class=${`badge ${a.state === 'firing' ? (a.severity === 'critical' ? 'bad' : 'warn') : 'good'}`}>${a.state}</span>
					${' '}<strong>${a.rule}</strong> · ${a.agent_id}${a.target_id ? ` · ${a.target_id}` : ''}${a.value != null ? ` · ${Number(a.value).toFixed(1)}` : ''} <span class="muted small">${fmtTime(a.received)}</span></li>`)}</ul>`
					: html`<p class="muted">Nothing has fired or resolved since this page opened.</p>`}
			</section>
			<section class="card" style="margin-top:1rem" aria-labelledby="h-hist">
				<h2 id="h-hist">History</h2>
				<div class="toolbar">
					<label class="field"><span>State</span><select value=${state} onChange=${(e) => setState(e.currentTarget.value)}>
						<option value="">all</option><option value="firing">firing</option><option value="acknowledged">acknowledged</option><option value="resolved">resolved</option></select></label>
					<label class="field"><span>Severity</span><select value=${severity} onChange=${(e) => setSeverity(e.currentTarget.value)}>
						<option value="">all</option><option value="info">info</option><option value="warning">warning</option><option value="critical">critical</option></select></label>
				</div>
				${error && html`<p class="error" role="alert">${error}</p>`}
				${msg && html`<p class=${msg.ok ? 'ok-text' : 'error'} role="status">${msg.text}</p>`}
				<div class="table-wrap"><table>
					<thead><tr><th scope="col">fired</th><th scope="col">severity</th><th scope="col">rule</th><th scope="col">agent</th><th scope="col">value</th><th scope="col">state</th>${canControl.value && html`<th scope="col"><span class="sr-only">actions</span></th>`}</tr></thead>
					<tbody>${(rows || []).map((a) => html`<tr>
						<td>${fmtTime(a.fired_at ?? a.created_at)}</td><td>${a.severity}</td><td>${a.rule ?? a.rule_name}</td><td>${a.agent_id}${a.target_id ? ` · ${a.target_id}` : ''}</td>
						<td>${a.value != null ? Number(a.value).toFixed(1) : '–'}</td><td>${a.state}</td>
						${canControl.value && html`<td>${a.state === 'firing' && html`<button type="button" onClick=${() => act(() => api.ackAlert(a.alert_id), `alert ${a.alert_id} acknowledged`)}>Acknowledge</button>`}
							<button type="button" onClick=${() => act(() => api.silence({ rule_id: a.rule_id, agent_id: a.agent_id, target_id: a.target_id, until: new Date(Date.now() + 3600e3).toISOString() }), `silenced for an hour`)}>Silence 1 h</button></td>`}
					</tr>`)}</tbody></table></div>
				${rows && !rows.length && html`<p class="muted">No alerts.</p>`}
				${more && html`<button type="button" onClick=${more}>More</button>`}
			</section>
			${isAdmin.value && html`<${Rules} />`}
		</main>`;
}

function Rules() {
	const { rows, error, reload } = usePaged(() => api.alertRules(), 'rules', (r) => r.rules);
	const [form, setForm] = useState({ name: '', condition: 'temperature_above', threshold: 80, duration: '1 minute', severity: 'warning' });
	const [msg, setMsg] = useState(null);
	const add = async (e) => {
		e.preventDefault();
		try { await api.createAlertRule({ ...form, threshold: form.condition === 'agent_offline' ? null : Number(form.threshold) }); setMsg({ ok: true, text: 'rule added' }); reload(); } catch (err) { setMsg({ ok: false, text: err.message }); }
	};
	return html`
		<section class="card" style="margin-top:1rem" aria-labelledby="h-rules">
			<h2 id="h-rules">Rules</h2>
			${error && html`<p class="error" role="alert">${error}</p>`}
			<ul class="plain">${(rows || []).map((r) => html`<li>${r.name} · ${r.condition}${r.threshold != null ? ` ${r.threshold}` : ''} · ${r.severity}
				<button type="button" onClick=${async () => { try { await api.deleteAlertRule(r.rule_id); reload(); } catch (err) { setMsg({ ok: false, text: err.message }); } }}>Delete</button></li>`)}</ul>
			<form class="form-grid" onSubmit=${add} style="margin-top:.75rem">
				<label class="field"><span>Name</span><input required value=${form.name} onInput=${(e) => setForm({ ...form, name: e.currentTarget.value })} /></label>
				<label class="field"><span>Condition</span><select value=${form.condition} onChange=${(e) => setForm({ ...form, condition: e.currentTarget.value })}>
					${['temperature_above', 'temperature_below', 'fan_rpm_below', 'fan_rpm_above', 'agent_offline'].map((c) => html`<option value=${c}>${c}</option>`)}</select></label>
				<label class="field"><span>Threshold</span><input type="number" step="any" value=${form.threshold} disabled=${form.condition === 'agent_offline'} onInput=${(e) => setForm({ ...form, threshold: e.currentTarget.value })} /></label>
				<label class="field"><span>For at least</span><input value=${form.duration} onInput=${(e) => setForm({ ...form, duration: e.currentTarget.value })} /></label>
				<label class="field"><span>Severity</span><select value=${form.severity} onChange=${(e) => setForm({ ...form, severity: e.currentTarget.value })}>
					<option value="info">info</option><option value="warning">warning</option><option value="critical">critical</option></select></label>
				<div class="actions"><button type="submit" class="primary">Add rule</button></div>
			</form>
			${msg && html`<p class=${msg.ok ? 'ok-text' : 'error'} role="status">${msg.text}</p>`}
		</section>`;
}
