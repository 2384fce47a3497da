// The app shell: sign-in or the signed-in page (header with navigation,
// connection state, pause and sign out; the current view), and a hash
// router.  Views come from views/, one module each.
import { render } from 'preact';
import { signal } from '@preact/signals';
import { useEffect, useState } from 'preact/hooks';
import { html } from './html.js';
import { auth, conn, paused, endpoints, announcement, isAdmin, signOut, boot } from './store.js';
import { SignIn } from './views/signin.js';
import { Fleet } from './views/fleet.js';
import { VIEWS } from './views/index.js';

const route = signal(parseHash());
function parseHash() {
	const parts = (location.hash.replace(/^#\/?/, '') || 'fleet').split('/').map(decodeURIComponent);
	return { view: parts[0], arg: parts[1] ?? null };
}
addEventListener('hashchange', () => { route.value = parseHash(); });

const STATE_TEXT = {
	idle: 'not connected', connecting: 'connecting…', live: 'live', reconnecting: 'reconnecting…',
	offline: 'offline, retrying', polling: 'polling the API (WebSocket blocked)', revoked: 'signed out',
};

function Connection() {
	const c = conn.value;
	// the retry countdown ticks while not live
	const [, tick] = useState(0);
	useEffect(() => {
		if (c.state === 'live' || !c.retryAt) return;
		const t = setInterval(() => tick((n) => n + 1), 1000);
		return () => clearInterval(t);
	}, [c.state, c.retryAt]);
	const retry = c.retryAt ? Math.max(0, Math.round((c.retryAt - Date.now()) / 1000)) : null;
	return html`<span class=${`conn conn-${c.state}`} id="conn-state" data-state=${c.state} role="status">
		<span class="dot" aria-hidden="true"></span>${STATE_TEXT[c.state] || c.state}${c.state !== 'live' && retry ? (c.state === 'polling' ? `; retry in ${retry} s` : ` (in ${retry} s)`) : ''}</span>`;
}

// Which nav entries show: a view needs its endpoint (probed at sign-in;
// 404 hides it) and, for some, a role.
function navItems() {
	const ep = endpoints.value;
	const items = [['fleet', 'Fleet'], ['settings', 'Settings']];
	if (ep.alerts) items.push(['alerts', 'Alerts']);
	if (ep.commands) items.push(['commands', 'Commands']);
	if (ep.profiles) items.push(['profiles', 'Profiles']);
	if (ep.audit && isAdmin.value) items.push(['audit', 'Audit']);
	return items;
}

function Shell() {
	const r = route.value;
	const items = navItems();
	const View = r.view === 'fleet' ? Fleet : VIEWS[r.view];
	useEffect(() => { document.title = `Pankha · ${r.view}`; }, [r.view]);
	return html`
		<a class="skip" href="#main" onClick=${(e) => { e.preventDefault(); document.getElementById('main')?.focus(); }}>Skip to content</a>
		<header class="top">
			<a class="brand" href="#/fleet"><span class="logo" aria-hidden="true">✣</span> Pankha</a>
			<nav aria-label="Views"><ul>
				${items.map(([k, label]) => html`<li><a href=${`#/${k}`} aria-current=${r.view === k || (k === 'fleet' && r.view === 'agent') ? 'page' : undefined}>${label}</a></li>`)}
			</ul></nav>
			<div class="top-right">
				<${Connection} />
				<button type="button" class="ghost" aria-pressed=${paused.value} onClick=${() => { paused.value = !paused.value; }}>
					${paused.value ? 'Resume' : 'Pause'}<span class="sr-only"> live updates</span></button>
				<span class="muted small signed-in" title="signed in as">${[auth.value.user, auth.value.role].filter(Boolean).join(' · ')}</span>
				<button type="button" class="ghost" id="sign-out" onClick=${() => signOut(null)}>Sign out</button>
			</div>
		</header>
		${View ? html`<${View} arg=${r.arg} />` : html`<main id="main" class="view"><h1>Not found</h1><p>There is no view “${r.view}”. <a href="#/fleet">Back to the fleet</a>.</p></main>`}`;
}

function App() {
	const signedIn = !!auth.value.token && !auth.value.checking;
	return html`
		${signedIn ? html`<${Shell} />` : html`<${SignIn} />`}
		<div class="sr-only" aria-live="polite" id="announce">${announcement.value}</div>`;
}

(window.__pankha = window.__pankha || {}).bootMs = performance.now();
render(html`<${App} />`, document.getElementById('app'));
boot();
