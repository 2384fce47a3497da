// The fleet's state as plain records, one per agent, and the pure functions
// that fold API rows and live messages into them and order them for the
// list.  Records are mutated in place: at 10,000 agents and a frame every
// few seconds from each, copying them would be most of the work.

export const TREND_POINTS = 24;

export function newRecord(id) {
	return {
		id, name: id, hostname: '', group: null, status: 'unknown', lastSeen: null,
		sensors: null, fans: null, hottest: null, hottestSensor: null,
		fanMinRpm: null, fanMaxRpm: null, stalled: false, alerts: 0,
		trend: new Float32Array(TREND_POINTS), trendLen: 0, frame: null,
	};
}

const num = (v) => (v == null || v === '' ? null : Number(v));

// A row of GET /api/v1/agents (today) or of the fleet endpoint (issue 11);
// fields the row lacks keep what the record had.
export function applyRow(rec, row) {
	if (row.name != null) rec.name = row.name;
	if (row.hostname != null) rec.hostname = row.hostname;
	if ('group' in row || 'group_name' in row) rec.group = row.group ?? row.group_name ?? null;
	if (row.status != null) rec.status = row.status;
	else if (row.online != null) rec.status = row.online ? 'online' : 'offline';
	if (row.last_seen !== undefined) rec.lastSeen = row.last_seen ? Date.parse(row.last_seen) : null;
	const sensors = row.sensor_count ?? row.sensors;
	if (typeof sensors === 'number') rec.sensors = sensors;
	const fans = row.fan_count ?? row.fans;
	if (typeof fans === 'number') rec.fans = fans;
	const hot = row.hottest;
	if (hot && typeof hot === 'object') {
		rec.hottest = num(hot.temperature);
		rec.hottestSensor = hot.sensor_id ?? hot.sensor ?? null;
	} else if (typeof row.hottest_temp === 'number') {
		rec.hottest = row.hottest_temp;
		rec.hottestSensor = row.hottest_sensor ?? null;
	}
	const fs = row.fan_summary;
	if (fs && typeof fs === 'object') {
		rec.fanMinRpm = num(fs.min_rpm);
		rec.fanMaxRpm = num(fs.max_rpm);
		rec.stalled = !!(fs.stalled ?? fs.any_stalled);
	}
	const alerts = row.active_alerts ?? row.alerts;
	if (typeof alerts === 'number') rec.alerts = alerts;
	return rec;
}

// A live data frame (the agent's own frame, as committed).
// Agents send a sensor's type, max_temp and crit_temp only when they
// change (and in a connection's first frames): the record keeps them and
// puts them back on each frame's sensors.
const META = ['type', 'max_temp', 'crit_temp'];
export function applyFrame(rec, frame, receivedAt = Date.now()) {
	rec.meta = rec.meta || new Map();
	for (const s of Array.isArray(frame.sensors) ? frame.sensors : []) {
		if (!s || typeof s.id !== 'string') continue;
		let m = rec.meta.get(s.id);
		if (s.type != null) rec.meta.set(s.id, (m = { ...m, ...Object.fromEntries(META.filter((k) => s[k] != null).map((k) => [k, s[k]])) }));
		else if (m) for (const k of META) if (s[k] == null && m[k] != null) s[k] = m[k];
	}
	rec.frame = frame;
	rec.lastSeen = Number.isFinite(frame.timestamp) ? Math.min(frame.timestamp, receivedAt) : receivedAt;
	rec.status = 'online';
	const sensors = Array.isArray(frame.sensors) ? frame.sensors : [];
	const fans = Array.isArray(frame.fans) ? frame.fans : [];
	rec.sensors = sensors.length;
	rec.fans = fans.length;
	let hot = null, hotId = null;
	for (const s of sensors) {
		if (Number.isFinite(s.temperature) && (hot == null || s.temperature > hot)) {
			hot = s.temperature;
			hotId = s.id;
		}
	}
	rec.hottest = hot;
	rec.hottestSensor = hotId;
	let lo = null, hi = null, stalled = false;
	for (const f of fans) {
		if (Number.isFinite(f.rpm)) {
			if (lo == null || f.rpm < lo) lo = f.rpm;
			if (hi == null || f.rpm > hi) hi = f.rpm;
		}
		if (f.status === 'stalled') stalled = true;
	}
	rec.fanMinRpm = lo;
	rec.fanMaxRpm = hi;
	rec.stalled = stalled;
	if (hot != null) pushTrend(rec, hot);
	return rec;
}

