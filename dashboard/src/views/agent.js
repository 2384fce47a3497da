// One agent: sensors grouped by type and coloured against their max/crit,
// fans with rpm, speed and target (and the controls, for operators and
// admins), system health, and the history charts.
import { useEffect, useState } from 'preact/hooks';
import { html } from '../html.js';
import { fleet, fleetVersion, record, api, canControl, sendCommand, commandsVersion, commands, endpoints, say } from '../store.js';
import { fmtTemp, fmtPct, fmtRpm, fmtAgo, tempLevel } from '../lib/format.js';
import { checkSpeed, describe, FINAL } from '../lib/commands.js';
import { HistoryChart } from './chart.js';
import { ConfirmButton } from './confirm.js';

const TYPE_ORDER = ['cpu', 'gpu', 'motherboard', 'nvme', 'storage', 'disk', 'memory', 'chipset', 'other'];

function groupSensors(sensors) {
	const groups = new Map();
	for (const s of sensors) {
		const type = s.type || 'other';
		if (!groups.has(type)) groups.set(type, []);
		groups.get(type).push(s);
	}
	return [...groups.entries()].sort((a, b) => {
		const ia = TYPE_ORDER.indexOf(a[0]), ib = TYPE_ORDER.indexOf(b[0]);
		return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || a[0].localeCompare(b[0]);
	});
}

// A frame-like view of GET /latest, for the moments before a live frame.
function frameFromLatest(l) {
	if (!l) return null;
	return {
		timestamp: Date.parse(l.ts),
		sensors: Object.entries(l.temperatures || {}).map(([id, temperature]) => ({ id, temperature })),
		fans: Object.entries(l.fans || {}).map(([id, f]) => ({ id, rpm: f.rpm, speed: f.speed, targetSpeed: f.target_speed, status: f.status })),
		systemHealth: { cpuUsage: l.cpu_usage, memoryUsage: l.memory_usage, diskUsage: l.disk_usage, agentUptime: l.agent_uptime, load1: l.load1,
			netRxBytesPerSec: l.net_rx_bytes_per_sec, netTxBytesPerSec: l.net_tx_bytes_per_sec },
	};
}

function latestCommand(agentId, fanId) {
	let best = null;
	for (const c of commands.values()) {
		if (c.agentId !== agentId) continue;
		const f = c.parameters && c.parameters.fan_id;
		if ((fanId == null ? f == null : f === fanId) && (!best || c.issuedAt > best.issuedAt)) best = c;
	}
	return best;
}

function CommandState({ cmd }) {
	if (!cmd) return null;
	return html`<span class=${`cmd-state cmd-${cmd.state}`} data-state=${cmd.state}>${cmd.commandType === 'set_fan_speed' ? `${cmd.parameters.speed} %: ` : ''}${describe(cmd)}</span>`;
}

function FanControl({ agentId, fan, limits }) {
	const min = limits?.min_speed ?? 0, max = limits?.max_speed ?? 100;
	const [value, setValue] = useState(Math.min(max, Math.max(min, Math.round(fan.targetSpeed ?? fan.speed ?? min))));
	const [problem, setProblem] = useState(null);
	commandsVersion.value;
	const cmd = latestCommand(agentId, fan.id);
	const busy = cmd && !FINAL.has(cmd.state);
	const send = (speed) => {
		const p = checkSpeed(speed, min, max);
		setProblem(p);
		if (p) { say(`Not sent: ${p}`); return; }
		sendCommand(agentId, 'set_fan_speed', { fan_id: fan.id, speed }, `Fan ${fan.id} to ${speed} %`);
	};
	const id = `fan-${fan.id}`;
	return html`
		<div class="fan-control">
			<label class="sr-only" for=${`${id}-range`}>Speed of ${fan.id} (${min} to ${max} %)</label>
			<span class="small muted" aria-hidden="true">${min} %</span>
			<input id=${`${id}-range`} type="range" min=${min} max=${max} step="1" value=${value} data-fan=${fan.id}
				onInput=${(e) => setValue(Number(e.currentTarget.value))}
				onChange=${(e) => send(Number(e.currentTarget.value))} />
			<span class="small muted" aria-hidden="true">${max} %</span>
			<form onSubmit=${(e) => { e.preventDefault(); send(Number(e.currentTarget.elements.speed.value)); }} class="fan-control">
				<label class="sr-only" for=${`${id}-num`}>Exact speed of ${fan.id} in percent</label>
				<input id=${`${id}-num`} name="speed" type="number" step="1" value=${value} data-fan=${fan.id}
					aria-describedby=${`${id}-problem`} onInput=${(e) => { const n = Number(e.currentTarget.value); if (Number.isFinite(n)) setValue(n); }} />
				<button type="submit" disabled=${busy}>Set</button>
			</form>
			<button type="button" onClick=${() => sendCommand(agentId, 'restore_auto', { fan_id: fan.id }, `Fan ${fan.id} back to automatic`)}>Auto</button>
			<span id=${`${id}-problem`} class="error small" role=${problem ? 'alert' : undefined}>${problem || ''}</span>
			<${CommandState} cmd=${cmd} />
		</div>`;
}

