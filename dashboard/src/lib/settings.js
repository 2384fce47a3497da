// Settings logic of the page: a form value read as its definition's type,
// checked against the definition the way pankha.set_setting() checks it
// (type, range, allowed values), and where an effective value comes from.

// The value an input holds, as its definition's type.
export function parseSetting(def, raw) {
	const type = def?.type;
	if (type === 'number') return raw === '' || raw == null ? NaN : Number(raw);
	if (type === 'boolean') return raw === true || raw === 'true';
	return raw;
}

// The first problem with a value, or null.
export function checkSetting(def, v) {
	if (!def) return null;
	if (def.type === 'number') {
		if (typeof v !== 'number' || !Number.isFinite(v)) return `${def.key} must be a number`;
		if (def.min != null && v < Number(def.min)) return `${def.key} must be at least ${def.min}${def.unit ? ` ${def.unit}` : ''}`;
		if (def.max != null && v > Number(def.max)) return `${def.key} must be at most ${def.max}${def.unit ? ` ${def.unit}` : ''}`;
	} else if (def.type === 'boolean') {
		if (typeof v !== 'boolean') return `${def.key} must be on or off`;
	} else if (def.allowed && !def.allowed.includes(v)) {
		return `${def.key} must be one of ${def.allowed.join(', ')}`;
	}
	return null;
}

// "built-in default", "global", "group lab", "this agent".
export function sourceText(item) {
	switch (item.source) {
		case 'default': return 'built-in default';
		case 'global': return 'from global';
		case 'group': return `from group ${(item.scope || '').replace(/^group:/, '')}`;
		case 'agent': return 'set on this agent';
		default: return item.source ? `from ${item.source}` : 'unknown source';
	}
}
