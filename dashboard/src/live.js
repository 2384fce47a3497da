// The live connection to /ws/ui: connects with the token as a subprotocol
// entry (browsers cannot set headers on a WebSocket), subscribes, hands
// each message to onMessage, and reconnects with backoff and jitter.  When
// the WebSocket cannot be opened several times in a row while the HTTP API
// answers (a proxy that blocks upgrades), it reports "polling" and the app
// polls the API instead, still trying the WebSocket in the background.
import { reconnectDelay } from './lib/backoff.js';

const FALLBACK_AFTER = 3;
const PING_EVERY = 25000;

export function createLive({ url, getToken, topics, onMessage, onState, onOpen, checkHttp, WebSocketImpl = globalThis.WebSocket, delayFor = reconnectDelay }) {
	let ws = null, attempt = 0, failedOpens = 0, timer = null, ping = null, stopped = false, everOpened = false;

	function setState(state, extra = {}) { onState({ state, attempt, ...extra }); }

	function connect() {
		clearTimeout(timer);
		if (stopped) return;
		const token = getToken();
		if (!token) return;
		setState(attempt === 0 && !everOpened ? 'connecting' : 'reconnecting');
		let opened = false;
		try {
			ws = new WebSocketImpl(url, ['pankha-ui', token]);
		} catch (e) {
			schedule();
			return;
		}
		ws.onopen = () => {
			opened = true;
			const wasReconnect = everOpened;
			everOpened = true;
			attempt = 0;
			failedOpens = 0;
			ws.send(JSON.stringify({ type: 'subscribe', data: { topics: topics() } }));
			clearInterval(ping);
			ping = setInterval(() => send({ type: 'ping' }), PING_EVERY);
			setState('live');
			onOpen(wasReconnect);
		};
		ws.onmessage = (ev) => {
			let m;
			try { m = JSON.parse(ev.data); } catch { return; }
			onMessage(m);
		};
		ws.onclose = async (ev) => {
			clearInterval(ping);
			ws = null;
			if (stopped) return;
			if (ev.code === 4001) {
				setState('revoked');
				stopped = true;
				return;
			}
			if (!opened) {
				failedOpens++;
				// the handshake was refused or blocked: ask HTTP which one
				const http = await checkHttp();
				if (stopped) return;
				if (http === 'unauthorized') { setState('revoked'); stopped = true; return; }
				if (http === 'ok' && failedOpens >= FALLBACK_AFTER) { schedule('polling'); return; }
			}
			schedule();
		};
	}

	function schedule(state = 'reconnecting') {
		attempt++;
		const delay = delayFor(attempt);
		setState(state === 'polling' ? 'polling' : (attempt > 6 ? 'offline' : 'reconnecting'), { retryAt: Date.now() + delay });
		timer = setTimeout(connect, delay);
	}

	function send(msg) {
		if (ws && ws.readyState === 1) {
			ws.send(JSON.stringify(msg));
			return true;
		}
		return false;
	}

	return {
		start() { stopped = false; attempt = 0; failedOpens = 0; everOpened = false; connect(); },
		stop() {
			stopped = true;
			clearTimeout(timer);
			clearInterval(ping);
			if (ws) { ws.onclose = null; ws.close(1000, 'signed out'); ws = null; }
		},
		send,
		isOpen: () => !!ws && ws.readyState === 1,
		reconnectNow() { if (!ws && !stopped) { attempt = 0; connect(); } },
	};
}
