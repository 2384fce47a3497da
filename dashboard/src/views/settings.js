// Settings: an agent's effective values, each with where it comes from
// (the built-in default, the global value, its group's or its own, as the
// agent endpoint resolves them), inputs bounded by the definitions' ranges
// and checked in the page the way the server checks them, and saving or
// clearing a value at the agent, group or global scope through the bridge
// (the agents concerned then get config_update).
import { useEffect, useState } from 'preact/hooks';
import { html } from '../html.js';
import { api, fleet, fleetVersion, canControl, say } from '../store.js';
import { checkSetting, parseSetting, sourceText } from '../lib/settings.js';

function SettingRow({ item, def, scopes, control, agentId, onSaved }) {
	const type = def?.type || (typeof item.value === 'boolean' ? 'boolean' : typeof item.value === 'number' ? 'number' : 'string');
	const [v, setV] = useState(item.value);
	const [scope, setScope] = useState(scopes[0][0]);
	const [msg, setMsg] = useState(null);
	useEffect(() => setV(item.value), [item.value]);
	const k = item.key;
	const save = async (e) => {
		e.preventDefault();
		const out = parseSetting(def, v);
		const problem = checkSetting(def, out);
		if (problem) { setMsg({ ok: false, text: `not saved: ${problem}` }); say(`${k} not saved: ${problem}`); return; }
		try {
			const r = await api.setSetting(scope, k, out);
			const n = r && r.agents_updated;
			setMsg({ ok: true, text: `saved at ${scope}${n != null ? `; ${n} agent${n === 1 ? '' : 's'} sent config_update` : ''}` });
			say(`${k} saved at ${scope}`);
			onSaved();
		} catch (err) {
			setMsg({ ok: false, text: err.message });
		}
	};
	const clear = async () => {
		try {
			await api.clearSetting(item.scope, k);
			setMsg({ ok: true, text: `cleared at ${item.scope}; inherited again` });
			say(`${k} cleared at ${item.scope}`);
			onSaved();
		} catch (err) { setMsg({ ok: false, text: err.message }); }
	};
	const id = `set-${k}`;
	const disabled = !control;
	let input;
	if (type === 'boolean') input = html`<select id=${id} value=${String(v)} disabled=${disabled} onChange=${(e) => setV(e.currentTarget.value === 'true')}><option value="true">on</option><option value="false">off</option></select>`;
	else if (def?.allowed) input = html`<select id=${id} value=${v} disabled=${disabled} onChange=${(e) => setV(e.currentTarget.value)}>${def.allowed.map((a) => html`<option value=${a}>${a}</option>`)}</select>`;
	else if (type === 'number') input = html`<input id=${id} type="number" step="any" min=${def?.min} max=${def?.max} value=${v} disabled=${disabled} aria-describedby=${`${id}-help`} onInput=${(e) => setV(e.currentTarget.value)} />`;
	else input = html`<input id=${id} type="text" value=${v} disabled=${disabled} onInput=${(e) => setV(e.currentTarget.value)} />`;
	const inherited = item.source === 'default';
	return html`
		<form class="setting" noValidate onSubmit=${save} data-key=${k} data-source=${item.source}>
			<div class="setting-text">
				<label for=${id}><strong>${k}</strong>${def?.unit ? html` <span class="muted">(${def.unit})</span>` : ''}</label>
				<div class="small muted" id=${`${id}-help`}>${def?.description || ''}${def?.min != null ? ` Range ${def.min}–${def.max}.` : ''}${def?.default != null ? ` Default ${JSON.stringify(def.default)}.` : ''}</div>
				<div class="source"><span class=${`badge src-${item.source}`}>${sourceText(item)}</span>
					${item.updated_by && html` <span class="small muted">set by ${item.updated_by}</span>`}</div>
				${msg && html`<div class=${msg.ok ? 'ok-text small' : 'error small'} role=${msg.ok ? 'status' : 'alert'}>${msg.text}</div>`}
			</div>
			<div class="setting-input">${input}</div>
			${control && html`<div class="actions setting-actions">
				<label class="sr-only" for=${`${id}-scope`}>Save ${k} at scope</label>
				<select id=${`${id}-scope`} value=${scope} onChange=${(e) => setScope(e.currentTarget.value)}>
					${scopes.map(([s, l]) => html`<option value=${s}>${l}</option>`)}
				</select>
				<button type="submit">Save</button>
				${!inherited && item.scope && html`<button type="button" class="ghost clear" onClick=${clear} title=${`remove the value set at ${item.scope}`}>Clear<span class="sr-only"> ${k} at ${item.scope}</span></button>`}
			</div>`}
		</form>`;
}

