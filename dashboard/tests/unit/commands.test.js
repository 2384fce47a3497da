import { test } from 'node:test';
import assert from 'node:assert/strict';
import { newCommand, reduce, stateOf, describe, checkSpeed } from '../../src/lib/commands.js';

test('pending → sent → acknowledged', () => {
	const c = newCommand('r1', 'a', 'set_fan_speed', { fan_id: 'f', speed: 60 }, 0);
	assert.equal(c.state, 'pending');
	assert.equal(reduce(c, { kind: 'sent', request_id: 'r1', command_id: 'c1' }), c);
	assert.equal(c.state, 'sent');
	assert.equal(c.commandId, 'c1');
	reduce(c, { kind: 'result', command_id: 'c1', status: 'acked' }, 50);
	assert.equal(c.state, 'acknowledged');
	assert.equal(c.finishedAt, 50);
});

test('events about other commands are ignored', () => {
	const c = newCommand('r1', 'a', 'x', {});
	assert.equal(reduce(c, { kind: 'sent', request_id: 'r2', command_id: 'c2' }), null);
	assert.equal(c.state, 'pending');
});

test('refused by the server: failed with its message', () => {
	const c = newCommand('r1', 'a', 'set_fan_speed', {});
	reduce(c, { kind: 'refused', request_id: 'r1', message: 'speed 10 is outside the limits of fan "f"' });
	assert.equal(c.state, 'failed');
	assert.match(describe(c), /outside the limits/);
});

test('failed by the agent, expired and dead', () => {
	const f = newCommand('r', 'a', 'x', {});
	reduce(f, { kind: 'sent', request_id: 'r', command_id: 'c' });
	reduce(f, { kind: 'result', command_id: 'c', status: 'failed', error: 'no such fan' });
	assert.equal(f.state, 'failed');
	assert.equal(f.error, 'no such fan');
	const e = newCommand('r', 'a', 'x', {});
	reduce(e, { kind: 'sent', request_id: 'r', command_id: 'c' });
	reduce(e, { kind: 'result', command_id: 'c', status: 'dead' });
	assert.equal(e.state, 'expired');
	assert.match(describe(e), /expired/);
});

test('a final state is never left (a late sent after the ack)', () => {
	const c = newCommand('r', 'a', 'x', {});
	reduce(c, { kind: 'sent', request_id: 'r', command_id: 'c' });
	reduce(c, { kind: 'result', command_id: 'c', status: 'acked' });
	reduce(c, { kind: 'status', command_id: 'c', status: 'queued' });
	assert.equal(c.state, 'acknowledged');
});

test('server statuses map to the page states', () => {
	assert.deepEqual(['queued', 'sent', 'acked', 'failed', 'expired', 'dead', 'what'].map(stateOf),
		['sent', 'sent', 'acknowledged', 'failed', 'expired', 'expired', null]);
});

test('checkSpeed refuses what the server would', () => {
	assert.equal(checkSpeed(50, 30, 100), null);
	assert.match(checkSpeed(10, 30, 100), /minimum of 30/);
	assert.match(checkSpeed(101, 0, 100), /maximum of 100/);
	assert.equal(checkSpeed(30, 30, 100), null);
	assert.match(checkSpeed(NaN), /number/);
});
