// Settings: an agent's effective values, and saving a value at the global,
// group or agent scope through the bridge (agents then get config_update).
// With the definitions endpoint (issue 11) inputs are bounded by each
// setting's range and show where each value comes from; until then the
// server's validation answers, and its message is shown beside the field.
import { useEffect, useState } from 'preact/hooks';
import { html } from '../html.js';
import { api, fleet, fleetVersion, canControl, endpoints, say } from '../store.js';

function SettingRow({ k, value, def, source, scopes, disabled }) {
	const type = def?.value_type || (typeof value === 'boolean' ? 'boolean' : typeof value === 'number' ? 'number' : 'string');
	const [v, setV] = useState(value);
	const [scope, setScope] = useState(scopes[0]?.[0]);
	const [msg, setMsg] = useState(null);
	useEffect(() => setV(value), [value]);
	const save = async (e) => {
		e.preventDefault();
		let out = v;
		if (type === 'number') out = Number(v);
		try {
			const r = await api.setSetting(scope, k, out);
			const n = r && r.agents_updated;
			setMsg({ ok: true, text: `saved${n != null ? `; ${n} agent${n === 1 ? '' : 's'} updated` : ''}` });
			say(`${k} saved at ${scope}`);
		} catch (err) {
			setMsg({ ok: false, text: err.message });
		}
	};
	const id = `set-${k}`;
	let input;
	if (type === 'boolean') input = html`<select id=${id} value=${String(v)} disabled=${disabled} onChange=${(e) => setV(e.currentTarget.value === 'true')}><option value="true">on</option><option value="false">off</option></select>`;
	else if (def?.allowed) input = html`<select id=${id} value=${v} disabled=${disabled} onChange=${(e) => setV(e.currentTarget.value)}>${def.allowed.map((a) => html`<option value=${a}>${a}</option>`)}</select>`;
	else if (type === 'number') input = html`<input id=${id} type="number" step="any" min=${def?.min_value} max=${def?.max_value} value=${v} disabled=${disabled} onInput=${(e) => setV(e.currentTarget.value)} />`;
	else input = html`<input id=${id} type="text" value=${v} disabled=${disabled} onInput=${(e) => setV(e.currentTarget.value)} />`;
	return html`
		<form class="setting" onSubmit=${save} data-key=${k}>
			<div>
				<label for=${id}><strong>${k}</strong>${def?.unit ? html` <span class="muted">(${def.unit})</span>` : ''}</label>
				${def?.description && html`<div class="small muted">${def.description}${def.min_value != null ? ` Range ${def.min_value}–${def.max_value}.` : ''}</div>`}
				${source && html`<div class="source muted">from ${source}</div>`}
				${msg && html`<div class=${msg.ok ? 'ok-text small' : 'error small'} role=${msg.ok ? 'status' : 'alert'}>${msg.text}</div>`}
			</div>
			${input}
			${!disabled && html`<div class="actions" style="margin:0">
				<label class="sr-only" for=${`${id}-scope`}>Save ${k} at scope</label>
				<select id=${`${id}-scope`} value=${scope} onChange=${(e) => setScope(e.currentTarget.value)}>
					${scopes.map(([s, l]) => html`<option value=${s}>${l}</option>`)}
				</select>
				<button type="submit">Save</button></div>`}
		</form>`;
}

export function Settings() {
	fleetVersion.value;
	const ids = [...fleet.keys()].sort();
	const [agent, setAgent] = useState(ids[0] || '');
	const [values, setValues] = useState(null);
	const [defs, setDefs] = useState(null);
	const [error, setError] = useState(null);
	const control = canControl.value;
	const current = agent || ids[0] || '';

	useEffect(() => {
		if (endpoints.value.definitions) api.settingDefinitions().then((d) => setDefs(Array.isArray(d) ? d : d.definitions || []), () => setDefs(null));
	}, []);
	useEffect(() => {
		if (!current) return;
		setError(null);
		api.agentSettings(current).then(setValues, (e) => { setValues(null); setError(e.message); });
	}, [current]);

	const rec = fleet.get(current);
	const scopes = [[`agent:${current}`, `this agent (${current})`]];
	if (rec?.group) scopes.push([`group:${rec.group}`, `group ${rec.group}`]);
	scopes.push(['global', 'every agent (global)']);
	const defByKey = new Map((defs || []).map((d) => [d.key, d]));
	// issue 11 gives each effective value with its source: {value, source}
	const entries = values ? Object.entries(values).filter(([k]) => k !== 'fans') : [];

	return html`
		<main id="main" class="view settings" tabindex="-1">
			<h1>Settings</h1>
			<p class="muted">Values an agent runs with, resolved from the built-in defaults, the global value, its group's and its own.
				${control ? ' Saving sends the agents concerned a config_update.' : ' Viewers can read them only.'}</p>
			<div class="toolbar">
				<label class="field"><span>Agent</span>
					<select value=${current} onChange=${(e) => setAgent(e.currentTarget.value)} id="settings-agent">
						${ids.map((i) => html`<option value=${i}>${i}</option>`)}
					</select></label>
			</div>
			${error && html`<p class="error" role="alert">${error}</p>`}
			${!ids.length && html`<p class="empty">No agents yet.</p>`}
			<section class="card">
				${entries.map(([k, raw]) => {
					const withSource = raw && typeof raw === 'object' && 'value' in raw;
					return html`<${SettingRow} key=${`${current}-${k}`} k=${k} value=${withSource ? raw.value : raw} source=${withSource ? raw.source : null}
						def=${defByKey.get(k)} scopes=${scopes} disabled=${!control} />`;
				})}
			</section>
			${values?.fans && html`<section class="card" style="margin-top:1rem"><h2>Fan limits</h2>
				<dl class="kv">${Object.entries(values.fans).map(([f, l]) => html`<dt>${f}</dt><dd>${l.min_speed ?? 0}–${l.max_speed ?? 100} %${l.emergency_temp ? ` · emergency at ${l.emergency_temp} °C` : ''}</dd>`)}</dl></section>`}
		</main>`;
}
