"""A protocol peer for the agent's tests and benchmark: a real WebSocket
server (python3-websockets 10.4) that speaks the agent side of DESIGN.md's
wire protocol, and a plain HTTP server for the /api/v1/agents/sync fallback.

The peer records what the agent sends, acks data frames (unless told not
to), sends commands on request, and can be stopped and started on the same
port to simulate a bridge outage.  It listens on 127.0.0.1 only.
"""
import asyncio
import http.server
import json
import os
import signal
import socket
import subprocess
import threading
import time

import websockets
import websockets.server

# PANKHA_ASAN=1 (make asan): the agent built with ASan/LSan and UBSan
AGENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                     "asan" if os.environ.get("PANKHA_ASAN") else "", "pankha-agent")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Tap:
    """TAP output: ok N - what / not ok N - what."""

    def __init__(self):
        self.n = 0
        self.failed = 0

    def ok(self, cond, what, detail=None):
        self.n += 1
        print(("ok %d - %s" if cond else "not ok %d - %s") % (self.n, what), flush=True)
        if not cond:
            self.failed += 1
            if detail is not None:
                for line in str(detail).splitlines()[:20]:
                    print("# " + line, flush=True)
        return cond

    def done(self):
        print("1..%d" % self.n, flush=True)
        return 1 if self.failed else 0


class Peer:
    """WebSocket peer for /ws/agent, run in its own thread and event loop."""

    def __init__(self, port=None, token="secret", config=None):
        self.port = port or free_port()
        self.token = token
        self.config = config if config is not None else {"update_interval": 0.5}
        self.auto_ack = True
        self.refuse = None          # HTTP status to refuse handshakes with
        self.lock = threading.Lock()
        self.messages = []          # (time, conn_no, parsed message)
        self.handshakes = []        # (time, path, headers dict) of every attempt
        self.conn_no = 0
        self.extensions = []        # negotiated on the latest connection
        self.acked = -1             # highest seq acked
        self.sizes = []             # payload length of each entry in messages
        self.rate_per_minute = None  # announce and enforce a bridge-like limit
        self.violations = 0         # messages that would have been dropped
        self.connected_extra = {}   # more fields for the connected message
        self.close_codes = []       # (conn_no, code, reason) of each closed connection
        self.ws = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.loop = asyncio.new_event_loop()
        self.server = None
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    # -- server side --
    async def _process_request(self, path, headers):
        with self.lock:
            self.handshakes.append((time.monotonic(), path, dict(headers)))
        if self.refuse:
            return (self.refuse, [], b"refused by test\n")
        if headers.get("Authorization") != "Bearer " + self.token or "agent_id=" not in path:
            return (401, [], b"unauthorized\n")
        return None

    async def _handler(self, ws, path):
        with self.lock:
            self.conn_no += 1
            conn = self.conn_no
            self.ws = ws
            self.extensions = [e.name for e in ws.extensions]
        connected = {"server": "test-peer"}
        if self.rate_per_minute:
            connected["rate_per_minute"] = self.rate_per_minute
        connected.update(self.connected_extra)
        tokens, stamp = float(self.rate_per_minute or 0), time.monotonic()
        await self._send(ws, {"type": "connected", "data": connected})
        await self._send(ws, {"type": "config_update", "data": self.config})
        try:
            async for raw in ws:
                self.bytes_in += len(raw)
                if self.rate_per_minute:
                    # the bridge's bucket: one minute of rate, refilled continuously
                    now = time.monotonic()
                    tokens = min(self.rate_per_minute, tokens + (now - stamp) * self.rate_per_minute / 60)
                    stamp = now
                    if tokens < 1:
                        self.violations += 1
                    else:
                        tokens -= 1
                try:
                    msg = json.loads(raw)
                except ValueError:
                    msg = {"type": "<invalid json>", "raw": raw}
                with self.lock:
                    self.messages.append((time.monotonic(), conn, msg))
                    self.sizes.append(len(raw))
                t = msg.get("type")
                if t == "data" and self.auto_ack and "seq" in msg.get("data", {}):
                    seq = msg["data"]["seq"]
                    await self._send(ws, {"type": "ack", "data": {"seq": seq}})
                    self.acked = max(self.acked, seq)
                elif t == "ping":
                    await self._send(ws, {"type": "pong"})
        except websockets.ConnectionClosed:
            pass
        with self.lock:
            self.close_codes.append((conn, ws.close_code, ws.close_reason))

    async def _send(self, ws, obj):
        text = json.dumps(obj)
        self.bytes_out += len(text)
        await ws.send(text)

    async def _start(self):
        self.server = await websockets.serve(
            self._handler, "127.0.0.1", self.port, process_request=self._process_request,
            ping_interval=None)

    async def _stop(self):
        if self.server:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    def _run(self, coro, timeout=10):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    # -- test side --
    def start(self):
        self._run(self._start())
        return self

    def stop(self):
        self._run(self._stop())

    def send(self, obj):
        ws = self.ws
        if ws is None:
            raise RuntimeError("no agent connected")
        self._run(self._send(ws, obj))

    def send_raw(self, text):
        ws = self.ws
        self._run(ws.send(text))

    def send_frame(self, payload, first=0xC1):
        """Write one unmasked WebSocket frame as it is: by default FIN,
        RSV1 (compressed) and text, whatever permessage-deflate would do."""
        ws = self.ws
        n = len(payload)
        if n < 126:
            head = bytes([first, n])
        elif n < 65536:
            head = bytes([first, 126]) + n.to_bytes(2, "big")
        else:
            head = bytes([first, 127]) + n.to_bytes(8, "big")
        self.loop.call_soon_threadsafe(ws.transport.write, head + payload)

    def close_agent(self, code=1011, reason="test"):
        ws = self.ws
        if ws is not None:
            self._run(ws.close(code, reason))

    def ack(self, seq):
        self.send({"type": "ack", "data": {"seq": seq}})

    def data_on(self, conn):
        with self.lock:
            return [m["data"] for _, c, m in self.messages if c == conn and m.get("type") == "data"]

    def acks_for(self, command_id):
        return [m["data"] for _, _, m in self.of_type("command_ack")
                if m.get("data", {}).get("command_id") == command_id]

    def of_type(self, t):
        with self.lock:
            return [(ts, c, m) for ts, c, m in self.messages if m.get("type") == t]

    def data(self):
        return [m["data"] for _, _, m in self.of_type("data")]

    def wait(self, cond, timeout=10.0, step=0.05):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            r = cond()
            if r:
                return r
            time.sleep(step)
        return cond()

    def close(self):
        try:
            self.stop()
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)


