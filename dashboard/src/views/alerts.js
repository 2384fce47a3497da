// Alerts: the live list (pushed on /ws/ui; the history below reloads as
// alerts fire, resolve or are acknowledged), the history by state,
// severity and acknowledgement, acknowledge and silence (operators), the
// silences in force, and the rules (admins).
import { useEffect, useRef, useState } from 'preact/hooks';
import { html } from '../html.js';
import { api, liveAlerts, canControl, isAdmin, say } from '../store.js';
import { fmtWhen, fmtTime } from '../lib/format.js';
import { usePaged } from './paged.js';

const sevClass = (s) => (s === 'critical' ? 'bad' : s === 'warning' ? 'warn' : 'info');
const SILENCES = [['1 h', 3600e3], ['8 h', 8 * 3600e3], ['24 h', 24 * 3600e3]];

function AlertActions({ a, act }) {
	const [span, setSpan] = useState(SILENCES[0][1]);
	const id = `sil-${a.alert_id}`;
	return html`<div class="alert-actions">
		${a.state === 'firing' && !a.acknowledged_at && html`<button type="button" class="ack" onClick=${() => act(() => api.ackAlert(a.alert_id), `alert ${a.alert_id} (${a.rule}) acknowledged`)}>Acknowledge</button>`}
		${a.silenced_until ? html`<span class="small muted">silenced until ${fmtTime(a.silenced_until)}</span>` : html`
			<label class="sr-only" for=${id}>Silence ${a.rule} on ${a.agent_id} for</label>
			<select id=${id} value=${span} onChange=${(e) => setSpan(Number(e.currentTarget.value))}>${SILENCES.map(([l, ms]) => html`<option value=${ms}>${l}</option>`)}</select>
			<button type="button" class="silence" onClick=${() => act(() => api.silence({ rule_id: a.rule_id, agent_id: a.agent_id, target_id: a.target_id || undefined,
				until: new Date(Date.now() + span).toISOString(), comment: 'from the dashboard' }), `${a.rule} on ${a.agent_id}${a.target_id ? ` (${a.target_id})` : ''} silenced`)}>Silence</button>`}
	</div>`;
}

