// Fan profiles (issue 11's endpoints): the list, the curve editor with a
// numeric table beside it, hysteresis and step, the server's validation
// run in the page first, save (admin) and apply to a fan (operator).
import { useEffect, useState } from 'preact/hooks';
import { html } from '../html.js';
import { api, fleet, fleetVersion, isAdmin, canControl, trackCommand, commandsVersion, say } from '../store.js';
import { describe } from '../lib/commands.js';
import { validate, addPoint, removePoint, LIMITS } from '../lib/curve.js';
import { CurveEditor } from './curve.js';

const blank = () => ({ name: '', points: [[30, 25], [50, 40], [70, 70], [85, 100]], hysteresis: 2, step: 5, isNew: true });
const normalise = (p) => ({ name: p.name ?? p.profile_name, points: p.points, hysteresis: p.hysteresis ?? 2, step: p.step ?? 5 });

export function Profiles() {
	fleetVersion.value;
	const [list, setList] = useState(null);
	const [error, setError] = useState(null);
	const [edit, setEdit] = useState(null);
	const [msg, setMsg] = useState(null);
	const [liveFrom, setLiveFrom] = useState('');
	const [target, setTarget] = useState({ agent: '', fan: '', sensor: '' });
	const admin = isAdmin.value;

	const load = () => api.profiles().then((r) => {
		const rows = (Array.isArray(r) ? r : r.items || r.profiles || []).map(normalise);
		setList(rows);
		if (!edit && rows.length) setEdit(rows[0]);
	}, (e) => setError(e.message));
	useEffect(() => { load(); }, []);

	const agents = [...fleet.values()].filter((r) => r.frame);
	// the live mark follows the chosen sensor, or the fan's driving sensor
	const [liveAgent, liveSensor] = (liveFrom || (target.agent && target.sensor ? `${target.agent}|${target.sensor}` : '')).split('|');
	const liveRec = fleet.get(liveAgent);
	const liveTemp = liveRec?.frame?.sensors?.find((s) => s.id === liveSensor)?.temperature ?? null;
	const problem = edit ? (edit.name.trim() ? validate(edit) : 'the profile needs a name') : null;

	const setPoint = (i, j, v) => {
		const pts = edit.points.map((p) => [...p]);
		pts[i][j] = Number(v);
		setEdit({ ...edit, points: pts });
	};
	const save = async () => {
		if (problem) return;
		const body = { name: edit.name.trim(), points: edit.points, hysteresis: edit.hysteresis, step: edit.step };
		try {
			if (edit.isNew) await api.createProfile(body); else await api.updateProfile(edit.name, body);
			setMsg({ ok: true, text: `profile ${body.name} saved` });
			say(`Profile ${body.name} saved`);
			setEdit({ ...body });
			load();
		} catch (e) { setMsg({ ok: false, text: e.message }); }
	};
	const remove = async () => {
		try { await api.deleteProfile(edit.name); setEdit(null); load(); say(`Profile ${edit.name} deleted`); } catch (e) { setMsg({ ok: false, text: e.message }); }
	};
	// the fans of the chosen agent with the profile each has (agent endpoint)
	const [tDetail, setTDetail] = useState(null);
	const [applied, setApplied] = useState(null);
	commandsVersion.value;
	useEffect(() => {
		setTDetail(null);
		if (target.agent) api.agent(target.agent).then(setTDetail, () => setTDetail(null));
	}, [target.agent, applied?.state === 'acknowledged']);
	const apply = () => {
		if (applyProblem) return;
		// assigned through the API, which queues apply_profile to the agent
		setApplied(trackCommand(target.agent, 'apply_profile', { fan_id: target.fan, sensor_id: target.sensor, profile: edit.name },
			`Profile ${edit.name} on ${target.agent} ${target.fan}`, api.assignProfile(target.agent, target.fan, edit.name, target.sensor)));
	};
	const tRec = fleet.get(target.agent);
	const using = (tDetail?.fans || []).filter((f) => f.profile);
	// what still stands between the choices and a valid assignment (null: none)
	const saved = edit && (list || []).find((p) => p.name === edit.name);
	const same = (x, y) => JSON.stringify([x.points, x.hysteresis, x.step]) === JSON.stringify([y.points, y.hysteresis, y.step]);
	const applyProblem = !target.agent ? 'Choose the agent, its fan and the sensor that drives it.'
		: !(tRec?.frame?.fans || []).some((f) => f.id === target.fan) ? `Choose a fan of ${target.agent}.`
		: !(tRec?.frame?.sensors || []).some((s) => s.id === target.sensor) ? `Choose the sensor that drives ${target.fan}.`
		: problem || !saved || !same(edit, saved) ? 'Save the profile first: the fan would get the saved curve, not the one shown.'
		: null;

	return html`
		<main id="main" class="view profiles" tabindex="-1">
			<h1>Fan profiles</h1>
			${error && html`<p class="error" role="alert">${error}</p>`}
			<div class="toolbar">
				<label class="field"><span>Profile</span>
					<select id="profile-select" value=${edit && !edit.isNew ? edit.name : ''} onChange=${(e) => setEdit(list.find((p) => p.name === e.currentTarget.value) || null)}>
						<option value="">choose…</option>
						${(list || []).map((p) => html`<option value=${p.name}>${p.name}</option>`)}
					</select></label>
				${admin && html`<button type="button" onClick=${() => setEdit(blank())}>New profile</button>`}
				<label class="field"><span>Mark the live temperature of</span>
					<select id="profile-live" value=${liveFrom} onChange=${(e) => setLiveFrom(e.currentTarget.value)}>
						<option value="">nothing</option>
						${agents.slice(0, 50).map((r) => (r.frame.sensors || []).map((s) => html`<option value=${`${r.id}|${s.id}`}>${r.id} · ${s.id}</option>`))}
					</select></label>
			</div>
			${list && !list.length && !edit && html`<p class="empty">No profiles yet.${admin ? ' Create one with “New profile”.' : ''}</p>`}
			${edit && html`
			<section class="card">
				<div class="curve-wrap">
					<div>
						<${CurveEditor} points=${edit.points} liveTemp=${liveTemp} label=${edit.name || 'new profile'} onChange=${admin ? (pts) => setEdit({ ...edit, points: pts }) : () => {}} />
						<p class="small muted">Drag a point, or focus it and use the arrow keys (shift: 5 at a time); Delete removes it. ${LIMITS.minPoints}–${LIMITS.maxPoints} points, temperatures strictly increasing.</p>
					</div>
					<div>
						<div class="form-grid">
							<label class="field"><span>Name</span><input id="profile-name" value=${edit.name} disabled=${!admin || !edit.isNew} onInput=${(e) => setEdit({ ...edit, name: e.currentTarget.value })} /></label>
							<label class="field"><span>Hysteresis (°C, 0–10)</span><input id="profile-hysteresis" type="number" step="0.5" min="0" max="10" value=${edit.hysteresis} disabled=${!admin} onInput=${(e) => setEdit({ ...edit, hysteresis: Number(e.currentTarget.value) })} /></label>
							<label class="field"><span>Step (%, 2–100)</span><input id="profile-step" type="number" step="1" min="2" max="100" value=${edit.step} disabled=${!admin} onInput=${(e) => setEdit({ ...edit, step: Number(e.currentTarget.value) })} /></label>
						</div>
						<table class="points">
							<caption class="sr-only">Points of the curve</caption>
							<thead><tr><th scope="col">#</th><th scope="col">°C</th><th scope="col">%</th><th scope="col"><span class="sr-only">remove</span></th></tr></thead>
							<tbody>${edit.points.map((p, i) => html`<tr>
								<td>${i + 1}</td>
								<td><input type="number" step="0.5" aria-label=${`temperature of point ${i + 1}`} value=${p[0]} disabled=${!admin} onInput=${(e) => setPoint(i, 0, e.currentTarget.value)} /></td>
								<td><input type="number" step="1" aria-label=${`speed of point ${i + 1}`} value=${p[1]} disabled=${!admin} onInput=${(e) => setPoint(i, 1, e.currentTarget.value)} /></td>
								<td>${admin && html`<button type="button" aria-label=${`remove point ${i + 1}`} onClick=${() => setEdit({ ...edit, points: removePoint(edit.points, i) })}>×</button>`}</td></tr>`)}
							</tbody>
						</table>
						${admin && html`<div class="actions"><button type="button" onClick=${() => setEdit({ ...edit, points: addPoint(edit.points) })}>Add point</button></div>`}
						${problem && html`<p class="error" role="alert" id="profile-problem">${problem}</p>`}
						${msg && html`<p class=${msg.ok ? 'ok-text' : 'error'} role="status">${msg.text}</p>`}
						${admin && html`<div class="actions"><button type="button" class="primary" disabled=${!!problem} onClick=${save}>Save profile</button>
							${!edit.isNew && html`<button type="button" onClick=${remove}>Delete</button>`}</div>`}
					</div>
				</div>
			</section>
			${canControl.value && !edit.isNew && html`
			<section class="card" style="margin-top:1rem" aria-labelledby="h-apply">
				<h2 id="h-apply">Apply to a fan</h2>
				<div class="toolbar">
					<label class="field"><span>Agent</span><select id="apply-agent" value=${target.agent} onChange=${(e) => setTarget({ agent: e.currentTarget.value, fan: '', sensor: '' })}>
						<option value="">choose…</option>${agents.map((r) => html`<option value=${r.id}>${r.id}</option>`)}</select></label>
					<label class="field"><span>Fan</span><select id="apply-fan" value=${target.fan} onChange=${(e) => setTarget({ ...target, fan: e.currentTarget.value })}>
						<option value="">choose…</option>${(tRec?.frame?.fans || []).map((f) => html`<option value=${f.id}>${f.id}</option>`)}</select></label>
					<label class="field"><span>Driving sensor</span><select id="apply-sensor" value=${target.sensor} onChange=${(e) => setTarget({ ...target, sensor: e.currentTarget.value })}>
						<option value="">choose…</option>${(tRec?.frame?.sensors || []).map((s) => html`<option value=${s.id}>${s.id}</option>`)}</select></label>
					<button type="button" class="primary" id="profile-apply" onClick=${apply} disabled=${!!applyProblem} aria-describedby="profile-apply-why">Assign and apply</button>
					${applied && html`<span class=${`cmd-state cmd-${applied.state}`} data-state=${applied.state} id="profile-apply-state">${describe(applied)}</span>`}
				</div>
				<p class="small muted" id="profile-apply-why">${applyProblem || `Ready: ${edit.name} on ${target.agent} ${target.fan}, driven by ${target.sensor}.`}</p>
				${using.length > 0 && html`<p class="small" id="profile-using">On ${target.agent}: ${using.map((f, i) => html`${i ? ', ' : ''}<strong>${f.fan_id}</strong> runs ${f.profile.name} from ${f.profile.sensor_id}`)}.</p>`}
			</section>`}`}
		</main>`;
}
