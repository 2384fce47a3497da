import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validate, speedAt, movePoint, addPoint, removePoint, keyMove } from '../../src/lib/curve.js';

const ok = { points: [[30, 20], [60, 50], [80, 100]], hysteresis: 2, step: 5 };

test('validate accepts a good profile and names the first problem like the server', () => {
	assert.equal(validate(ok), null);
	assert.equal(validate({ ...ok, points: [[30, 20]] }), 'points must have 2 to 32 entries');
	assert.match(validate({ ...ok, points: [[30, 20], [30, 50]] }), /^points\[1\]: temperature 30 is not above the previous point's 30$/);
	assert.match(validate({ ...ok, points: [[30, 20], [40, 101]] }), /^points\[1\]: speed 101 is not a number between 0 and 100$/);
	assert.match(validate({ ...ok, points: [[-41, 20], [40, 50]] }), /^points\[0\]: temperature -41/);
	assert.match(validate({ ...ok, hysteresis: 11 }), /^hysteresis 11 is out of range$/);
	assert.match(validate({ ...ok, step: 1 }), /^step 1 is out of range$/);
	assert.equal(validate({ ...ok, points: Array.from({ length: 33 }, (_, i) => [i, 50]) }), 'points must have 2 to 32 entries');
});

test('speedAt interpolates and is flat outside the points', () => {
	assert.equal(speedAt(ok.points, 10), 20);
	assert.equal(speedAt(ok.points, 45), 35);
	assert.equal(speedAt(ok.points, 90), 100);
});

test('a dragged point stays between its neighbours and inside the limits', () => {
	assert.deepEqual(movePoint(ok.points, 1, 90, 120)[1], [79.9, 100]);
	assert.deepEqual(movePoint(ok.points, 1, 10, -5)[1], [30.1, 0]);
	assert.deepEqual(movePoint(ok.points, 0, -100, 10)[0], [-40, 10]);
	assert.equal(validate({ ...ok, points: movePoint(ok.points, 2, 10, 50) }), null);
});

test('the keyboard moves a point by 1, or 5 with shift', () => {
	assert.deepEqual(keyMove(ok.points, 1, 'ArrowUp')[1], [60, 51]);
	assert.deepEqual(keyMove(ok.points, 1, 'ArrowLeft', true)[1], [55, 50]);
	assert.equal(keyMove(ok.points, 1, 'a'), null);
});

test('adding splits the widest gap on the curve; removing keeps at least two', () => {
	const added = addPoint(ok.points);
	assert.equal(added.length, 4);
	assert.deepEqual(added[1], [45, 35]);
	assert.equal(validate({ ...ok, points: added }), null);
	assert.equal(removePoint([[1, 1], [2, 2]], 0).length, 2);
	assert.deepEqual(removePoint(ok.points, 1), [[30, 20], [80, 100]]);
});
