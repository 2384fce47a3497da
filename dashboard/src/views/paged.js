// A list from a keyset-paged endpoint of issue 11 ({items…, next_cursor}):
// loads the first page for the given filters and more on request.
import { useEffect, useState } from 'preact/hooks';

export function usePaged(fetchPage, key, itemsOf) {
	const [rows, setRows] = useState(null);
	const [cursor, setCursor] = useState(null);
	const [error, setError] = useState(null);
	const load = (c) => fetchPage(c).then((r) => {
		const items = Array.isArray(r) ? r : r.items || (itemsOf && itemsOf(r)) || [];
		setRows((old) => (c && old ? [...old, ...items] : items));
		setCursor(Array.isArray(r) ? null : r.next_cursor ?? null);
		setError(null);
	}, (e) => setError(e.message));
	useEffect(() => { setRows(null); load(null); }, [key]);
	return { rows, error, more: cursor ? () => load(cursor) : null, reload: () => load(null) };
}
