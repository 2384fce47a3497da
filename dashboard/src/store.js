// The one store: what the socket and the API deliver, as signals the views
// read.  Only this module and api.js/live.js talk to the bridge; views call
// the actions exported here.
import { signal, computed, batch } from '@preact/signals';
import { createApi, ApiError, VIEW_ENDPOINTS } from './api.js';
import { createLive } from './live.js';
import { newRecord, applyRow, applyFrame, applyStatus, pushTrend } from './lib/fleet.js';
import { newCommand, reduce, describe, FINAL } from './lib/commands.js';
import { takeToken, loadToken, saveToken } from './lib/token.js';

export const auth = signal({ token: null, user: null, role: null, error: null, checking: false });
export const conn = signal({ state: 'idle', attempt: 0 });
export const paused = signal(false);
export const endpoints = signal({});
export const announcement = signal('');
export const fleetVersion = signal(0);
export const fleetLoaded = signal(false);
export const fleetError = signal(null);
export const commandsVersion = signal(0);
export const liveAlerts = signal([]);

export const role = computed(() => auth.value.role);
export const canControl = computed(() => role.value === 'operator' || role.value === 'admin');
export const isAdmin = computed(() => role.value === 'admin');

// id → record; mutated in place, announced through fleetVersion.
export const fleet = new Map();
// request id → command
export const commands = new Map();
const frameListeners = new Set();

// The agent list early.js asked for, taken once by the same request.
function takeEarly(path, opts) {
	const e = window.__pankha && window.__pankha.early;
	if (!e || e.path !== path || (opts.method || 'GET') !== 'GET' || opts.headers.Authorization !== `Bearer ${e.token}`) return null;
	window.__pankha.early = null;
	return e.response;
}

export const api = createApi({
	getToken: () => auth.value.token,
	fetchImpl: (path, opts) => takeEarly(path, opts) || fetch(path, opts),
	onUnauthorized: () => signOut('This token was refused: it is wrong, expired or revoked.'),
});

let dirty = false;
function touchFleet() {
	if (dirty) return;
	dirty = true;
	requestAnimationFrame(() => {
		dirty = false;
		if (!paused.value) fleetVersion.value++;
	});
}
paused.subscribe((p) => { if (!p) fleetVersion.value++; });

export function say(text) {
	// the same text twice must still be read out
	announcement.value = '';
	setTimeout(() => { announcement.value = text; }, 30);
}

export function record(id) {
	let r = fleet.get(id);
	if (!r) {
		r = newRecord(id);
		fleet.set(id, r);
	}
	return r;
}

export function onFrame(fn) {
	frameListeners.add(fn);
	return () => frameListeners.delete(fn);
}

function handleMessage(m) {
	const d = m.data || {};
	switch (m.type) {
		case 'connected':
			auth.value = { ...auth.value, user: d.user ?? auth.value.user, role: d.role ?? auth.value.role };
			break;
		case 'data': {
			const id = m.agent_id || d.agentId;
			if (!id) break;
			const rec = applyFrame(record(id), d);
			for (const fn of frameListeners) fn(id, d, rec);
			touchFleet();
			break;
		}
		case 'agent_status':
			if (d.agent_id) {
				const rec = applyStatus(record(d.agent_id), d.status);
				if (d.status !== 'online' && d.last_seen) rec.lastSeen = Date.parse(d.last_seen);
				touchFleet();
			}
			break;
		case 'command_sent':
			commandEvent({ kind: 'sent', request_id: d.request_id, command_id: d.command_id });
			break;
		case 'command_result':
			commandEvent({ kind: 'result', command_id: d.command_id, status: d.status, error: d.error, agent_id: d.agent_id });
			break;
		case 'command_status':
			commandEvent({ kind: 'status', command_id: d.command_id, status: d.status, error: d.error, agent_id: d.agent_id });
			break;
		case 'error':
			if (d.request_id) commandEvent({ kind: 'refused', request_id: d.request_id, message: d.message });
			break;
		case 'alert':
			applyAlert(d);
			break;
		default:
			break;
	}
}

// Alerts as they fire and resolve (NOTIFY pankha_alert through /ws/ui):
// the live list keeps the newest state of each alert, and each agent's
// record counts its firing ones.
const firing = new Map();	// agent id → Set of alert ids
export function applyAlert(d) {
	const key = d.alert_id ?? `${d.rule}|${d.agent_id}|${d.target_id}`;
	const rest = liveAlerts.value.filter((a) => (a.alert_id ?? `${a.rule}|${a.agent_id}|${a.target_id}`) !== key);
	liveAlerts.value = [{ ...d, received: Date.now() }, ...rest].slice(0, 200);
	if (d.agent_id) {
		let set = firing.get(d.agent_id);
		if (!set) firing.set(d.agent_id, (set = new Set()));
		if (d.state === 'firing') set.add(key); else set.delete(key);
		record(d.agent_id).alerts = set.size;
		touchFleet();
	}
	if (d.state === 'firing' && !d.acknowledged_at) say(`Alert ${d.severity ?? ''}: ${d.rule ?? 'rule'} on ${d.agent_id ?? 'the fleet'}${d.target_id ? ` (${d.target_id})` : ''}`);
}

