import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkSetting, parseSetting, sourceText } from '../../src/lib/settings.js';

// the definitions as GET /api/v1/settings/definitions has them
const interval = { key: 'update_interval', type: 'number', min: 0.5, max: 30, unit: 's' };
const level = { key: 'log_level', type: 'string', allowed: ['trace', 'debug', 'info', 'warn', 'error'] };
const control = { key: 'enable_fan_control', type: 'boolean' };

test('a setting is bounded by its definition', () => {
	assert.equal(checkSetting(interval, 2), null);
	assert.equal(checkSetting(interval, 0.5), null);
	assert.equal(checkSetting(interval, 30), null);
	assert.equal(checkSetting(interval, 31), 'update_interval must be at most 30 s');
	assert.equal(checkSetting(interval, 0.4), 'update_interval must be at least 0.5 s');
	assert.equal(checkSetting(interval, parseSetting(interval, '')), 'update_interval must be a number');
	assert.equal(checkSetting(interval, parseSetting(interval, 'abc')), 'update_interval must be a number');
	assert.equal(checkSetting(level, 'info'), null);
	assert.match(checkSetting(level, 'loud'), /one of trace, debug/);
	assert.equal(checkSetting(control, parseSetting(control, 'false')), null);
	assert.equal(parseSetting(interval, '2.5'), 2.5);
});

test('the source of a value is named', () => {
	assert.equal(sourceText({ source: 'default' }), 'built-in default');
	assert.equal(sourceText({ source: 'global', scope: 'global' }), 'from global');
	assert.equal(sourceText({ source: 'group', scope: 'group:lab' }), 'from group lab');
	assert.equal(sourceText({ source: 'agent', scope: 'agent:sim-1' }), 'set on this agent');
});
