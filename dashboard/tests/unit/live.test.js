import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createLive } from '../../src/live.js';

// A stand-in for the browser's WebSocket that the test opens, closes or
// fails by hand; what is under test is live.js's state machine.
function fakeSockets() {
	const made = [];
	class FakeWS {
		constructor(url, protocols) { this.url = url; this.protocols = protocols; this.readyState = 0; this.sent = []; made.push(this); }
		send(t) { this.sent.push(JSON.parse(t)); }
		close() { this.readyState = 3; }
		open() { this.readyState = 1; this.onopen(); }
		fail(code = 1006) { this.readyState = 3; this.onclose({ code }); }
	}
	return { FakeWS, made };
}
const tick = () => new Promise((r) => setTimeout(r, 5));

function setup(http = 'ok') {
	const { FakeWS, made } = fakeSockets();
	const states = [], msgs = [], opens = [];
	const live = createLive({
		url: 'ws://h/ws/ui', getToken: () => 'tok', topics: () => ['global', 'alerts'],
		onMessage: (m) => msgs.push(m), onState: (s) => states.push(s.state), onOpen: (r) => opens.push(r),
		checkHttp: async () => http, WebSocketImpl: FakeWS, delayFor: () => 1,
	});
	return { live, made, states, msgs, opens };
}

test('the token goes as a subprotocol entry; on open it subscribes and is live', async () => {
	const { live, made, states, opens } = setup();
	live.start();
	assert.deepEqual(made[0].protocols, ['pankha-ui', 'tok']);
	made[0].open();
	assert.deepEqual(made[0].sent[0], { type: 'subscribe', data: { topics: ['global', 'alerts'] } });
	assert.equal(states.at(-1), 'live');
	assert.deepEqual(opens, [false]);
	live.stop();
});

test('a lost connection reconnects and reports the reopening as a reconnect (resync)', async () => {
	const { live, made, states, opens } = setup();
	live.start();
	made[0].open();
	made[0].fail();
	await tick();
	assert.equal(states.includes('reconnecting'), true);
	await tick();
	assert.equal(made.length, 2);
	made[1].open();
	assert.deepEqual(opens, [false, true]);
	live.stop();
});

test('a handshake that keeps failing while HTTP works falls back to polling', async () => {
	const { live, made, states } = setup('ok');
	live.start();
	for (let i = 0; i < 3; i++) {
		made[i].fail();
		await tick(); await tick();
	}
	assert.equal(states.includes('polling'), true, states.join(','));
	await tick();
	assert.ok(made.length >= 4, 'and keeps trying the WebSocket');
	live.stop();
});

test('refused credentials (HTTP 401) or close code 4001 end the session', async () => {
	const a = setup('unauthorized');
	a.live.start();
	a.made[0].fail();
	await tick();
	assert.equal(a.states.at(-1), 'revoked');
	await tick();
	assert.equal(a.made.length, 1, 'no retry');
	const b = setup();
	b.live.start();
	b.made[0].open();
	b.made[0].fail(4001);
	await tick();
	assert.equal(b.states.at(-1), 'revoked');
});