// The newest status of every command the socket told of lately, tracked
// by the page or not: a group's emergency stop answers with its command
// ids, whose statuses may have arrived before the answer did.
export const statuses = new Map();	// command id -> { status, agentId }
export const statusVersion = signal(0);
let statusDirty = false;
function noteStatus(id, status, agentId) {
	if (!id || !status) return;
	const old = statuses.get(id);
	statuses.delete(id);
	statuses.set(id, { status, agentId: agentId ?? old?.agentId ?? null });
	for (const k of statuses.keys()) { if (statuses.size <= 5000) break; statuses.delete(k); }
	if (statusDirty) return;
	statusDirty = true;
	requestAnimationFrame(() => { statusDirty = false; statusVersion.value++; });
}

function commandEvent(ev) {
	if (ev.command_id && ev.status) noteStatus(ev.command_id, ev.status, ev.agent_id);
	for (const cmd of commands.values()) {
		const before = cmd.state;
		if (reduce(cmd, ev) && cmd.state !== before) {
			commandsVersion.value++;
			if (FINAL.has(cmd.state)) {
				say(`${cmd.label}: ${describe(cmd)}`);
				if (cmd.state === 'failed' && !ev.error && cmd.commandId && endpoints.value.commands) fetchCommandError(cmd);
			}
		}
	}
}

// command_result carries no error text; the command endpoint (issue 11) does.
async function fetchCommandError(cmd) {
	try {
		const c = await api.command(cmd.commandId);
		if (c && c.error) {
			cmd.error = c.error;
			commandsVersion.value++;
		}
	} catch { /* keep the generic text */ }
}

let seq = 0;
// Send a command; returns the tracked command.  Over the socket when it is
// open (the answer carries our request_id), else over HTTP.
export function sendCommand(agentId, commandType, parameters, label) {
	const requestId = `r${Date.now().toString(36)}-${++seq}`;
	const cmd = newCommand(requestId, agentId, commandType, parameters);
	cmd.label = label || `${commandType} on ${agentId}`;
	commands.set(requestId, cmd);
	// a long session keeps the newest 200 (a Map iterates oldest first)
	for (const k of commands.keys()) { if (commands.size <= 200) break; commands.delete(k); }
	commandsVersion.value++;
	const viaSocket = live && live.send({ type: 'command', data: { agent_id: agentId, command_type: commandType, parameters, request_id: requestId } });
	if (!viaSocket) {
		api.sendCommand(agentId, commandType, parameters).then(
			(r) => { commandEvent({ kind: 'sent', request_id: requestId, command_id: r.command_id }); pollCommand(cmd); },
			(e) => commandEvent({ kind: 'refused', request_id: requestId, message: e.message }));
	}
	return cmd;
}

// A command the API queued for us (a profile assignment answers with the
// apply_profile it queued): tracked like one sent from the page.
export function trackCommand(agentId, commandType, parameters, label, request) {
	const requestId = `r${Date.now().toString(36)}-${++seq}`;
	const cmd = newCommand(requestId, agentId, commandType, parameters);
	cmd.label = label;
	commands.set(requestId, cmd);
	commandsVersion.value++;
	request.then(
		(r) => {
			if (r && r.command_id) { commandEvent({ kind: 'sent', request_id: requestId, command_id: r.command_id }); pollCommand(cmd, true); }
			else commandEvent({ kind: 'status', request_id: requestId, status: 'acked' });
		},
		(e) => commandEvent({ kind: 'refused', request_id: requestId, message: e.message }));
	return cmd;
}

// Without the socket, the command endpoint (issue 11) says how it went.
// (always, for a command the socket's answers may have passed already)
async function pollCommand(cmd, always = false) {
	for (let i = 0; i < 120 && !FINAL.has(cmd.state); i++) {
		await new Promise((r) => setTimeout(r, 1000));
		if (!always && live && live.isOpen()) return;
		try {
			const c = await api.command(cmd.commandId);
			commandEvent({ kind: 'status', command_id: cmd.commandId, status: c.status, error: c.error });
		} catch { /* try again */ }
	}
}

export function latestCommandFor(agentId, key) {
	let best = null;
	for (const c of commands.values()) {
		if (c.agentId === agentId && c.key === key && (!best || c.issuedAt > best.issuedAt)) best = c;
	}
	return best;
}

// Load the fleet over HTTP: the fleet endpoint when the bridge has it
// (one call with everything), else the agent list, whose counts are real
// and whose temperatures arrive with the next frames.
export async function loadFleet() {
	try {
		if (endpoints.value.fleet) {
			let cursor = null;
			const seen = new Set();
			do {
				const page = await api.fleet({ cursor, page_size: 1000 });
				const rows = Array.isArray(page) ? page : page.items || [];
				// polled, the hottest temperature feeds the trend the frames would
				const polled = conn.value.state === 'polling';
				for (const row of rows) {
					seen.add(row.agent_id);
					const rec = applyRow(record(row.agent_id), row);
					if (polled && rec.hottest != null) pushTrend(rec, rec.hottest);
				}
				cursor = Array.isArray(page) ? null : page.next_cursor;
			} while (cursor);
			prune(seen);
		} else {
			applyAgentRows(await api.agents());
		}
		fleetError.value = null;
		batch(() => { fleetLoaded.value = true; fleetVersion.value++; });
	} catch (e) {
		if (!(e instanceof ApiError && e.status === 401)) fleetError.value = e.message;
	}
}

