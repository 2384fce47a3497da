import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fmtTemp, fmtAgo, tempLevel, fmtPct, fmtRpm } from '../../src/lib/format.js';
import { reconnectDelay } from '../../src/lib/backoff.js';
import { takeToken, loadToken, saveToken } from '../../src/lib/token.js';
import { resolutionFor, toColumns, bucketSpacing, RANGES } from '../../src/lib/history.js';
import { errorFrom, createApi, ApiError } from '../../src/api.js';

test('formatting', () => {
	assert.equal(fmtTemp(45.25), '45.3 °C');
	assert.equal(fmtTemp(null), '–');
	assert.equal(fmtPct(59.6), '60 %');
	assert.equal(fmtRpm(1200.4), '1200 rpm');
	assert.equal(fmtAgo(null), 'never');
	assert.equal(fmtAgo(1000, 6000), '5 s ago');
	assert.equal(fmtAgo(0, 3 * 3600e3), '3 h ago');
});

test('temperatures are judged against their max and crit', () => {
	assert.equal(tempLevel(50, 80, 100), 'ok');
	assert.equal(tempLevel(72, 80, 100), 'warm');
	assert.equal(tempLevel(80, 80, 100), 'hot');
	assert.equal(tempLevel(100, 80, 100), 'crit');
	assert.equal(tempLevel(90, undefined, undefined), 'hot');
	assert.equal(tempLevel(null, 80, 100), 'none');
});

test('reconnect delays grow with jitter and stay under the cap', () => {
	assert.equal(reconnectDelay(1, () => 0), 500);
	assert.equal(reconnectDelay(1, () => 1), 1000);
	assert.equal(reconnectDelay(3, () => 1), 4000);
	assert.equal(reconnectDelay(40, () => 1), 30000);
	const seen = new Set(Array.from({ length: 20 }, () => reconnectDelay(5)));
	assert.ok(seen.size > 5, 'jittered');
});

test('a ?token= is taken from the address and removed from it', () => {
	assert.deepEqual(takeToken('http://h:1/?token=abc&x=1#/agent/a'), { token: 'abc', clean: '/?x=1#/agent/a' });
	assert.deepEqual(takeToken('http://h:1/?token=abc#/fleet'), { token: 'abc', clean: '/#/fleet' });
	assert.deepEqual(takeToken('http://h:1/#/fleet'), { token: null, clean: null });
	const m = new Map();
	const storage = { getItem: (k) => m.get(k) ?? null, setItem: (k, v) => m.set(k, v), removeItem: (k) => m.delete(k) };
	saveToken(storage, 't');
	assert.equal(loadToken(storage), 't');
	saveToken(storage, null);
	assert.equal(loadToken(storage), null);
});

test('history: the source the server reads for a span, and the columns for uPlot', () => {
	assert.equal(resolutionFor(0, 15 * 60e3).source, 'raw');
	assert.equal(resolutionFor(0, 2 * 3600e3).source, 'raw');
	assert.equal(resolutionFor(0, 24 * 3600e3).source, '1m');
	assert.equal(resolutionFor(0, 7 * 86400e3).source, '1h');
	assert.deepEqual(RANGES.map((r) => r.key), ['15m', '1h', '6h', '24h', '7d', '30d']);
	const [x, avg, lo, hi] = toColumns([{ bucket: '2026-01-01T00:00:00Z', min: 1, max: 3, avg: 2, samples: 3 },
		{ bucket: '2026-01-01T00:01:00Z', min: 2, max: 4, avg: 3, samples: 3 }]);
	assert.deepEqual([...x], [1767225600, 1767225660]);
	assert.deepEqual([...avg, ...lo, ...hi], [2, 3, 1, 2, 3, 4]);
	assert.equal(bucketSpacing(x), 60);
});

test('the API client reads both error shapes and sends the bearer token', async () => {
	assert.equal(errorFrom(400, { error: 'bad' }).message, 'bad');
	const e = errorFrom(422, { error: { code: 'out_of_range', message: 'speed too low', field: 'speed' } });
	assert.deepEqual([e.status, e.code, e.message, e.field], [422, 'out_of_range', 'speed too low', 'speed']);
	const calls = [];
	let unauthorized = 0;
	const api = createApi({
		getToken: () => 'tok',
		onUnauthorized: () => unauthorized++,
		fetchImpl: async (url, init) => {
			calls.push([url, init]);
			if (url.includes('/fleet')) return { ok: false, status: 404, text: async () => '{"error":"no such endpoint"}' };
			if (url.includes('/agents/x%2Fy/latest')) return { ok: false, status: 401, text: async () => '{"error":"invalid dashboard token"}' };
			return { ok: true, status: 200, text: async () => '[{"agent_id":"a"}]' };
		},
	});
	assert.deepEqual(await api.agents(), [{ agent_id: 'a' }]);
	assert.equal(calls[0][1].headers.Authorization, 'Bearer tok');
	assert.equal(await api.exists('/api/v1/fleet'), false);
	assert.equal(await api.exists('/api/v1/agents'), true);
	await assert.rejects(api.latest('x/y'), (err) => err instanceof ApiError && err.status === 401);
	assert.equal(unauthorized, 1);
	await api.history('a', 'cpu', new Date(0), null);
	assert.match(calls.at(-1)[0], /history\?series=cpu&from=1970-01-01T00%3A00%3A00.000Z$/);
});

test('table times: the time of day today, the date before', async () => {
	const { fmtWhen } = await import('../../src/lib/format.js');
	const now = new Date(2026, 11, 2, 13, 0, 0).getTime();
	assert.equal(fmtWhen(new Date(2026, 11, 2, 9, 5, 7).getTime(), now), '09:05:07');
	assert.equal(fmtWhen(new Date(2026, 10, 30, 23, 59, 1).getTime(), now), '2026-11-30 23:59');
	assert.equal(fmtWhen(null, now), '–');
	assert.equal(fmtWhen('not a time', now), '–');
});