function Fan({ agentId, fan, limits, control }) {
	const target = fan.targetSpeed;
	const overridden = target != null && fan.speed != null && Math.abs(target - fan.speed) > 2;
	return html`
		<div class="fan" data-fan=${fan.id}>
			<div class="fan-head">
				<strong>${fan.id}</strong>
				<span class="fan-figures">
					<span class="rpm">${fmtRpm(fan.rpm)}</span> · speed <span class="speed">${fmtPct(fan.speed)}</span> · target <span class="target">${fmtPct(target)}</span>
					${fan.status && fan.status !== 'ok' && html` <span class=${`badge ${fan.status === 'stalled' || fan.status === 'error' || fan.status === 'critical' ? 'bad' : 'warn'}`}>${fan.status}</span>`}
				</span>
			</div>
			${overridden && html`<div class="override">actual speed differs from the commanded ${fmtPct(target)}: something else drives this fan</div>`}
			<div class="small muted">limits ${limits?.min_speed ?? 0}–${limits?.max_speed ?? 100} %</div>
			${control && html`<${FanControl} agentId=${agentId} fan=${fan} limits=${limits} />`}
		</div>`;
}

const pickSeries = (frame, series) => {
	const s = (frame.sensors || []).find((x) => x.id === series);
	if (s) return s.temperature;
	const f = (frame.fans || []).find((x) => x.id === series);
	return f ? f.rpm : null;
};

