// A list from a keyset-paged endpoint ({items, next_cursor}): loads the
// first page for the given filters and more on request.  reload() always
// uses the newest filters, and an answer to an older request (filters
// changed meanwhile) is dropped, so a slow answer never shows stale rows.
import { useEffect, useRef, useState } from 'preact/hooks';

export function usePaged(fetchPage, key, itemsOf) {
	const [rows, setRows] = useState(null);
	const [cursor, setCursor] = useState(null);
	const [error, setError] = useState(null);
	const latest = useRef(fetchPage);
	latest.current = fetchPage;
	const seq = useRef(0);
	const load = (c) => {
		const mine = ++seq.current;
		return latest.current(c).then((r) => {
			if (mine !== seq.current) return;
			const items = Array.isArray(r) ? r : r.items || (itemsOf && itemsOf(r)) || [];
			setRows((old) => (c && old ? [...old, ...items] : items));
			setCursor(Array.isArray(r) ? null : r.next_cursor ?? null);
			setError(null);
		}, (e) => { if (mine === seq.current) setError(e.message); });
	};
	useEffect(() => { setRows(null); load(null); }, [key]);
	return { rows, error, more: cursor ? () => load(cursor) : null, reload: () => load(null) };
}
