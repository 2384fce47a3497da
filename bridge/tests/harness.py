"""Shared pieces of the bridge integration tests.

A private PostgreSQL cluster (scripts/lib.sh), the real pankha-bridge
process, real WebSocket clients (python3-websockets) and TAP output.
Everything listens on 127.0.0.1 on ports from pk_free_port, and every
server started here is stopped here (atexit), whatever happens.
"""
import asyncio
import atexit
import gzip
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import websockets

TOP = os.environ.get("PANKHA_TOP") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PGBIN = os.environ["PANKHA_PGBIN"]
ROOT = os.environ["PANKHA_TESTROOT"]
# PANKHA_ASAN=1 (make asan): the bridge built with ASan/LSan and UBSan;
# scripts/run-tests then fails a test whose processes reported anything.
ASAN = bool(os.environ.get("PANKHA_ASAN"))
BRIDGE = os.path.join(TOP, "bridge", "asan" if ASAN else "", "pankha-bridge")
# The login role every bridge in the tests connects as (member of
# pankha_bridge only, never a superuser or the owner).
BRIDGE_USER = "pankha_bridge_login"

_cleanups = []


def _run_cleanups():
    while _cleanups:
        fn = _cleanups.pop()
        try:
            fn()
        except Exception as e:  # keep stopping the others
            print(f"# cleanup failed: {e}")


atexit.register(_run_cleanups)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))


def lib(cmd):
    """Run a scripts/lib.sh function; return its stdout."""
    r = subprocess.run(["bash", "-c", f'. "{TOP}/scripts/lib.sh"; {cmd}'],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{cmd}: {r.stderr.strip()}")
    return r.stdout.strip()


def quote_shell(v):
    return "'" + str(v).replace("'", "'\\''") + "'"


def free_port():
    return int(lib("pk_free_port"))


def quote(v):
    """A SQL literal for v (None, bool, number or text)."""
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (dict, list)):
        v = json.dumps(v)
    return "'" + str(v).replace("'", "''") + "'"


class Tap:
    """TAP output: ok()/diag(); done() prints the plan and exits."""

    def __init__(self):
        self.n = 0
        self.failed = 0

    def ok(self, cond, name, detail=None):
        self.n += 1
        print(f"{'ok' if cond else 'not ok'} {self.n} - {name}", flush=True)
        if not cond:
            self.failed += 1
            if detail is not None:
                for line in str(detail).splitlines()[:20]:
                    print(f"#   {line}", flush=True)
        return cond

    def eq(self, got, want, name):
        return self.ok(got == want, name, f"got:  {got!r}\nwant: {want!r}")

    def diag(self, msg):
        for line in str(msg).splitlines():
            print(f"# {line}", flush=True)

    def done(self):
        print(f"1..{self.n}", flush=True)
        _run_cleanups()
        sys.exit(1 if self.failed else 0)