export function Settings({ arg }) {
	fleetVersion.value;
	const ids = [...fleet.keys()].sort();
	const [agent, setAgent] = useState(arg || '');
	const [detail, setDetail] = useState(null);
	const [defs, setDefs] = useState(null);
	const [error, setError] = useState(null);
	const [version, setVersion] = useState(0);
	const control = canControl.value;
	const current = agent || ids[0] || '';

	useEffect(() => {
		api.settingDefinitions().then((d) => setDefs(Array.isArray(d) ? d : d.items || []), () => setDefs([]));
	}, []);
	useEffect(() => {
		if (!current) return;
		setError(null);
		api.agent(current).then(setDetail, (e) => { setDetail(null); setError(e.message); });
	}, [current, version]);

	const rec = fleet.get(current);
	const group = detail?.group ?? rec?.group;
	const scopes = [[`agent:${current}`, `this agent`]];
	if (group) scopes.push([`group:${group}`, `group ${group}`]);
	scopes.push(['global', 'every agent (global)']);
	const defByKey = new Map((defs || []).map((d) => [d.key, d]));
	const items = detail && detail.agent_id === current ? detail.settings || [] : [];
	const fans = detail && detail.agent_id === current ? detail.fans || [] : [];

	return html`
		<main id="main" class="view settings" tabindex="-1">
			<h1>Settings</h1>
			<p class="muted">The values an agent runs with: its own, else its group's, else the global value, else the built-in default.
				${control ? ' Saving sends the agents concerned a config_update.' : ' Viewers can read them only.'}</p>
			<div class="toolbar">
				<label class="field"><span>Agent</span>
					<select value=${current} onChange=${(e) => setAgent(e.currentTarget.value)} id="settings-agent">
						${ids.map((i) => html`<option value=${i}>${i}</option>`)}
					</select></label>
				${group && html`<span class="muted small">in group <strong>${group}</strong></span>`}
			</div>
			${error && html`<p class="error" role="alert">${error}</p>`}
			${!ids.length && html`<p class="empty">No agents yet.</p>`}
			<section class="card settings-list" aria-label=${`Settings of ${current}`}>
				${items.map((item) => html`<${SettingRow} key=${`${current}-${item.key}`} item=${item} def=${defByKey.get(item.key)}
					scopes=${scopes} control=${control} agentId=${current} onSaved=${() => setVersion((n) => n + 1)} />`)}
				${detail && !items.length && html`<p class="muted">No settings are defined.</p>`}
			</section>
			${fans.length > 0 && html`<section class="card" style="margin-top:1rem" aria-labelledby="h-limits"><h2 id="h-limits">Fan limits and profiles</h2>
				<div class="table-wrap stack-wrap" tabindex="0" role="region" aria-label="fan limits, scrollable"><table class="limits-table stack">
					<thead><tr><th scope="col">fan</th><th scope="col">limits</th><th scope="col">emergency</th><th scope="col">profile</th></tr></thead>
					<tbody>${fans.map((f) => html`<tr data-fan=${f.fan_id}><td data-label="fan">${f.label || f.fan_id}</td><td data-label="limits">${f.min_speed ?? 0}–${f.max_speed ?? 100} %</td>
						<td data-label="emergency">${f.emergency_temp != null ? `${f.emergency_temp} °C` : '–'}</td>
						<td class="profile" data-label="profile">${f.profile ? html`<a href="#/profiles">${f.profile.name}</a> <span class="muted small">from ${f.profile.sensor_id}</span>` : html`<span class="muted">automatic</span>`}</td></tr>`)}</tbody>
				</table></div></section>`}
		</main>`;
}
