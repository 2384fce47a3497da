// Sign in with a dashboard token (issued by an admin with
// pankha.create_ui_token, or printed by scripts/demo).
import { useState } from 'preact/hooks';
import { html } from '../html.js';
import { auth, signIn } from '../store.js';

export function SignIn() {
	const [token, setToken] = useState('');
	const a = auth.value;
	const submit = (e) => {
		e.preventDefault();
		signIn(token);
	};
	return html`
		<main class="signin" id="main">
			<form class="card signin-card" onSubmit=${submit}>
				<h1><span class="logo" aria-hidden="true">✣</span> Pankha</h1>
				<p class="muted">Live temperatures and fans of your fleet. Sign in with a dashboard token.</p>
				<label for="token">Dashboard token</label>
				<input id="token" name="token" type="password" autocomplete="off" spellcheck="false"
					value=${token} onInput=${(e) => setToken(e.currentTarget.value)} required />
				${a.error && html`<p class="error" role="alert" id="signin-error">${a.error}</p>`}
				<button class="primary" type="submit" disabled=${a.checking}>${a.checking ? 'Checking…' : 'Sign in'}</button>
				<p class="muted small">The token stays in this browser tab only (session storage).</p>
			</form>
		</main>`;
}