class Cluster:
    """A private PostgreSQL with the pankha extension in database pankha."""

    def __init__(self, name="pg", settings=()):
        """settings: extra postgresql.conf lines.  The cluster runs with
        fsync on; a test that passes "fsync = off" says why beside it."""
        self.data = os.path.join(ROOT, name)
        self.port = free_port()
        conf = " ".join(quote_shell(line) for line in settings)
        lib(f'pk_cluster_init "{PGBIN}" "{self.data}" {conf}')
        self.start()
        _cleanups.append(self.stop)
        self.psql("CREATE DATABASE pankha", db="postgres")
        self.psql("CREATE EXTENSION pankha")
        # The bridge connects as an operator would deploy it: a login role
        # whose only privilege is membership in pankha_bridge (issue 13,
        # scripts/lib.sh pk_bridge_login).  psql() stays the owner, for
        # setting up and checking.
        self.bridge_conninfo = lib(f'PANKHA_BRIDGE_USER={BRIDGE_USER} pk_bridge_login "{PGBIN}" {self.port}')

    @property
    def conninfo(self):
        """What the bridge is given in --db: the least-privilege login."""
        return self.bridge_conninfo

    @property
    def owner_conninfo(self):
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=pankha"

    def start(self):
        lib(f'pk_cluster_start "{PGBIN}" "{self.data}" {self.port}')

    def stop(self):
        lib(f'pk_cluster_stop "{PGBIN}" "{self.data}"')

    def psql(self, sql, db="pankha"):
        r = subprocess.run([os.path.join(PGBIN, "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1",
                            "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                            "-d", db, "-c", sql], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"psql: {sql}: {r.stderr.strip()}")
        return r.stdout.strip()

    def value(self, sql):
        return self.psql(sql)


class Bridge:
    """A pankha-bridge process on a free port; stopped at exit."""

    def __init__(self, cluster, *args, name="bridge", wait_ready=True):
        self.port = free_port()
        self.log_path = os.path.join(ROOT, f"{name}.log")
        self.log = open(self.log_path, "ab")
        self.args = [BRIDGE, "--db", cluster.conninfo, "--listen", f"127.0.0.1:{self.port}",
                     "--bridge-id", name, *args]
        self.metrics_token = None   # what metric() presents (--metrics-token-file)
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT)
        # under ASan a bridge is stopped, not killed, so that its leaks are checked at exit
        _cleanups.append(self.stop if ASAN else self.kill)
        if wait_ready:
            self.wait_ready()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self):
        return f"ws://127.0.0.1:{self.port}"

    def wait_ready(self, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bridge exited with {self.proc.returncode}: {self.tail()}")
            try:
                if self.http("GET", "/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("bridge not ready: " + self.tail())

    def tail(self, n=30):
        with open(self.log_path, "rb") as f:
            return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")

    def http(self, method, path, body=None, token=None, headers=None, gzip_body=False, raw=None):
        """(status, parsed JSON or text) of one request."""
        data = raw
        hdrs = dict(headers or {})
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        if gzip_body and data is not None:
            data = gzip.compress(data)
            hdrs["Content-Encoding"] = "gzip"
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                status, text = r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode()
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def metric(self, name):
        _, text = self.http("GET", "/metrics", token=self.metrics_token)
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=30):
        """SIGTERM and wait; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def register(cluster, agent_id, name=None):
    """Register an agent; return its token."""
    return cluster.value(f"SELECT pankha.register_agent({quote(agent_id)}, {quote(name or agent_id)}, 'host-{agent_id}', '{{}}')")


def frame(agent_id, ts_ms, seq=None, temp=45.2, fan_speed=60):
    """A data message like the protocol example."""
    data = {"agentId": agent_id, "timestamp": ts_ms,
            "sensors": [{"id": "cpu_temp", "temperature": temp, "type": "cpu",
                         "max_temp": 85, "crit_temp": 95}],
            "fans": [{"id": "cpu_fan", "speed": fan_speed, "rpm": 1200, "targetSpeed": fan_speed,
                      "status": "ok"}],
            "systemHealth": {"cpuUsage": 25.3, "memoryUsage": 45.2, "agentUptime": 3600}}
    if seq is not None:
        data["seq"] = seq
    return json.dumps({"type": "data", "data": data})


def now_ms():
    return int(time.time() * 1000)


async def connect_agent(bridge, agent_id, token, via_header=False, **kw):
    """Open /ws/agent; returns the websocket after 'connected'."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    url = f"{bridge.ws}/ws/agent"
    if via_header:
        headers["X-Agent-Id"] = agent_id
    else:
        url += f"?agent_id={agent_id}"
    # A token issued while the bridge runs reaches its copy of the
    # credentials through NOTIFY within milliseconds (bridge/credentials.c);
    # a test that registers and connects at once may beat it, so a 401 is
    # retried for up to a second, the bound test_agent_ws checks.
    deadline = time.time() + 1
    while True:
        try:
            return await websockets.connect(url, extra_headers=headers, open_timeout=10, **kw)
        except websockets.exceptions.InvalidStatusCode as e:
            if e.status_code != 401 or time.time() > deadline:
                raise
            await asyncio.sleep(0.02)


async def recv_json(ws, timeout=5):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_type(ws, mtype, timeout=5, pred=None):
    """Read messages until one of type mtype (and pred) arrives; others are skipped."""
    deadline = time.time() + timeout
    while True:
        left = deadline - time.time()
        if left <= 0:
            raise asyncio.TimeoutError(f"no {mtype} message within {timeout}s")
        m = await recv_json(ws, left)
        if m.get("type") == mtype and (pred is None or pred(m)):
            return m


async def recv_or_none(ws, mtype, timeout=5, pred=None):
    """Like recv_type, but None when no such message comes in time (or the
    connection ends), so a test can assert on it instead of aborting."""
    try:
        return await recv_type(ws, mtype, timeout, pred)
    except (asyncio.TimeoutError, websockets.exceptions.ConnectionClosed):
        return None


async def handshake_status(url, headers=None, subprotocols=None):
    """The HTTP status a refused handshake got (101 when accepted)."""
    try:
        ws = await websockets.connect(url, extra_headers=headers or {}, subprotocols=subprotocols,
                                      open_timeout=10)
        await ws.close()
        return 101
    except websockets.exceptions.InvalidStatusCode as e:
        return e.status_code


async def wait_closed(ws, timeout=10):
    """(code, reason) the server closed ws with."""
    try:
        await asyncio.wait_for(ws.wait_closed(), timeout)
    except asyncio.TimeoutError:
        return None, None
    return ws.close_code, ws.close_reason


def poll_until(fn, timeout=10, interval=0.05):
    """Call fn until it returns something truthy; return that (or the last value)."""
    deadline = time.time() + timeout
    v = fn()
    while not v and time.time() < deadline:
        time.sleep(interval)
        v = fn()
    return v


async def apoll_until(fn, timeout=10, interval=0.05):
    deadline = time.time() + timeout
    v = fn()
    while not v and time.time() < deadline:
        await asyncio.sleep(interval)
        v = fn()
    return v


class Session:
    """One psql session of the owner kept open (for a transaction that holds
    a lock while the test goes on); closed at exit."""

    def __init__(self, cluster):
        self.proc = subprocess.Popen([os.path.join(PGBIN, "psql"), "-X", "-At", "-q", "-v", "ON_ERROR_STOP=1",
                                      "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres",
                                      "-d", "pankha"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1)
        _cleanups.append(self.close)
        self.marks = 0

    def run(self, sql):
        """Run sql and wait until it has completed; returns its output lines."""
        self.marks += 1
        mark = f"-- done {self.marks}"
        self.proc.stdin.write(sql.rstrip().rstrip(";") + ";\n\\echo '" + mark + "'\n")
        self.proc.stdin.flush()
        out = []
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            if line == mark:
                return out
            out.append(line)
        raise RuntimeError(f"psql session ended: {out}")

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def refusal_counts(cluster, addr=None):
    """{"kind: reason": count} over the auth.failed rows (M5: one row per
    client address and minute, with counts); only addr's when given."""
    where = f" AND client_addr = {quote(addr)}" if addr else ""
    text = cluster.value("SELECT coalesce(jsonb_object_agg(k, n), '{}') FROM (SELECT r.key AS k, "
                         "sum(r.value::bigint) AS n FROM pankha.audit_log a, jsonb_each_text(a.details -> 'reasons') r "
                         f"WHERE a.event = 'auth.failed'{where} GROUP BY r.key) x")
    return {k: int(v) for k, v in json.loads(text).items()}


def counts_since(before, now):
    """What was counted between two refusal_counts()."""
    return {k: v - before.get(k, 0) for k, v in now.items() if v != before.get(k, 0)}
