// The life of a command as the page shows it: pending (asked, no answer
// from the bridge yet) → sent (queued with a command_id) → acknowledged,
// or failed (refused by the server, or the agent's error), or expired (the
// server gave up: expired or dead).  One reducer for every way news of a
// command arrives (the request's answer, command_result, command_status,
// the command endpoint), so each view shows the same thing.

export const FINAL = new Set(['acknowledged', 'failed', 'expired']);

// A server-side status → the page's state.
export function stateOf(status) {
	switch (status) {
		case 'queued': case 'sent': return 'sent';
		case 'acked': case 'acknowledged': return 'acknowledged';
		case 'failed': case 'refused': return 'failed';
		case 'expired': case 'dead': return 'expired';
		default: return null;
	}
}

export function newCommand(requestId, agentId, commandType, parameters, now = Date.now()) {
	return { requestId, agentId, commandType, parameters, commandId: null, state: 'pending',
		error: null, issuedAt: now, finishedAt: null };
}

// Fold one event into a command; returns the same object (changed) or null
// when the event is not about it.  A final state is never left: a late
// "sent" after an ack changes nothing.
export function reduce(cmd, ev, now = Date.now()) {
	const mine = (ev.request_id != null && ev.request_id === cmd.requestId) ||
		(ev.command_id != null && ev.command_id === cmd.commandId);
	if (!mine) return null;
	if (ev.command_id && !cmd.commandId) cmd.commandId = ev.command_id;
	if (FINAL.has(cmd.state)) return cmd;
	let next = null;
	if (ev.kind === 'sent') next = 'sent';
	else if (ev.kind === 'refused') { next = 'failed'; cmd.error = ev.message || 'refused'; }
	else if (ev.kind === 'result' || ev.kind === 'status') {
		next = stateOf(ev.status);
		if (ev.error) cmd.error = ev.error;
		else if (next === 'failed' && !cmd.error) cmd.error = 'the agent reported a failure';
		else if (next === 'expired' && !cmd.error) cmd.error = ev.status === 'dead' ? 'no delivery after every attempt' : 'expired before the agent acknowledged it';
	}
	if (next && next !== cmd.state) {
		cmd.state = next;
		if (FINAL.has(next)) cmd.finishedAt = now;
	}
	return cmd;
}

export function describe(cmd) {
	switch (cmd.state) {
		case 'pending': return 'pending';
		case 'sent': return 'sent, waiting for the agent';
		case 'acknowledged': return 'acknowledged';
		case 'failed': return `failed: ${cmd.error}`;
		case 'expired': return `expired: ${cmd.error}`;
		default: return cmd.state;
	}
}

// Whether a speed may be asked of a fan: the page refuses what the server
// would, with the same limits, before anything is sent.
export function checkSpeed(speed, min = 0, max = 100) {
	if (typeof speed !== 'number' || !Number.isFinite(speed)) return 'enter a number';
	if (speed < min) return `below this fan's minimum of ${min} %`;
	if (speed > max) return `above this fan's maximum of ${max} %`;
	return null;
}