export function pushTrend(rec, v) {
	if (rec.trendLen < TREND_POINTS) {
		rec.trend[rec.trendLen++] = v;
	} else {
		rec.trend.copyWithin(0, 1);
		rec.trend[TREND_POINTS - 1] = v;
	}
}

export function applyStatus(rec, status) {
	if (status) rec.status = status;
	return rec;
}

export function totals(records) {
	const t = { agents: 0, online: 0, offline: 0, alerting: 0, sensors: 0, fans: 0, hottest: null, hottestAgent: null };
	for (const r of records) {
		t.agents++;
		if (r.status === 'online') t.online++; else t.offline++;
		if (r.alerts > 0) t.alerting++;
		t.sensors += r.sensors || 0;
		t.fans += r.fans || 0;
		if (r.hottest != null && (t.hottest == null || r.hottest > t.hottest)) {
			t.hottest = r.hottest;
			t.hottestAgent = r.id;
		}
	}
	return t;
}

// one collator for every comparison (localeCompare builds one per call);
// numeric, so "host 2" sorts before "host 10"
const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });
const cmp = collator.compare;
const SORTS = {
	name: (a, b) => cmp(a.name, b.name) || cmp(a.id, b.id),
	status: (a, b) => (a.status === b.status ? 0 : a.status === 'online' ? -1 : 1) || SORTS.name(a, b),
	hottest: (a, b) => (b.hottest ?? -Infinity) - (a.hottest ?? -Infinity) || SORTS.name(a, b),
	last_seen: (a, b) => (b.lastSeen ?? 0) - (a.lastSeen ?? 0) || SORTS.name(a, b),
	group: (a, b) => cmp(a.group || '', b.group || '') || SORTS.name(a, b),
	alerts: (a, b) => b.alerts - a.alerts || SORTS.name(a, b),
};
export const SORT_KEYS = Object.keys(SORTS);

// The records the list shows, in order: text search over id, name,
// hostname and group; status "online", "offline" or "alerting"; a group.
export function select(records, { q = '', status = '', group = '', sort = 'name', desc = false } = {}) {
	const needle = q.trim().toLowerCase();
	const out = [];
	for (const r of records) {
		if (status === 'online' && r.status !== 'online') continue;
		if (status === 'offline' && r.status === 'online') continue;
		if (status === 'alerting' && !(r.alerts > 0)) continue;
		if (group && r.group !== group) continue;
		if (needle && !(r.id.toLowerCase().includes(needle) || r.name.toLowerCase().includes(needle) ||
			r.hostname.toLowerCase().includes(needle) || (r.group || '').toLowerCase().includes(needle))) continue;
		out.push(r);
	}
	out.sort(SORTS[sort] || SORTS.name);
	if (desc) out.reverse();
	return out;
}

export function groupsOf(records) {
	const s = new Set();
	for (const r of records) if (r.group) s.add(r.group);
	return [...s].sort();
}

// Which rows of a fixed-height list are on screen, with a little overscan
// so a fast scroll does not show blanks.
export function visibleRange(scrollTop, viewport, rowHeight, count, overscan = 6) {
	const first = Math.max(0, Math.floor(scrollTop / rowHeight) - overscan);
	const last = Math.min(count, Math.ceil((scrollTop + viewport) / rowHeight) + overscan);
	return { first, last: Math.max(first, last) };
}
