// The fleet: totals, then every agent in a list that renders only the rows
// on screen (fixed row height), so 10,000 agents scroll as smoothly as 10.
import { useState, useEffect, useRef, useMemo } from 'preact/hooks';
import { html } from '../html.js';
import { fleet, fleetVersion, fleetLoaded, fleetError, liveAlerts, canControl, api, say, statuses, statusVersion } from '../store.js';
import { ConfirmButton } from './confirm.js';
import { select, totals, groupsOf, visibleRange } from '../lib/fleet.js';
import { fmtTemp, fmtAgo, tempLevel } from '../lib/format.js';
import { Sparkline } from './sparkline.js';

function useNarrow() {
	const mq = useMemo(() => matchMedia('(max-width: 720px)'), []);
	const [narrow, setNarrow] = useState(mq.matches);
	useEffect(() => {
		const f = () => setNarrow(mq.matches);
		mq.addEventListener('change', f);
		return () => mq.removeEventListener('change', f);
	}, []);
	return narrow;
}

function Totals({ t }) {
	const item = (label, value, cls = '') => html`<div class="stat ${cls}"><div class="stat-value">${value}</div><div class="stat-label">${label}</div></div>`;
	return html`
		<section class="stats" aria-label="Fleet totals">
			${item('agents', t.agents)}
			${item('online', t.online, 'good')}
			${item('offline', t.offline, t.offline ? 'bad' : '')}
			${item('alerting', t.alerting, t.alerting ? 'bad' : '')}
			${item('sensors', t.sensors)}
			${item('fans', t.fans)}
			${item(t.hottestAgent ? `hottest (${t.hottestAgent})` : 'hottest', fmtTemp(t.hottest), `temp-${tempLevel(t.hottest)}`)}
		</section>`;
}

function fanSummary(r) {
	if (r.fanMinRpm == null) return r.fans ? `${r.fans} fan${r.fans === 1 ? '' : 's'}` : '–';
	const range = r.fanMinRpm === r.fanMaxRpm ? `${Math.round(r.fanMinRpm)}` : `${Math.round(r.fanMinRpm)}–${Math.round(r.fanMaxRpm)}`;
	return `${range} rpm`;
}