class SyncHandler(http.server.BaseHTTPRequestHandler):
    """Blocks WebSocket upgrades (as some proxies do) and serves the sync API."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        srv = self.server
        srv.upgrade_attempts.append((time.monotonic(), self.path, dict(self.headers)))
        self.send_response(403)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        srv = self.server
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        if srv.refuse_status or (srv.max_body and n > srv.max_body):
            status = srv.refuse_status or 413
            with srv.lock:
                srv.refused.append((time.monotonic(), status, n))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path != "/api/v1/agents/sync" or self.headers.get("Authorization") != "Bearer " + srv.token:
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        req = json.loads(body)
        results = []
        with srv.lock:
            srv.syncs.append((time.monotonic(), req))
            commands, srv.commands = srv.commands, []
            # one outcome per frame, as pankha.agent_sync gives them
            for i, f in enumerate(req.get("frames", [])):
                if srv.fail_next and i == len(req["frames"]) - 1:
                    srv.fail_next = None
                    srv.failed.append((f["seq"], "40001"))
                    results.append({"sqlstate": "40001", "error": "could not serialize access"})
                elif srv.reject_next and i == 0:
                    srv.reject_next = None
                    srv.failed.append((f["seq"], "22023"))
                    results.append({"sqlstate": "22023", "error": "sensors[0].temperature: not a number"})
                else:
                    srv.stored.add(f["seq"])
                    results.append({"stored": True})
        out = json.dumps({"frames": results, "commands": commands, "config": srv.config}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


class SyncPeer:
    """HTTP-only peer: refuses upgrades, answers POST /api/v1/agents/sync."""

    def __init__(self, port, token="secret", config=None):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), SyncHandler)
        self.httpd.daemon_threads = True
        self.httpd.token = token
        self.httpd.lock = threading.Lock()
        self.httpd.syncs = []
        self.httpd.commands = []
        self.httpd.upgrade_attempts = []
        self.httpd.stored = set()       # seqs answered as stored
        self.httpd.failed = []          # (seq, sqlstate) answered as not stored
        self.httpd.fail_next = None     # answer the last frame of the next sync 40001
        self.httpd.reject_next = None   # answer the first frame of the next sync 22023
        self.httpd.config = config if config is not None else {"update_interval": 0.5}
        self.httpd.max_body = None      # answer 413 to a larger body, as the bridge's --max-body
        self.httpd.refuse_status = None  # answer every sync with this status
        self.httpd.refused = []         # (time, status, body length) of refused syncs
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def queue_command(self, cmd):
        with self.httpd.lock:
            self.httpd.commands.append(cmd)

    @property
    def syncs(self):
        with self.httpd.lock:
            return list(self.httpd.syncs)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def make_tree(path):
    subprocess.run([AGENT, "--simulate", path, "--simulate-only", "--sim-once",
                    "--config", "/dev/null"], check=True)


def start_agent(port, tree, *extra, log=None, env=None):
    args = [AGENT, "--config", "/dev/null", "--server", "ws://127.0.0.1:%d" % port,
            "--agent-id", "test-agent", "--token", "secret", "--sysfs-root", tree,
            "--reconnect-min", "0.2", "--reconnect-max", "1",
            "--state-dir", os.path.dirname(os.path.abspath(tree))] + list(extra)
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.Popen(args, stdout=log, stderr=log, env=e)


def stop_agent(proc, timeout=10):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def read_int(path):
    with open(path) as f:
        return int(f.read().strip())


def write_int(path, value):
    with open(path, "w") as f:
        f.write("%d\n" % value)
