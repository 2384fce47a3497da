import { test } from 'node:test';
import assert from 'node:assert/strict';
import { newRecord, applyRow, applyFrame, applyStatus, totals, select, visibleRange, TREND_POINTS, groupsOf } from '../../src/lib/fleet.js';

const frame = (temps, fans = [], ts = 1000) => ({
	timestamp: ts,
	sensors: temps.map((t, i) => ({ id: `s${i}`, temperature: t, type: 'cpu' })),
	fans,
});

test('a row of GET /api/v1/agents fills the record', () => {
	const r = applyRow(newRecord('a'), { agent_id: 'a', name: 'Alpha', hostname: 'h', status: 'online', last_seen: '2026-01-01T00:00:00Z', sensors: 27, fans: 6 });
	assert.equal(r.name, 'Alpha');
	assert.equal(r.sensors, 27);
	assert.equal(r.fans, 6);
	assert.equal(r.status, 'online');
	assert.equal(r.lastSeen, Date.parse('2026-01-01T00:00:00Z'));
});

test('a fleet row of issue 11 (hottest, fan summary, alerts, group) fills the record', () => {
	const r = applyRow(newRecord('a'), { agent_id: 'a', online: false, group: 'rack1', sensor_count: 3, fan_count: 2,
		hottest: { temperature: 71.5, sensor_id: 'cpu' }, fan_summary: { min_rpm: 300, max_rpm: 900, stalled: true }, active_alerts: 2 });
	assert.deepEqual([r.status, r.group, r.sensors, r.fans, r.hottest, r.hottestSensor, r.fanMinRpm, r.fanMaxRpm, r.stalled, r.alerts],
		['offline', 'rack1', 3, 2, 71.5, 'cpu', 300, 900, true, 2]);
});

test('a frame gives counts, the hottest sensor, the fan summary and a trend point', () => {
	const r = applyFrame(newRecord('a'), frame([40, 62.5, 50], [{ id: 'f1', rpm: 1200 }, { id: 'f2', rpm: 0, status: 'stalled' }]), 5000);
	assert.equal(r.sensors, 3);
	assert.equal(r.fans, 2);
	assert.equal(r.hottest, 62.5);
	assert.equal(r.hottestSensor, 's1');
	assert.equal(r.fanMinRpm, 0);
	assert.equal(r.fanMaxRpm, 1200);
	assert.equal(r.stalled, true);
	assert.equal(r.status, 'online');
	assert.equal(r.trendLen, 1);
});

test('the trend keeps the last points only', () => {
	const r = newRecord('a');
	for (let i = 0; i < TREND_POINTS + 5; i++) applyFrame(r, frame([i]));
	assert.equal(r.trendLen, TREND_POINTS);
	assert.equal(r.trend[0], 5);
	assert.equal(r.trend[TREND_POINTS - 1], TREND_POINTS + 4);
});

test('a frame without temperatures leaves no hottest value', () => {
	const r = applyFrame(newRecord('a'), frame([]));
	assert.equal(r.hottest, null);
	assert.equal(r.trendLen, 0);
});

test('totals count online, offline, alerting, sensors, fans and the hottest', () => {
	const a = applyFrame(newRecord('a'), frame([50, 60]));
	const b = applyStatus(applyRow(newRecord('b'), { sensors: 4, fans: 1 }), 'offline');
	b.alerts = 1;
	const t = totals([a, b]);
	assert.deepEqual(t, { agents: 2, online: 1, offline: 1, alerting: 1, sensors: 6, fans: 1, hottest: 60, hottestAgent: 'a' });
});

test('select searches, filters and sorts', () => {
	const mk = (id, name, status, hot, group) => Object.assign(newRecord(id), { name, status, hottest: hot, group });
	const rs = [mk('c', 'Charlie', 'online', 50, 'g1'), mk('a', 'Alpha', 'offline', 70, 'g2'), mk('b', 'Bravo', 'online', null, 'g1')];
	assert.deepEqual(select(rs).map((r) => r.id), ['a', 'b', 'c']);
	assert.deepEqual(select(rs, { sort: 'hottest' }).map((r) => r.id), ['a', 'c', 'b']);
	assert.deepEqual(select(rs, { status: 'online' }).map((r) => r.id), ['b', 'c']);
	assert.deepEqual(select(rs, { status: 'offline' }).map((r) => r.id), ['a']);
	assert.deepEqual(select(rs, { group: 'g1', sort: 'name', desc: true }).map((r) => r.id), ['c', 'b']);
	assert.deepEqual(select(rs, { q: 'RAV' }).map((r) => r.id), ['b']);
	assert.deepEqual(groupsOf(rs), ['g1', 'g2']);
});

test('visibleRange renders only the rows on screen (plus overscan) at 10,000 agents', () => {
	const { first, last } = visibleRange(44 * 5000, 600, 44, 10000, 6);
	assert.equal(first, 4994);
	assert.ok(last - first < 40, `${last - first} rows`);
	assert.deepEqual(visibleRange(0, 600, 44, 3), { first: 0, last: 3 });
	assert.deepEqual(visibleRange(0, 600, 44, 0), { first: 0, last: 0 });
});

test('select over 10,000 records finds its matches (the time is printed)', () => {
	const rs = [];
	for (let i = 0; i < 10000; i++) rs.push(Object.assign(newRecord(`agent-${i}`), { hottest: (i * 7919) % 90, status: i % 10 ? 'online' : 'offline' }));
	const t0 = performance.now();
	const out = select(rs, { sort: 'hottest', status: 'online', q: 'agent-1' });
	const ms = performance.now() - t0;
	assert.ok(out.length > 0);
	console.log(`# select of 10,000 records: ${ms.toFixed(1)} ms`);
});

test('a sensor\'s type and limits sent once are kept for the frames that leave them out', async () => {
	const { newRecord, applyFrame } = await import('../../src/lib/fleet.js');
	const r = newRecord('a');
	applyFrame(r, { timestamp: 1, sensors: [{ id: 'cpu', temperature: 40, type: 'cpu', max_temp: 80, crit_temp: 95 }], fans: [] }, 2);
	const f = { timestamp: 3, sensors: [{ id: 'cpu', temperature: 41 }, { id: 'new', temperature: 30 }], fans: [] };
	applyFrame(r, f, 4);
	assert.deepEqual(f.sensors[0], { id: 'cpu', temperature: 41, type: 'cpu', max_temp: 80, crit_temp: 95 });
	assert.equal(f.sensors[1].type, undefined);
});