function Row({ r, top, height, index, count, now }) {
	const online = r.status === 'online';
	return html`
		<div class="row" role="row" aria-rowindex=${index + 2} style=${`transform:translateY(${top}px);height:${height}px`} data-agent=${r.id}>
			<div role="cell" class="c-name">
				<span class=${`dot ${online ? 'on' : 'off'}`} aria-hidden="true"></span>
				<a href=${`#/agent/${encodeURIComponent(r.id)}`} class="agent-link">${r.name}</a>
				<span class="sr-status">${online ? 'online' : 'offline'}</span>
				${r.name !== r.id && html`<span class="muted small id">${r.id}</span>`}
			</div>
			<div role="cell" class="c-group">${r.group || html`<span class="muted">–</span>`}</div>
			<div role="cell" class="c-seen" title=${r.lastSeen ? new Date(r.lastSeen).toLocaleString() : ''}>${online && (r.lastSeen == null || now - r.lastSeen < 5000) ? 'just now' : fmtAgo(r.lastSeen, now)}</div>
			<div role="cell" class="c-num c-sensors"><span class="lbl">sensors </span>${r.sensors ?? '–'}</div>
			<div role="cell" class="c-num c-fans"><span class="lbl">fans </span>${r.fans ?? '–'}</div>
			<div role="cell" class=${`c-num c-hot temp-${tempLevel(r.hottest)}`}>${fmtTemp(r.hottest)}</div>
			<div role="cell" class="c-fansum">${fanSummary(r)}${r.stalled && html` <span class="badge bad">stalled</span>`}</div>
			<div role="cell" class="c-alerts">${r.alerts > 0 ? html`<span class="badge bad">${r.alerts} alert${r.alerts > 1 ? 's' : ''}</span>` : ''}</div>
			<div role="cell" class="c-trend"><${Sparkline} values=${r.trend} len=${r.trendLen} /></div>
		</div>`;
}

function LiveAlerts() {
	const active = liveAlerts.value.filter((a) => a.state === 'firing');
	if (!active.length) return null;
	return html`
		<section class="card alerts-live" aria-labelledby="h-live-alerts">
			<h2 id="h-live-alerts">Firing alerts <span class="muted small">(live)</span></h2>
			<ul class="plain">${active.slice(0, 8).map((a) => html`
				<li data-alert=${a.alert_id}><span class=${`badge ${a.severity === 'critical' ? 'bad' : 'warn'}`}>${a.severity || 'alert'}</span>${' '}
					<strong>${a.rule}</strong> on <a href=${`#/agent/${encodeURIComponent(a.agent_id)}`}>${a.agent_id}</a>${a.target_id ? ` · ${a.target_id}` : ''}${a.value != null ? ` · ${Number(a.value).toFixed(1)}` : ''}</li>`)}
			</ul>
			${active.length > 8 && html`<p class="small muted">and ${active.length - 8} more</p>`}
		</section>`;
}

// Emergency stop and automatic control for the group shown, or the fleet,
// each behind a confirmation; the API queues one command per agent.
function FleetActions({ group }) {
	const [msg, setMsg] = useState(null);
	const target = group ? { group } : { fleet: true };
	const what = group ? `group ${group}` : 'the whole fleet';
	const run = async (fn, text) => {
		setMsg(null);
		try {
			const r = await fn(target);
			const n = r && (r.commands_queued ?? r.agents ?? (Array.isArray(r.command_ids) ? r.command_ids.length : null));
			setMsg({ ok: true, text: `${text} for ${what}${n != null ? `: ${n} agent${n === 1 ? '' : 's'}` : ''}`, ids: r?.command_ids || [] });
			say(`${text} for ${what}`);
		} catch (e) { setMsg({ ok: false, text: `Refused: ${e.message}` }); say(`Refused: ${e.message}`); }
	};
	// how the queued commands went, as the socket tells of them
	statusVersion.value;
	let outcome = null;
	if (msg?.ok && msg.ids.length) {
		const by = {};
		const waiting = [];
		for (const id of msg.ids) {
			const st = statuses.get(id);
			const s = st?.status === 'acked' ? 'acknowledged' : st?.status === 'sent' ? 'sent' : ['failed', 'expired', 'dead'].includes(st?.status) ? st.status : 'queued';
			by[s] = (by[s] || 0) + 1;
			if (s !== 'acknowledged' && st?.agentId) waiting.push(st.agentId);
		}
		outcome = `${['acknowledged', 'sent', 'queued', 'failed', 'expired', 'dead'].filter((k) => by[k]).map((k) => `${by[k]} ${k}`).join(', ')}${waiting.length ? ` (not yet: ${waiting.slice(0, 5).join(', ')}${waiting.length > 5 ? ' …' : ''})` : ''}`;
	}
	return html`<div class="actions fleet-actions">
		<${ConfirmButton} label=${group ? `Emergency stop group ${group}` : 'Emergency stop fleet'} cls="danger"
			confirmText=${`Drive every fan of ${what} to 100 % until automatic control is restored?`} onConfirm=${() => run(api.emergencyStop, 'Emergency stop sent')} />
		<${ConfirmButton} label=${group ? `Group ${group} automatic` : 'Fleet automatic'} confirmText=${`Give every fan of ${what} back to automatic control?`}
			onConfirm=${() => run(api.restoreAuto, 'Automatic control sent')} />
		${msg && html`<span class=${msg.ok ? 'ok-text small' : 'error small'} role="status" id="fleet-action-msg">${msg.text}</span>`}
		${outcome && html`<span class="small" id="fleet-action-outcome" data-acked=${msg.ids.filter((id) => statuses.get(id)?.status === 'acked').length}>${outcome}</span>`}
	</div>`;
}

export function Fleet() {
	const [q, setQ] = useState('');
	const [status, setStatus] = useState('');
	const [group, setGroup] = useState('');
	const [sort, setSort] = useState('name');
	const [scroll, setScroll] = useState({ top: 0, height: 600 });
	const box = useRef(null);
	const painted = useRef(false);
	const narrow = useNarrow();
	const rowH = narrow ? 76 : 44;
	const version = fleetVersion.value;

	const all = [...fleet.values()];
	// Re-ordering on every frame would make rows jump under the pointer:
	// the order is recomputed when the query changes, the membership
	// changes, or at most once a second.
	const orderRef = useRef({ key: '', at: 0, rows: [] });
	const key = `${q}|${status}|${group}|${sort}|${fleet.size}`;
	const now = Date.now();
	if (orderRef.current.key !== key || now - orderRef.current.at > 1000) {
		orderRef.current = { key, at: now, rows: select(all, { q, status, group, sort, desc: false }) };
	}
	const rows = orderRef.current.rows;
	const t = totals(all);
	const groups = groupsOf(all);

	useEffect(() => {
		const el = box.current;
		if (!el) return;
		const update = () => setScroll({ top: el.scrollTop, height: el.clientHeight });
		update();
		el.addEventListener('scroll', update, { passive: true });
		const ro = new ResizeObserver(update);
		ro.observe(el);
		return () => { el.removeEventListener('scroll', update); ro.disconnect(); };
	}, [fleetLoaded.value]);

	// First paint with data, measured in the page (the test reads it).
	useEffect(() => {
		if (painted.current || !rows.length) return;
		painted.current = true;
		requestAnimationFrame(() => {
			const m = (window.__pankha = window.__pankha || {});
			m.fleetPaintMs = performance.now();
			m.fleetPaintAgents = fleet.size;
			performance.mark('fleet-painted');
		});
	}, [rows.length]);

	const { first, last } = visibleRange(scroll.top, scroll.height, rowH, rows.length);
	const visible = [];
	for (let i = first; i < last; i++) {
		visible.push(html`<${Row} key=${rows[i].id} r=${rows[i]} top=${i * rowH} height=${rowH} index=${i} count=${rows.length} now=${now} />`);
	}

	return html`
		<main id="main" class="view fleet" data-version=${version}>
			<h1 class="view-title">Fleet</h1>
			<${Totals} t=${t} />
			<${LiveAlerts} />
			<div class="toolbar" role="search">
				<label class="field grow"><span>Search</span>
					<input type="search" value=${q} placeholder="name, id, host or group" onInput=${(e) => setQ(e.currentTarget.value)} /></label>
				<label class="field"><span>Status</span>
					<select value=${status} onChange=${(e) => setStatus(e.currentTarget.value)}>
						<option value="">all</option><option value="online">online</option>
						<option value="offline">offline</option><option value="alerting">alerting</option>
					</select></label>
				<label class="field"><span>Group</span>
					<select id="fleet-group" value=${group} onChange=${(e) => setGroup(e.currentTarget.value)}>
						<option value="">all</option>
						${groups.map((g) => html`<option value=${g}>${g}</option>`)}
					</select></label>
				<label class="field"><span>Sort by</span>
					<select value=${sort} onChange=${(e) => setSort(e.currentTarget.value)}>
						<option value="name">name</option><option value="status">status</option>
						<option value="hottest">hottest first</option><option value="last_seen">last seen</option>
						<option value="group">group</option><option value="alerts">alerts</option>
					</select></label>
			</div>
			${canControl.value && html`<${FleetActions} group=${group} />`}
			${fleetError.value && html`<p class="error" role="alert">Could not load the fleet: ${fleetError.value}</p>`}
			<p class="muted small" aria-live="polite" id="fleet-count">${fleetLoaded.value ? `${rows.length} of ${fleet.size} agents` : 'Loading the fleet…'}</p>
			<div class="grid" role="table" aria-label="Agents" aria-rowcount=${rows.length + 1}>
				<div class="row head" role="row" aria-rowindex="1">
					<div role="columnheader" class="c-name">agent</div><div role="columnheader" class="c-group">group</div>
					<div role="columnheader" class="c-seen">last seen</div><div role="columnheader" class="c-num c-sensors">sensors</div>
					<div role="columnheader" class="c-num c-fans">fans</div><div role="columnheader" class="c-num c-hot">hottest</div>
					<div role="columnheader" class="c-fansum">fan speeds</div><div role="columnheader" class="c-alerts">alerts</div>
					<div role="columnheader" class="c-trend">trend</div>
				</div>
				<div class="vlist" ref=${box} tabindex="0" role="rowgroup" aria-label="Agent rows, scrollable">
					<div class="vlist-inner" role="none" style=${`height:${rows.length * rowH}px`}>${visible}</div>
				</div>
			</div>
			${fleetLoaded.value && !fleet.size && html`<p class="empty">No agents yet. Register one with <code>pankha.register_agent()</code> or an enrollment key, and it shows up here when it connects.</p>`}
		</main>`;
}
