// Reconnect delays with "full jitter": a random time between the floor and
// min(cap, floor * 2^attempt), so dashboards that lost the bridge together
// do not come back together.
export function reconnectDelay(attempt, random = Math.random, floor = 500, cap = 30000) {
	const ceiling = Math.min(cap, floor * 2 ** Math.min(attempt, 16));
	return Math.round(floor + random() * (ceiling - floor));
}
