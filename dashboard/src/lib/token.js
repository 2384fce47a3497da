// The dashboard token: a ?token= in the address is taken once and removed
// from it (so it is not bookmarked, shared or left in the history), then
// kept in sessionStorage for this tab only.

// Split an address into the token it carries and the address without it.
export function takeToken(href) {
	const url = new URL(href);
	const token = url.searchParams.get('token');
	if (token == null) return { token: null, clean: null };
	url.searchParams.delete('token');
	const q = url.searchParams.toString();
	return { token: token.trim() || null, clean: url.pathname + (q ? `?${q}` : '') + url.hash };
}

const KEY = 'pankha.token';

export function loadToken(storage) {
	try { return storage.getItem(KEY); } catch { return null; }
}

export function saveToken(storage, token) {
	try {
		if (token) storage.setItem(KEY, token); else storage.removeItem(KEY);
	} catch { /* storage disabled: the token lives only in memory */ }
}
