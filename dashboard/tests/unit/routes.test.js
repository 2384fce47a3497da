// Every request the API client makes is a route the bridge serves: the
// methods and paths come from the bridge's own route table
// (bridge/http_routes.c), so a client path that drifts from the server's
// (it happened: /acknowledge for /ack, PUT for PATCH) fails here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createApi } from '../../src/api.js';

const top = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const table = readFileSync(join(top, 'bridge', 'http_routes.c'), 'utf8');
const routes = [...table.matchAll(/(?:API_ROUTE\(|\{)"(GET|POST|PUT|PATCH|DELETE)", "(\/[^"]*)"/g)]
	.map(([, method, pattern]) => ({
		method,
		pattern,
		re: new RegExp('^' + pattern.replace(/\{[a-z_]+\}/g, '[^/]+') + '$'),
	}));

test('the route table was read', () => {
	assert.ok(routes.length > 40, `${routes.length} routes`);
	assert.ok(routes.some((r) => r.method === 'POST' && r.pattern === '/api/v1/alerts/{alert_id}/ack'));
});

test('every client call is a route the bridge serves, with its method', async () => {
	const calls = [];
	const api = createApi({
		getToken: () => 't',
		fetchImpl: async (url, init) => {
			calls.push({ method: init.method, path: url.split('?')[0] });
			return new Response('{}', { status: 200, headers: { 'Content-Type': 'application/json' } });
		},
	});
	const args = {
		latest: ['a1'], history: ['a1', 'cpu', 0, 1], agentSettings: ['a1'],
		sendCommand: ['a1', 'set_fan_speed', { fan_id: 'f', speed: 50 }],
		setSetting: ['global', 'fan_step', 5], agent: ['a1'], command: ['c1'],
		commands: [{ agent_id: 'a1' }], settingValues: ['global'], clearSetting: ['global', 'fan_step'],
		createProfile: [{ name: 'p' }], updateProfile: ['p', {}], deleteProfile: ['p'],
		assignProfile: ['a1', 'f', 'p', 's'], emergencyStop: [{ fleet: true }], restoreAuto: [{ group: 'g' }],
		ackAlert: [7], silence: [{ rule_id: 1 }], createAlertRule: [{}], deleteAlertRule: [3],
	};
	const skip = new Set(['call', 'exists']);
	for (const [name, fn] of Object.entries(api)) {
		if (skip.has(name) || typeof fn !== 'function') continue;
		calls.length = 0;
		await fn(...(args[name] || []));
		assert.equal(calls.length, 1, `${name} makes one request`);
		const { method, path } = calls[0];
		assert.ok(routes.some((r) => r.method === method && r.re.test(path)),
			`${name}: ${method} ${path} is not a route of bridge/http_routes.c`);
	}
	// and the commands list without an agent is the fleet-wide route
	calls.length = 0;
	await api.commands({});
	assert.equal(calls[0].path, '/api/v1/commands');
});
