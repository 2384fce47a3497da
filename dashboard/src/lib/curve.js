// Fan-curve maths for the profile editor, with the server's rules
// (pankha.check_profile_points / check_profile_tuning): 2 to 32 points,
// temperatures -40..150 °C strictly increasing, speeds 0..100 %,
// hysteresis 0..10 °C, step 2..100 %.

export const LIMITS = { minPoints: 2, maxPoints: 32, tMin: -40, tMax: 150, sMin: 0, sMax: 100,
	hMin: 0, hMax: 10, stepMin: 2, stepMax: 100 };

// The first problem with a profile, as the server would name it, or null.
export function validate({ points, hysteresis, step }) {
	if (!Array.isArray(points)) return 'points must be a JSON array';
	if (points.length < LIMITS.minPoints || points.length > LIMITS.maxPoints) return 'points must have 2 to 32 entries';
	for (let i = 0; i < points.length; i++) {
		const p = points[i];
		if (!Array.isArray(p) || p.length !== 2) return `points[${i}] must be a [temperature, speed] pair`;
		const [t, s] = p;
		if (!Number.isFinite(t) || t < LIMITS.tMin || t > LIMITS.tMax) return `points[${i}]: temperature ${t} is not a number between -40 and 150`;
		if (!Number.isFinite(s) || s < LIMITS.sMin || s > LIMITS.sMax) return `points[${i}]: speed ${s} is not a number between 0 and 100`;
		if (i > 0 && !(t > points[i - 1][0])) return `points[${i}]: temperature ${t} is not above the previous point's ${points[i - 1][0]}`;
	}
	if (!Number.isFinite(hysteresis) || hysteresis < LIMITS.hMin || hysteresis > LIMITS.hMax) return `hysteresis ${hysteresis} is out of range`;
	if (!Number.isFinite(step) || step < LIMITS.stepMin || step > LIMITS.stepMax) return `step ${step} is out of range`;
	return null;
}

// Speed of the curve at temperature t: flat outside the points, linear between.
export function speedAt(points, t) {
	if (!points.length) return null;
	if (t <= points[0][0]) return points[0][1];
	for (let i = 1; i < points.length; i++) {
		if (t <= points[i][0]) {
			const [t0, s0] = points[i - 1], [t1, s1] = points[i];
			return s0 + (s1 - s0) * (t - t0) / (t1 - t0);
		}
	}
	return points[points.length - 1][1];
}

const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
const round1 = (v) => Math.round(v * 10) / 10;

// Move point i to (t, s), kept inside the limits and strictly between its
// neighbours (0.1 °C apart), so the curve stays valid while it is dragged.
export function movePoint(points, i, t, s) {
	const lo = i > 0 ? points[i - 1][0] + 0.1 : LIMITS.tMin;
	const hi = i < points.length - 1 ? points[i + 1][0] - 0.1 : LIMITS.tMax;
	const out = points.map((p) => [p[0], p[1]]);
	out[i] = [round1(clamp(t, lo, hi)), round1(clamp(s, LIMITS.sMin, LIMITS.sMax))];
	return out;
}

// Add a point halfway along the widest gap (or past the end), on the curve.
export function addPoint(points) {
	if (points.length >= LIMITS.maxPoints) return points;
	if (points.length === 0) return [[30, 30]];
	let at = -1, widest = 0;
	for (let i = 1; i < points.length; i++) {
		const gap = points[i][0] - points[i - 1][0];
		if (gap > widest) { widest = gap; at = i; }
	}
	const out = points.map((p) => [p[0], p[1]]);
	if (at < 0 || widest < 0.2) {
		const last = points[points.length - 1];
		const t = Math.min(LIMITS.tMax, last[0] + 10);
		if (t <= last[0]) return points;
		out.push([t, last[1]]);
		return out;
	}
	const t = round1((points[at - 1][0] + points[at][0]) / 2);
	out.splice(at, 0, [t, round1(speedAt(points, t))]);
	return out;
}

export function removePoint(points, i) {
	if (points.length <= LIMITS.minPoints) return points;
	return points.filter((_, j) => j !== i);
}

// One keyboard step for a focused point: arrows move 1 (shift: 5).
export function keyMove(points, i, key, shift = false) {
	const d = shift ? 5 : 1;
	const [t, s] = points[i];
	switch (key) {
		case 'ArrowLeft': return movePoint(points, i, t - d, s);
		case 'ArrowRight': return movePoint(points, i, t + d, s);
		case 'ArrowUp': return movePoint(points, i, t, s + d);
		case 'ArrowDown': return movePoint(points, i, t, s - d);
		default: return null;
	}
}