export function Alerts() {
	const [state, setState] = useState('');
	const [severity, setSeverity] = useState('');
	const [acked, setAcked] = useState('');
	const { rows, error, more, reload } = usePaged((cursor) => api.alerts({ state, severity, acknowledged: acked, cursor }), `${state}|${severity}|${acked}`);
	const silences = usePaged(() => api.silences(), 'silences');
	const [msg, setMsg] = useState(null);
	const control = canControl.value;
	const act = async (fn, text) => {
		try { await fn(); setMsg({ ok: true, text }); say(text); reload(); silences.reload(); } catch (e) { setMsg({ ok: false, text: e.message }); }
	};
	const live = liveAlerts.value;
	// what arrives live is in the history too: reload it (at most every 0.5 s)
	const t = useRef(null);
	useEffect(() => {
		if (!live.length) return;
		clearTimeout(t.current);
		t.current = setTimeout(reload, 500);
		return () => clearTimeout(t.current);
	}, [live]);
	return html`
		<main id="main" class="view alerts" tabindex="-1">
			<h1>Alerts</h1>
			<section class="card" aria-labelledby="h-live">
				<h2 id="h-live">Live <span class="muted small">(since this page opened)</span></h2>
				${live.length ? html`<ul class="plain live-list">${live.slice(0, 30).map((a) => html`<li data-alert=${a.alert_id} data-state=${a.state}>
					<span class=${`badge ${a.state === 'firing' ? sevClass(a.severity) : 'good'}`}>${a.state === 'firing' ? a.severity : a.state}</span>
					${' '}<strong>${a.rule}</strong> · <a href=${`#/agent/${encodeURIComponent(a.agent_id)}`}>${a.agent_id}</a>${a.target_id ? ` · ${a.target_id}` : ''}${a.value != null ? ` · ${Number(a.value).toFixed(1)}` : ''}
					${a.acknowledged_at && html` <span class="badge">acknowledged by ${a.acknowledged_by}</span>`}
					<span class="muted small"> ${fmtTime(a.received)}</span></li>`)}</ul>`
					: html`<p class="muted">Nothing has fired or resolved since this page opened.</p>`}
			</section>
			<section class="card" style="margin-top:1rem" aria-labelledby="h-hist">
				<h2 id="h-hist">History</h2>
				<div class="toolbar">
					<label class="field"><span>State</span><select id="alerts-state" value=${state} onChange=${(e) => setState(e.currentTarget.value)}>
						<option value="">all</option><option value="firing">firing</option><option value="resolved">resolved</option></select></label>
					<label class="field"><span>Severity</span><select value=${severity} onChange=${(e) => setSeverity(e.currentTarget.value)}>
						<option value="">all</option><option value="info">info</option><option value="warning">warning</option><option value="critical">critical</option></select></label>
					<label class="field"><span>Acknowledged</span><select id="alerts-acked" value=${acked} onChange=${(e) => setAcked(e.currentTarget.value)}>
						<option value="">either</option><option value="false">not yet</option><option value="true">yes</option></select></label>
				</div>
				${error && html`<p class="error" role="alert">${error}</p>`}
				${msg && html`<p class=${msg.ok ? 'ok-text' : 'error'} role="status" id="alerts-msg">${msg.text}</p>`}
				<div class="table-wrap stack-wrap" tabindex="0" role="region" aria-label="alert history, scrollable"><table class="alerts-table stack">
					<thead><tr><th scope="col">fired</th><th scope="col">severity</th><th scope="col">rule</th><th scope="col">agent · target</th><th scope="col">value</th><th scope="col">state</th>${control && html`<th scope="col">actions</th>`}</tr></thead>
					<tbody>${(rows || []).map((a) => html`<tr data-alert=${a.alert_id} data-state=${a.state} data-acked=${a.acknowledged_at ? 'yes' : 'no'}>
						<td class="nowrap" data-label="fired" title=${fmtTime(a.fired_at)}>${fmtWhen(a.fired_at)}</td><td data-label="severity"><span class=${`badge ${sevClass(a.severity)}`}>${a.severity}</span></td><td data-label="rule">${a.rule}</td>
						<td data-label="agent · target">${a.agent_id}${a.target_id ? ` · ${a.target_id}` : ''}</td>
						<td data-label="value">${a.value != null ? Number(a.value).toFixed(1) : '–'}${a.threshold != null ? html` <span class="muted small">/ ${a.threshold}</span>` : ''}</td>
						<td class="state" data-label="state">${a.state}${a.resolved_at ? html` <span class="muted small">${fmtTime(a.resolved_at)}</span>` : ''}
							${a.acknowledged_at && html`<div class="small muted acked">acknowledged by ${a.acknowledged_by}</div>`}</td>
						${control && html`<td class="wide" data-label="actions"><${AlertActions} a=${a} act=${act} /></td>`}
					</tr>`)}</tbody></table></div>
				${rows && !rows.length && html`<p class="muted">No alerts.</p>`}
				${more && html`<button type="button" onClick=${more}>More</button>`}
			</section>
			${(silences.rows || []).length > 0 && html`<section class="card" style="margin-top:1rem" aria-labelledby="h-sil">
				<h2 id="h-sil">Silences in force</h2>
				<ul class="plain silences">${silences.rows.map((s) => html`<li data-silence=${s.silence_id}>rule ${s.rule_id}${s.agent_id ? ` · ${s.agent_id}` : ' · every agent'}${s.target_id ? ` · ${s.target_id}` : ''}
					${' '}until ${fmtTime(s.silenced_until)} <span class="muted small">by ${s.created_by}</span>
					${control && html` <button type="button" onClick=${() => act(() => api.unsilence(s.silence_id), `silence ${s.silence_id} lifted`)}>Lift</button>`}</li>`)}</ul>
			</section>`}
			${isAdmin.value && html`<${Rules} />`}
		</main>`;
}

const CONDITIONS = ['temperature_above', 'temperature_below', 'fan_rpm_below', 'fan_rpm_above', 'agent_offline'];

function Rules() {
	const { rows, error, reload } = usePaged(() => api.alertRules(), 'rules');
	const [form, setForm] = useState({ name: '', condition: 'temperature_above', threshold: 80, duration_seconds: 60, severity: 'warning', agent_id: '', sensor_type: '' });
	const [msg, setMsg] = useState(null);
	const add = async (e) => {
		e.preventDefault();
		const body = { name: form.name.trim(), condition: form.condition, severity: form.severity, duration_seconds: Number(form.duration_seconds) };
		if (form.condition !== 'agent_offline') body.threshold = Number(form.threshold);
		if (form.agent_id.trim()) body.agent_id = form.agent_id.trim();
		if (form.sensor_type.trim()) body.sensor_type = form.sensor_type.trim();
		try { await api.createAlertRule(body); setMsg({ ok: true, text: `rule ${body.name} added` }); say(`Rule ${body.name} added`); reload(); } catch (err) { setMsg({ ok: false, text: err.message }); }
	};
	const f = (k) => (e) => setForm({ ...form, [k]: e.currentTarget.value });
	return html`
		<section class="card" style="margin-top:1rem" aria-labelledby="h-rules">
			<h2 id="h-rules">Rules</h2>
			${error && html`<p class="error" role="alert">${error}</p>`}
			<div class="table-wrap stack-wrap" tabindex="0" role="region" aria-label="alert rules, scrollable"><table class="rules-table stack">
				<thead><tr><th scope="col">name</th><th scope="col">condition</th><th scope="col">scope</th><th scope="col">for</th><th scope="col">severity</th><th scope="col"><span class="sr-only">actions</span></th></tr></thead>
				<tbody>${(rows || []).map((r) => html`<tr data-rule=${r.rule_id}><td data-label="name">${r.name}${!r.enabled ? html` <span class="badge">disabled</span>` : ''}</td>
					<td data-label="condition"><code>${r.condition}</code>${r.threshold != null ? ` ${r.threshold}` : ''}</td>
					<td data-label="scope">${r.agent_id || (r.group ? `group ${r.group}` : 'every agent')}${r.sensor_type ? ` · ${r.sensor_type}` : ''}${r.target_id ? ` · ${r.target_id}` : ''}</td>
					<td data-label="for">${r.duration_seconds} s</td><td data-label="severity"><span class=${`badge ${sevClass(r.severity)}`}>${r.severity}</span></td>
					<td class="wide" data-label="actions"><button type="button" onClick=${async () => { try { await api.deleteAlertRule(r.rule_id); reload(); say(`Rule ${r.name} deleted`); } catch (err) { setMsg({ ok: false, text: err.message }); } }}>Delete<span class="sr-only"> rule ${r.name}</span></button></td></tr>`)}</tbody>
			</table></div>
			<form class="form-grid rule-form" onSubmit=${add} style="margin-top:.75rem">
				<label class="field"><span>Name</span><input required value=${form.name} onInput=${f('name')} /></label>
				<label class="field"><span>Condition</span><select value=${form.condition} onChange=${f('condition')}>
					${CONDITIONS.map((c) => html`<option value=${c}>${c}</option>`)}</select></label>
				<label class="field"><span>Threshold</span><input type="number" step="any" value=${form.threshold} disabled=${form.condition === 'agent_offline'} onInput=${f('threshold')} /></label>
				<label class="field"><span>For at least (s)</span><input type="number" min="0" step="1" value=${form.duration_seconds} onInput=${f('duration_seconds')} /></label>
				<label class="field"><span>Severity</span><select value=${form.severity} onChange=${f('severity')}>
					<option value="info">info</option><option value="warning">warning</option><option value="critical">critical</option></select></label>
				<label class="field"><span>Agent (empty: every agent)</span><input value=${form.agent_id} onInput=${f('agent_id')} /></label>
				<label class="field"><span>Sensor type (empty: any)</span><input value=${form.sensor_type} placeholder="cpu, nvme…" onInput=${f('sensor_type')} /></label>
				<div class="actions"><button type="submit" class="primary">Add rule</button></div>
			</form>
			${msg && html`<p class=${msg.ok ? 'ok-text' : 'error'} role="status">${msg.text}</p>`}
		</section>`;
}