function prune(seen) {
	for (const id of fleet.keys()) if (!seen.has(id)) fleet.delete(id);
}

let live = null;
let pollTimer = null;

// Without the socket the fleet is read over HTTP every few seconds (and
// at once on entering the mode), so the page stays current, if less live.
export const POLL_MS = 3000;
function startPolling() {
	loadFleet();
	if (!auth.value.role) roleFromHttp();
	if (pollTimer) return;
	pollTimer = setInterval(() => { if (conn.value.state === 'polling' && !paused.value) loadFleet(); }, POLL_MS);
}

// The socket's "connected" message names the role; without the socket the
// API's answers do: the audit log is for admins only, and a setting change
// (here an empty one, refused before it changes anything) for operators.
async function roleFromHttp() {
	let r = 'viewer';
	try { await api.audit({ page_size: 1 }); r = 'admin'; } catch (e) {
		if (e.status === 401) return;
		try { await api.call('PUT', '/api/v1/settings', {}); r = 'operator'; } catch (e2) { if (e2.status !== 403 && e2.status !== 401) r = 'operator'; }
	}
	if (auth.value.token && !auth.value.role) auth.value = { ...auth.value, role: r };
}

async function probeEndpoints() {
	const found = {};
	await Promise.all(Object.entries(VIEW_ENDPOINTS).map(async ([k, path]) => { found[k] = await api.exists(path); }));
	endpoints.value = found;
}

// Sign in with a token: checked against the API first, so a wrong one gets
// its message here rather than a socket that never opens.
export async function signIn(token) {
	token = (token || '').trim();
	if (!token) {
		auth.value = { ...auth.value, error: 'Enter a dashboard token.' };
		return false;
	}
	auth.value = { token, user: null, role: null, error: null, checking: true };
	let rows;
	try {
		// the agent list checks the token and is the first paint's data
		rows = await api.agents();
	} catch (e) {
		const msg = e.status === 401 ? 'This token was refused: it is wrong, expired or revoked.' : `Cannot sign in: ${e.message}`;
		auth.value = { token: null, user: null, role: null, error: msg, checking: false };
		saveToken(sessionStorage, null);
		return false;
	}
	saveToken(sessionStorage, token);
	const m = (window.__pankha = window.__pankha || {});
	m.fleetLoadedMs = performance.now();
	applyAgentRows(rows);
	batch(() => {
		auth.value = { ...auth.value, checking: false };
		fleetLoaded.value = true;
		fleetVersion.value++;
	});
	startLive();
	// which views have their endpoint; the fleet endpoint, when there,
	// adds what the agent list lacks (groups, hottest, alerts)
	probeEndpoints().then(() => { if (endpoints.value.fleet) loadFleet(); });
	return true;
}

function applyAgentRows(rows) {
	const seen = new Set();
	for (const row of rows) { seen.add(row.agent_id); applyRow(record(row.agent_id), row); }
	prune(seen);
}

function startLive() {
	const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
	live = createLive({
		url: `${proto}//${location.host}/ws/ui`,
		getToken: () => auth.value.token,
		topics: () => ['global', 'alerts'],
		onMessage: handleMessage,
		onState: (s) => {
			const was = conn.value.state;
			conn.value = s;
			if (s.state === 'revoked') signOut('This token was revoked or has expired; sign in again.');
			else if (s.state === 'polling') startPolling();
			if (was === 'live' && s.state !== 'live') say('Live connection lost; reconnecting.');
		},
		onOpen: (reconnect) => {
			// after a gap, what changed meanwhile comes from the API
			if (reconnect) { loadFleet(); say('Live connection restored.'); }
		},
		checkHttp: async () => {
			try { await api.agents(); return 'ok'; } catch (e) { return e.status === 401 ? 'unauthorized' : 'down'; }
		},
	});
	live.start();
}

export function signOut(message = null) {
	if (live) { live.stop(); live = null; }
	clearInterval(pollTimer);
	pollTimer = null;
	saveToken(sessionStorage, null);
	fleet.clear();
	commands.clear();
	firing.clear();
	liveAlerts.value = [];
	batch(() => {
		auth.value = { token: null, user: null, role: null, error: message, checking: false };
		conn.value = { state: 'idle', attempt: 0 };
		fleetLoaded.value = false;
		fleetVersion.value++;
	});
}

// At start: a token in the address (taken and removed) or in the session.
export function boot() {
	const { token, clean } = takeToken(location.href);
	if (clean != null) history.replaceState(null, '', clean);
	const t = token || loadToken(sessionStorage);
	if (t) signIn(t);
}

export function sendSetting(scope, key, value) {
	return api.setSetting(scope, key, value);
}