export function Agent({ arg: id }) {
	fleetVersion.value;
	const rec = fleet.get(id) || record(id);
	const [latest, setLatest] = useState(null);
	const [settings, setSettings] = useState(null);
	const [detail, setDetail] = useState(null);
	const [error, setError] = useState(null);
	const [sensor, setSensor] = useState(null);
	const [fanSeries, setFanSeries] = useState(null);
	const control = canControl.value;

	useEffect(() => {
		setError(null);
		api.latest(id).then(setLatest, (e) => setError(e.status === 404 ? null : e.message));
		api.agentSettings(id).then(setSettings, () => setSettings(null));
		if (endpoints.value.fleet) api.agent(id).then(setDetail, () => setDetail(null));
	}, [id]);

	const frame = rec.frame || frameFromLatest(latest);
	const catalog = new Map((detail?.sensors || []).map((s) => [s.sensor_id ?? s.id, s]));
	const sensors = (frame?.sensors || []).map((s) => ({ ...catalog.get(s.id), ...s }));
	const fans = frame?.fans || [];
	const limits = settings?.fans || {};
	const health = frame?.systemHealth || {};
	const hottest = sensors.reduce((a, s) => (a == null || s.temperature > a.temperature ? s : a), null);
	const sensorId = sensor || hottest?.id || null;
	const fanId = fanSeries || fans[0]?.id || null;

	return html`
		<main id="main" class="view agent" tabindex="-1">
			<p class="small"><a href="#/fleet">← Fleet</a></p>
			<div class="agent-head">
				<h1>${rec.name || id}</h1>
				<span class=${`badge ${rec.status === 'online' ? 'good' : 'bad'}`} id="agent-status">${rec.status}</span>
				<span class="muted small">${id}${rec.hostname ? ` · ${rec.hostname}` : ''}${rec.group ? ` · group ${rec.group}` : ''} · last frame ${frame ? fmtAgo(frame.timestamp) : 'never'}${' · '}<a href=${`#/commands/${encodeURIComponent(id)}`}>command history</a> · <a href=${`#/settings/${encodeURIComponent(id)}`}>settings</a></span>
				${control && html`<div class="actions" style="margin:0 0 0 auto">
					<${ConfirmButton} label="Emergency stop" cls="danger" confirmText=${`Drive every fan of ${rec.name || id} to 100 % until automatic control is restored?`}
						onConfirm=${() => sendCommand(id, 'emergency_stop', {}, `Emergency stop of ${id}`)} />
					<button type="button" onClick=${() => sendCommand(id, 'restore_auto', {}, `Automatic control of ${id}`)}>All fans automatic</button>
					<${CommandState} cmd=${latestCommand(id, null)} />
				</div>`}
			</div>
			${error && html`<p class="error" role="alert">${error}</p>`}
			${!frame && !error && html`<p class="empty">No frame from this agent yet.</p>`}
			${frame && html`
			<div class="panels">
				<section class="card" aria-labelledby="h-sensors">
					<h2 id="h-sensors">Sensors <span class="muted small">(${sensors.length})</span></h2>
					${groupSensors(sensors).map(([type, list]) => html`
						<div class="sensor-group">
							<h3>${type}</h3>
							<dl class="kv">${list.map((s) => html`
								<dt>${s.label || s.id}${s.max_temp ? html`<span class="limits">max ${s.max_temp}${s.crit_temp ? ` · crit ${s.crit_temp}` : ''}</span>` : ''}</dt>
								<dd class=${`temp-${tempLevel(s.temperature, s.max_temp, s.crit_temp)}`} data-sensor=${s.id}>${fmtTemp(s.temperature)}</dd>`)}
							</dl>
						</div>`)}
				</section>
				<section class="card" aria-labelledby="h-fans">
					<h2 id="h-fans">Fans <span class="muted small">(${fans.length})</span></h2>
					${fans.map((f) => html`<${Fan} key=${f.id} agentId=${id} fan=${f} limits=${limits[f.id]} control=${control} />`)}
					${!fans.length && html`<p class="muted">This agent reports no fans.</p>`}
				</section>
				<section class="card" aria-labelledby="h-health">
					<h2 id="h-health">System health</h2>
					<dl class="kv">
						<dt>CPU</dt><dd>${fmtPct(health.cpuUsage)}</dd>
						<dt>Memory</dt><dd>${fmtPct(health.memoryUsage)}</dd>
						${health.diskUsage != null && html`<dt>Disk /</dt><dd>${fmtPct(health.diskUsage)}</dd>`}
						${health.load1 != null && html`<dt>Load (1 min)</dt><dd>${health.load1.toFixed(2)}</dd>`}
						${health.agentUptime != null && html`<dt>Agent uptime</dt><dd>${Math.round(health.agentUptime / 60)} min</dd>`}
						${health.netRxBytesPerSec != null && html`<dt>Network in / out</dt><dd>${Math.round(health.netRxBytesPerSec / 1024)} / ${Math.round((health.netTxBytesPerSec || 0) / 1024)} KB/s</dd>`}
					</dl>
				</section>
			</div>
			<section class="card chart-card" aria-labelledby="h-temp-chart">
				<div class="toolbar"><h2 id="h-temp-chart" class="grow">Temperature history</h2>
					<label class="field"><span>Sensor</span>
						<select value=${sensorId} onChange=${(e) => setSensor(e.currentTarget.value)}>
							${sensors.map((s) => html`<option value=${s.id}>${s.id}</option>`)}
						</select></label></div>
				${sensorId && html`<${HistoryChart} agentId=${id} series=${sensorId} unit="°C" label=${sensorId} pick=${pickSeries} />`}
			</section>
			${fanId && html`
			<section class="card chart-card" aria-labelledby="h-fan-chart">
				<div class="toolbar"><h2 id="h-fan-chart" class="grow">Fan history</h2>
					<label class="field"><span>Fan</span>
						<select value=${fanId} onChange=${(e) => setFanSeries(e.currentTarget.value)}>
							${fans.map((f) => html`<option value=${f.id}>${f.id}</option>`)}
						</select></label></div>
				<${HistoryChart} agentId=${id} series=${fanId} unit="rpm" label=${fanId} pick=${pickSeries} />
			</section>`}`}
		</main>`;
}
