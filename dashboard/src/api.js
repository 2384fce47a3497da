// The API client: the only module that talks HTTP to the bridge.  Every
// endpoint is one function here, so an endpoint that lands in the bridge
// (issue 11) is wired by writing or fixing one function.  Errors come back
// as ApiError with the status and the server's message, whichever of the
// two error shapes the bridge answered with: {"error": "message"} (today)
// or {"error": {"code", "message", "field"}} (issue 11).

export class ApiError extends Error {
	constructor(status, message, code = null, field = null) {
		super(message);
		this.status = status;
		this.code = code;
		this.field = field;
	}
}

export function errorFrom(status, body) {
	const e = body && body.error;
	if (e && typeof e === 'object') return new ApiError(status, e.message || `HTTP ${status}`, e.code ?? null, e.field ?? null);
	if (typeof e === 'string') return new ApiError(status, e);
	return new ApiError(status, `HTTP ${status}`);
}

const enc = encodeURIComponent;

// A command for many machines names its target again (the API's confirm).
export const confirmOf = (t) => t.agent_id ?? t.group ?? (t.fleet ? 'fleet' : null);

function query(params) {
	const q = Object.entries(params || {})
		.filter(([, v]) => v != null && v !== '')
		.map(([k, v]) => `${enc(k)}=${enc(v instanceof Date ? v.toISOString() : v)}`);
	return q.length ? `?${q.join('&')}` : '';
}

export function createApi({ base = '', getToken, fetchImpl = (...a) => fetch(...a), onUnauthorized = () => {} }) {
	async function call(method, path, body) {
		const headers = { Accept: 'application/json' };
		const token = getToken();
		if (token) headers.Authorization = `Bearer ${token}`;
		if (body !== undefined) headers['Content-Type'] = 'application/json';
		let res;
		try {
			res = await fetchImpl(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
		} catch (e) {
			throw new ApiError(0, 'the bridge cannot be reached');
		}
		let data = null;
		const text = await res.text();
		if (text) {
			try { data = JSON.parse(text); } catch { data = null; }
		}
		if (!res.ok) {
			const err = errorFrom(res.status, data);
			if (res.status === 401) onUnauthorized(err);
			throw err;
		}
		return data;
	}
	const get = (path, params) => call('GET', path + query(params));
	const post = (path, body) => call('POST', path, body ?? {});
	const put = (path, body) => call('PUT', path, body ?? {});
	const patch = (path, body) => call('PATCH', path, body ?? {});
	const del = (path) => call('DELETE', path);
	const agentPath = (id) => `/api/v1/agents/${enc(id)}`;

	return {
		call,
		// An endpoint exists unless the bridge says 404 (any other answer,
		// even 400 or 403, means the route is there).
		async exists(path) {
			try { await get(path); return true; } catch (e) { return !(e instanceof ApiError && e.status === 404); }
		},

		// today
		agents: () => get('/api/v1/agents'),
		latest: (id) => get(`${agentPath(id)}/latest`),
		// the API's {series: {id: [{t, min, max, avg, samples}]}}, as the rows of one series
		// (max_points up to the API's 5,000: a chart wants the source's own buckets)
		history: (id, series, from, to, resolution, max_points) =>
			get(`${agentPath(id)}/history`, { series, from, to, resolution, max_points }).then((r) =>
				((r && r.series && r.series[series]) || []).map((p) => ({ bucket: p.t, min: p.min, max: p.max, avg: p.avg, samples: p.samples }))),
		agentSettings: (id) => get(`${agentPath(id)}/settings`),
		sendCommand: (id, command_type, parameters, { priority, ttl_seconds } = {}) =>
			post(`${agentPath(id)}/commands`, { command_type, parameters, priority, ttl_seconds }),
		setSetting: (scope, key, value) => put('/api/v1/settings', { scope, key, value }),

		// the API of docs/api-functions.md
		fleet: (params) => get('/api/v1/fleet', params),
		agent: (id) => get(agentPath(id)),
		commands: (params = {}) => (params.agent_id
			? get(`${agentPath(params.agent_id)}/commands`, { ...params, agent_id: undefined })
			: get('/api/v1/commands', params)),
		command: (commandId) => get(`/api/v1/commands/${enc(commandId)}`),
		settingDefinitions: () => get('/api/v1/settings/definitions'),
		settingValues: (scope) => get('/api/v1/settings', { scope }),
		clearSetting: (scope, key) => call('DELETE', `/api/v1/settings${query({ scope, key })}`),
		profiles: () => get('/api/v1/profiles'),
		createProfile: (p) => post('/api/v1/profiles', p),
		updateProfile: (name, p) => patch(`/api/v1/profiles/${enc(name)}`, p),
		deleteProfile: (name) => del(`/api/v1/profiles/${enc(name)}`),
		assignProfile: (agentId, fanId, profile, sensorId) =>
			put(`${agentPath(agentId)}/fans/${enc(fanId)}/profile`, { profile, sensor_id: sensorId }),
		// target: {agent_id}, {group} or {fleet: true}; confirm repeats it
		emergencyStop: (target) => post('/api/v1/emergency-stop', { ...target, confirm: confirmOf(target) }),
		restoreAuto: (target) => post('/api/v1/restore-auto', { ...target, confirm: confirmOf(target) }),
		alerts: (params) => get('/api/v1/alerts', params),
		ackAlert: (alertId) => post(`/api/v1/alerts/${enc(alertId)}/ack`),
		silence: (body) => post('/api/v1/alert-silences', body),
		silences: (params) => get('/api/v1/alert-silences', params),
		unsilence: (id) => del(`/api/v1/alert-silences/${enc(id)}`),
		alertRules: () => get('/api/v1/alert-rules'),
		createAlertRule: (r) => post('/api/v1/alert-rules', r),
		deleteAlertRule: (id) => del(`/api/v1/alert-rules/${enc(id)}`),
		audit: (params) => get('/api/v1/audit', params),
	};
}

// Which views have the endpoint they need: probed once after sign-in, so a
// view whose endpoint has not landed has no nav entry (nothing broken shows).
export const VIEW_ENDPOINTS = {
	commands: '/api/v1/commands',
	profiles: '/api/v1/profiles',
	alerts: '/api/v1/alerts',
	audit: '/api/v1/audit',
	definitions: '/api/v1/settings/definitions',
	fleet: '/api/v1/fleet?page_size=1',
};
