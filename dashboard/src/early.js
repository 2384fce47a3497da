// Loaded before the app (a few hundred bytes, async): asks for the agent
// list as soon as the page has a token, so the request runs while the app's
// bundle is still being fetched and evaluated.  The store takes the answer
// (api.js's fetch for GET /api/v1/agents with the same token) once.
import { takeToken, loadToken } from './lib/token.js';

const { token } = takeToken(location.href);
const t = token || loadToken(sessionStorage);
if (t) {
	const m = (window.__pankha = window.__pankha || {});
	m.early = { token: t, path: '/api/v1/agents',
		response: fetch('/api/v1/agents', { headers: { Accept: 'application/json', Authorization: `Bearer ${t}` } }) };
	m.early.response.catch(() => {});
}
