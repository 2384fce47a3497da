// Formatting of the numbers and times the views show.  Pure functions, so
// node's test runner checks them (tests/unit/format.test.js).

export function fmtTemp(t) {
	return t == null || !Number.isFinite(t) ? '–' : `${t.toFixed(1)} °C`;
}

export function fmtPct(v) {
	return v == null || !Number.isFinite(v) ? '–' : `${Math.round(v)} %`;
}

export function fmtRpm(v) {
	return v == null || !Number.isFinite(v) ? '–' : `${Math.round(v)} rpm`;
}

// "3 s ago", "5 min ago", "2 h ago", "4 d ago"; null for never.
export function fmtAgo(ts, now = Date.now()) {
	if (ts == null) return 'never';
	const ms = typeof ts === 'number' ? ts : Date.parse(ts);
	if (!Number.isFinite(ms)) return 'never';
	const s = Math.max(0, Math.round((now - ms) / 1000));
	if (s < 60) return `${s} s ago`;
	if (s < 3600) return `${Math.floor(s / 60)} min ago`;
	if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
	return `${Math.floor(s / 86400)} d ago`;
}

// How a temperature stands against its sensor's limits: the class the
// views colour it with.  Without limits a sensor is judged against the
// common 85/95 °C, since most hwmon drivers that omit them are CPUs.
export function tempLevel(t, max, crit) {
	if (t == null || !Number.isFinite(t)) return 'none';
	const hi = Number.isFinite(max) && max > 0 ? max : 85;
	const cr = Number.isFinite(crit) && crit > 0 ? crit : Math.max(hi + 10, 95);
	if (t >= cr) return 'crit';
	if (t >= hi) return 'hot';
	if (t >= hi - 10) return 'warm';
	return 'ok';
}

export function fmtDuration(ms) {
	if (ms == null || !Number.isFinite(ms)) return '–';
	if (ms < 1000) return `${Math.round(ms)} ms`;
	if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
	return `${Math.round(ms / 60000)} min`;
}

export function fmtTime(ts) {
	if (ts == null) return '–';
	const d = new Date(ts);
	return Number.isNaN(d.getTime()) ? '–' : d.toLocaleString();
}

// A time for a table cell: the time of day when it is today, else the date
// and the time to the minute (the full local time goes in the title).
export function fmtWhen(ts, now = Date.now()) {
	if (ts == null) return '–';
	const d = new Date(ts);
	if (Number.isNaN(d.getTime())) return '–';
	const p = (n) => String(n).padStart(2, '0');
	const hms = `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
	const n = new Date(now);
	if (d.getFullYear() === n.getFullYear() && d.getMonth() === n.getMonth() && d.getDate() === n.getDate()) return hms;
	return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${hms.slice(0, 5)}`;
}
