"""The soak (issue 17): a private cluster, one real pankha-bridge (as the
pankha_bridge-only login), real pankha-agent processes on simulated hwmon
trees and bench/fleet processes for volume, run for a while with churn:

  - real agents: one is killed with SIGKILL and restarted, another stopped
    with SIGTERM and restarted, the stable ones have their TCP connection
    destroyed (ss -K) and reconnect by themselves;
  - fleet groups (bench/fleet processes of the same agents) end and start
    again, so their connections close and reopen by the hundred;
  - dashboards (/ws/ui, python3-websockets) come and go with
    subscriptions; half close cleanly, half drop their TCP connection;
  - commands from SQL (pankha.send_command) to agents online, acked by them.

It samples the RSS of the bridge (and its heap from /metrics) and of the
stable real agents every few seconds and fits a least-squares slope after
the warm-up; it snapshots every pankha table (size, rows, dead tuples) at
the end of the warm-up and at the end; and it checks that nothing is lost:
for the fleet, frames sent = acked = stored; for the real agents, every
frame they logged as acknowledged is stored, none twice.

bench/soak runs it (SOAK_MINUTES, default 10); bench/tests/test_soak runs
a quick one and turns its checks into TAP.  Both need PANKHA_PGBIN and
PANKHA_TESTROOT (harness.py), which those front ends set.
"""
import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

TOP = os.environ.get("PANKHA_TOP") or os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(TOP, "bridge", "tests"))
import harness  # noqa: E402
from harness import ROOT, Bridge, Cluster, poll_until, register  # noqa: E402

import websockets  # noqa: E402

AGENT = os.path.join(TOP, "agent", "pankha-agent")
FLEET = os.path.join(TOP, "bench", "fleet")


class Config:
    """The soak's sizes; quick() is the test's."""

    def __init__(self, minutes=10.0):
        self.seconds = minutes * 60
        self.warmup = min(max(60.0, self.seconds * 0.2), self.seconds / 2)
        self.real_stable = 2            # never restarted: their RSS is sampled
        self.real_churn = 2             # killed / stopped and started again
        self.fleet_groups = 4
        self.fleet_per_group = 250
        self.fleet_interval_ms = 2000
        self.fleet_life = (30, 75)      # seconds a fleet process sends
        self.ui_max = 4                 # dashboards open at once
        self.ui_life = (3, 15)
        self.command_every = 1.0
        self.churn_every = 15.0         # a real-agent event
        self.sample_every = 5.0
        # bounds of the verdicts
        self.bridge_slope_bound = 64.0  # kB/min
        self.agent_slope_bound = 4.0    # kB/min

    @classmethod
    def quick(cls, seconds=75):
        c = cls(seconds / 60)
        c.warmup = 25
        c.fleet_per_group = 25
        c.fleet_interval_ms = 1000
        c.fleet_life = (8, 16)
        c.ui_life = (2, 6)
        c.command_every = 0.5
        c.churn_every = 6.0
        c.sample_every = 2.0
        return c


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def cpu_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return int(parts[11]) + int(parts[12])
    except (OSError, IndexError, ValueError):
        return None


def slope(samples):
    """Least-squares slope of [(t_seconds, kB)] in kB per minute."""
    n = len(samples)
    if n < 3:
        return None
    mt = sum(t for t, _ in samples) / n
    mv = sum(v for _, v in samples) / n
    den = sum((t - mt) ** 2 for t, _ in samples)
    if den == 0:
        return None
    return sum((t - mt) * (v - mv) for t, v in samples) / den * 60


# what each pankha table is, for the growth report
DATA_PARENTS = ("readings", "rollup_1m", "rollup_1h")
DATA_TABLES = ("frames_cold", "rollup_state", "rollup_pending_hours")


def table_snapshot(db):
    """{table: {"bytes", "rows", "dead", "kind"}} for every table of schema
    pankha (partitions on their own, named by their parent's kind)."""
    rows = db.psql("""
        SELECT c.relname, coalesce(p.relname, ''), pg_total_relation_size(c.oid),
               coalesce(s.n_dead_tup, 0)
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          LEFT JOIN pg_inherits i ON i.inhrelid = c.oid
          LEFT JOIN pg_class p ON p.oid = i.inhparent
          LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
         WHERE n.nspname = 'pankha' AND c.relkind = 'r'
         ORDER BY 1""")
    snap = {}
    for line in rows.splitlines():
        name, parent, size, dead = line.split("|")
        kind = "data" if parent in DATA_PARENTS or name in DATA_TABLES else "other"
        snap[name] = {"bytes": int(size), "dead": int(dead), "kind": kind, "parent": parent}
    counts = db.psql("SELECT concat_ws('|', " +
                     ", ".join(f"(SELECT count(*) FROM pankha.\"{n}\")" for n in snap) + ")")
    for name, n in zip(snap, counts.split("|")):
        snap[name]["rows"] = int(n)
    return snap


class Soak:
    def __init__(self, cfg, log=print):
        self.cfg = cfg
        self.log = log
        self.t0 = None
        self.events = {"real_kill9": 0, "real_sigterm": 0, "real_cut": 0, "fleet_runs": 0,
                       "ui_opened": 0, "ui_clean_close": 0, "ui_dropped": 0, "ui_data_msgs": 0,
                       "ui_errors": 0, "ui_slow_closed": 0, "commands_sent": 0}
        self.fleet_totals = {"frames_sent": 0, "frames_acked": 0, "frames_unacked_closed": 0, "errors": 0, "commands": 0,
                             "connected": 0}
        self.samples = {"bridge": [], "heap": [], "agents": {}}
        self.procs = {}
        self.stopping = False
        self.ui_open = 0
        self.fleet_running = {}
        # frames a churned agent may have had committed without seeing the
        # ack when it was stopped: what it last said was waiting, and two
        self.kill9_waiting = 0

    # ---- set-up
    def setup(self):
        c = self.cfg
        self.db = Cluster(settings=("pankha.database = 'pankha'", "pankha.naptime = 1"))
        db = self.db
        self.stable = [f"soak-s{i}" for i in range(c.real_stable)]
        self.churn = [f"soak-c{i}" for i in range(c.real_churn)]
        self.real = self.stable + self.churn
        self.tokens = {a: register(db, a) for a in self.real}
        for a in self.real:
            db.psql(f"SELECT pankha.set_setting('agent:{a}', 'update_interval', '1')")
            db.psql(f"""SELECT pankha.set_setting('agent:{a}', 'log_level', '"debug"')""")
        self.fleet_files = []
        n = c.fleet_groups * c.fleet_per_group
        lines = db.psql(f"SELECT 'fleet-' || i || ' ' || pankha.register_agent('fleet-' || i, 'fleet ' || i, 'sim', '{{}}') "
                        f"FROM generate_series(1, {n}) i").splitlines()
        self.fleet_ids = [line.split()[0] for line in lines]
        for g in range(c.fleet_groups):
            path = os.path.join(ROOT, f"fleet.{g}.tokens")
            with open(path, "w") as f:
                f.write("\n".join(lines[g * c.fleet_per_group:(g + 1) * c.fleet_per_group]) + "\n")
            self.fleet_files.append(path)
        self.ui_tokens = [db.value(f"SELECT pankha.create_ui_token('soak-ui-{i}', 'viewer')") for i in range(2)]
        db.psql("INSERT INTO pankha.agent_groups (group_name) VALUES ('soak');"
                "INSERT INTO pankha.agent_group_members (agent_id, group_name) "
                "SELECT agent_id, 'soak' FROM pankha.agents WHERE agent_id LIKE 'fleet-%' AND "
                "substr(agent_id, 7)::int % 10 = 0")
        # every agent connects from 127.0.0.1: no per-address cap; the
        # fleet restarts reconnect the same ids often: no handshake cap
        self.bridge = Bridge(db, "--heartbeat-interval", "2", "--rate-limit", "0", "--max-connections-ip", "0",
                             "--connect-limit-agent", "0", "--command-visibility", "5",
                             "--max-connections", str(n + 200), name="soak-bridge")
        self.logs = {a: os.path.join(ROOT, f"{a}.log") for a in self.real}

    def start_agent(self, a):
        sim = os.path.join(ROOT, f"sim-{a}")
        p = subprocess.Popen([AGENT, "--config", "/dev/null", "--server", self.bridge.ws, "--agent-id", a,
                              "--token", self.tokens[a], "--simulate", sim, "--state-dir", sim,
                              "--reconnect-min", "0.5", "--reconnect-max", "3", "--ping-interval", "2",
                              "--status-interval", "5", "--log-level", "debug"],
                             stdout=open(self.logs[a], "ab"), stderr=subprocess.STDOUT)
        harness._cleanups.append(lambda: p.poll() is None and (p.kill(), p.wait()))
        self.procs[a] = p
        return p

    def start_fleet(self, g):
        c = self.cfg
        life = random.randint(*c.fleet_life)
        out = os.path.join(ROOT, f"fleet.{g}.{self.events['fleet_runs']}.json")
        p = subprocess.Popen([FLEET, "--port", str(self.bridge.port), "--tokens", self.fleet_files[g],
                              "--agents", str(c.fleet_per_group), "--interval", str(c.fleet_interval_ms),
                              "--duration", str(life), "--connect-rate", "200",
                              "--deflate", "on" if g % 2 else "off", "--ack-wait", "20"],
                             stdout=open(out, "w"), stderr=open(os.path.join(ROOT, "fleet.err"), "a"))
        harness._cleanups.append(lambda: p.poll() is None and (p.kill(), p.wait()))
        self.events["fleet_runs"] += 1
        self.fleet_running[g] = (p, out)

    def fleet_finished(self, g):
        p, out = self.fleet_running.pop(g)
        with open(out) as f:
            text = f.read().strip()
        try:
            r = json.loads(text.splitlines()[-1])
        except (ValueError, IndexError):
            raise RuntimeError(f"fleet process {g} (exit {p.returncode}) printed no result: {text[:200]}")
        for k in ("frames_sent", "frames_acked", "frames_unacked_closed", "errors", "commands"):
            self.fleet_totals[k] += r[k]
        self.fleet_totals["connected"] += r["ever_connected"]

    # ---- helpers
    def elapsed(self):
        return time.time() - self.t0

    def acked(self, a):
        """(highest seq acked, frames acked) from the agent's log over all its runs."""
        top = done = 0
        with open(self.logs[a], errors="replace") as f:
            for line in f:
                m = re.search(r"ack (\d+): (\d+) frame\(s\) done", line)
                if m:
                    top = max(top, int(m.group(1)))
                    done += int(m.group(2))
        return top, done

    def waiting(self, a):
        """Frames the agent last said were waiting for an ack."""
        w = 0
        with open(self.logs[a], errors="replace") as f:
            for line in f:
                m = re.search(r"ack \d+: \d+ frame\(s\) done, (\d+) waiting", line)
                if m:
                    w = int(m.group(1))
        return w

    def agent_port(self, pid):
        """The local port of pid's connection to the bridge (ss), or None."""
        out = subprocess.run(["ss", "-tnpH", "state", "established", "dst", f"127.0.0.1:{self.bridge.port}"],
                             capture_output=True, text=True).stdout
        for line in out.splitlines():
            if f"pid={pid}," in line:
                return line.split()[2].rsplit(":", 1)[1]
        return None

    def accepted(self):
        """Agent connections the bridge has accepted so far: those closed
        (pankha_bridge_disconnects_total, kind agent) and those open."""
        _, text = self.bridge.http("GET", "/metrics")
        n = 0
        for line in text.splitlines():
            if line.startswith('pankha_bridge_disconnects_total{kind="agent"') or \
                    line.startswith('pankha_bridge_connections{kind="agent"}'):
                n += float(line.rsplit(" ", 1)[1])
        return int(n)

    def sample(self):
        t = self.elapsed()
        r = rss_kb(self.bridge.proc.pid)
        if r:
            self.samples["bridge"].append((t, r))
        try:
            heap = self.bridge.metric('pankha_bridge_heap_bytes{state="in_use"}')
        except OSError:
            heap = None
        if heap is not None:
            self.samples["heap"].append((t, heap / 1024))
        for a in self.stable:
            r = rss_kb(self.procs[a].pid)
            if r:
                self.samples["agents"].setdefault(a, []).append((t, r))

    async def sql(self, q):
        return await asyncio.to_thread(self.db.value, q)

    # ---- the churning parts
    async def fleet_loop(self):
        c = self.cfg
        # start the groups staggered, so that they do not all end together
        for g in range(c.fleet_groups):
            self.start_fleet(g)
            await asyncio.sleep(c.fleet_life[0] / c.fleet_groups)
        while True:
            for g in list(self.fleet_running):
                p, _ = self.fleet_running[g]
                if p.poll() is not None:
                    self.fleet_finished(g)
                    if not self.stopping:
                        await asyncio.sleep(random.uniform(0.5, 2))
                        self.start_fleet(g)
            if self.stopping and not self.fleet_running:
                return
            await asyncio.sleep(0.2)

    async def real_loop(self):
        c = self.cfg
        step = 0
        while not self.stopping:
            await asyncio.sleep(c.churn_every)
            if self.stopping:
                break
            kind = step % 3
            step += 1
            if kind == 0:       # SIGKILL a churned agent, start it again
                a = self.churn[(step // 3) % len(self.churn)]
                self.kill9_waiting += self.waiting(a) + 2   # what it held, and up to two frames in flight
                self.procs[a].kill()
                self.procs[a].wait()
                self.events["real_kill9"] += 1
                await asyncio.sleep(random.uniform(1, 3))
                self.start_agent(a)
            elif kind == 1:     # SIGTERM the other, start it again
                a = self.churn[(step // 3 + 1) % len(self.churn)]
                self.kill9_waiting += self.waiting(a) + 2
                self.procs[a].terminate()
                await asyncio.to_thread(self.procs[a].wait, 20)
                self.events["real_sigterm"] += 1
                await asyncio.sleep(random.uniform(1, 3))
                self.start_agent(a)
            else:               # destroy a stable agent's TCP connection
                a = self.stable[(step // 3) % len(self.stable)]
                port = self.agent_port(self.procs[a].pid)
                if port:
                    r = subprocess.run(["ss", "-K", "dst", f"127.0.0.1:{self.bridge.port}", "sport", "=", port],
                                       capture_output=True, text=True)
                    if r.returncode == 0:
                        self.events["real_cut"] += 1

    async def one_ui(self):
        c = self.cfg
        token = random.choice(self.ui_tokens)
        topics = random.sample(["global", "groups.soak", "alerts"] +
                               [f"agents.{a}" for a in self.real] +
                               [f"agents.{a}" for a in random.sample(self.fleet_ids, 3)], 3)
        self.ui_open += 1
        try:
            ws = await websockets.connect(f"{self.bridge.ws}/ws/ui?token={token}", open_timeout=10)
            self.events["ui_opened"] += 1
            await harness.recv_type(ws, "connected", timeout=20)
            await ws.send(json.dumps({"type": "subscribe", "data": {"topics": topics}}))
            await harness.recv_type(ws, "subscribed", timeout=20)
            end = time.time() + random.uniform(*c.ui_life)
            while time.time() < end:
                try:
                    m = await asyncio.wait_for(ws.recv(), max(0.05, end - time.time()))
                except asyncio.TimeoutError:
                    break
                # counted without parsing: a Python client on a loaded
                # machine is slow enough already
                if '"type":"data"' in m[:40]:
                    self.events["ui_data_msgs"] += 1
            if random.random() < 0.5:
                await ws.close()
                self.events["ui_clean_close"] += 1
            else:
                ws.transport.abort()
                self.events["ui_dropped"] += 1
        except websockets.exceptions.ConnectionClosed as e:
            # the bridge's slow-consumer policy (close 1008 "too slow") met
            # this client: counted and reported, it is the bridge working
            if e.rcvd is not None and e.rcvd.code == 1008 and e.rcvd.reason == "too slow":
                self.events["ui_slow_closed"] += 1
            else:
                self.events["ui_errors"] += 1
                self.log(f"# ui client: {type(e).__name__}: {e}")
        except Exception as e:  # a dashboard refused or cut is an error of the soak
            self.events["ui_errors"] += 1
            self.log(f"# ui client: {type(e).__name__}: {e}")
        finally:
            self.ui_open -= 1

    async def ui_loop(self):
        tasks = set()
        while not self.stopping:
            if self.ui_open < self.cfg.ui_max:
                t = asyncio.create_task(self.one_ui())
                tasks.add(t)
                t.add_done_callback(tasks.discard)
            await asyncio.sleep(random.uniform(0.3, 1.5))
        if tasks:
            await asyncio.gather(*tasks)

    async def command_loop(self):
        self.commands = []
        # commands stop a little before the rest, so that those queued for
        # a fleet group between two of its runs reach its next run
        until = self.cfg.seconds - self.cfg.fleet_life[0]
        while not self.stopping and self.elapsed() < until:
            await asyncio.sleep(self.cfg.command_every)
            if self.stopping:
                break
            # a real agent takes set_fan_speed once it has reported the fan
            online = (await self.sql("SELECT string_agg(agent_id, ' ') FROM pankha.agents a "
                                     "WHERE status = 'online' AND (agent_id LIKE 'fleet-%' OR EXISTS "
                                     "(SELECT FROM pankha.fans f WHERE f.agent_id = a.agent_id "
                                     "AND f.fan_id = 'nct6798_fan1'))")).split()
            if not online:
                continue
            a = random.choice(online)
            if a.startswith("soak-"):
                cmd, params = "set_fan_speed", {"fan_id": "nct6798_fan1", "speed": random.randint(30, 90)}
            else:
                cmd, params = "emergency_stop", {}
            cid = await self.sql(f"SELECT pankha.send_command('{a}', '{cmd}', '{json.dumps(params)}', "
                                 "'normal', '10 minutes')")
            self.commands.append(cid)
            self.events["commands_sent"] += 1

    async def sample_loop(self):
        while True:
            self.sample()
            if self.stopping:
                return
            await asyncio.sleep(self.cfg.sample_every)

    # ---- the run
    async def run_async(self):
        c = self.cfg
        self.t0 = time.time()
        for a in self.real:
            self.start_agent(a)
        cpu0 = {"bridge": cpu_ticks(self.bridge.proc.pid)}
        loops = [asyncio.create_task(x) for x in (self.fleet_loop(), self.real_loop(), self.ui_loop(),
                                                   self.command_loop(), self.sample_loop())]
        while self.elapsed() < c.warmup:
            await asyncio.sleep(1)
            self.check_loops(loops)
        accepted_early = self.accepted()
        await asyncio.sleep(5)
        # the counters and ids first, the snapshot after: whatever happens
        # between them is counted as allowed, never as unexplained
        warm = {"connection_id": int(await self.sql("SELECT coalesce(max(connection_id), 0) FROM pankha.connections")),
                "audit": await self.sql("SELECT coalesce(jsonb_object_agg(event, n), '{}') FROM "
                                        "(SELECT event, count(*) n FROM pankha.audit_log GROUP BY 1) x"),
                "events": dict(self.events), "commands": self.events["commands_sent"], "t": self.elapsed(),
                "accepted": accepted_early}
        warm["tables"] = await asyncio.to_thread(table_snapshot, self.db)
        self.warm = warm
        self.log(f"# warm-up over after {c.warmup:.0f} s; soaking until {c.seconds:.0f} s")
        while self.elapsed() < c.seconds:
            await asyncio.sleep(1)
            self.check_loops(loops)
        self.stopping = True
        self.log("# stopping: no new dashboards, commands or churn; waiting for the fleet processes to end")
        await asyncio.gather(*loops)
        self.soak_end = self.elapsed()
        self.cpu = {"bridge": (cpu_ticks(self.bridge.proc.pid) - cpu0["bridge"]) / os.sysconf("SC_CLK_TCK")
                    / self.soak_end}

    @staticmethod
    def check_loops(loops):
        """A churn loop that failed ends the soak with its error."""
        for x in loops:
            if x.done() and x.exception():
                raise x.exception()

    def run(self):
        self.setup()
        asyncio.run(self.run_async())
        return self.finish()

    def finish(self):
        """Drain, then measure everything; returns the results dict."""
        db, br = self.db, self.bridge
        res = {"events": self.events, "fleet": dict(self.fleet_totals), "seconds": self.soak_end}
        # every command acked (the fleet processes are gone: commands to
        # fleet agents that had not arrived wait for an agent that is not coming)
        cids = "'{" + ",".join(self.commands) + "}'::uuid[]"

        def commands_state():
            return db.value(f"SELECT count(*) FILTER (WHERE status = 'acked'), count(*) FILTER (WHERE status <> 'acked'), "
                            f"count(*) FILTER (WHERE status <> 'acked' AND agent_id LIKE 'soak-%') "
                            f"FROM pankha.commands WHERE command_id = ANY ({cids})")
        poll_until(lambda: commands_state().split("|")[2] == "0", 30, 0.5)
        acked_n, pending_n, pending_real = (int(x) for x in commands_state().split("|"))
        lat = db.value("SELECT concat_ws('|', round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1), "
                       "round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1)) FROM "
                       "(SELECT extract(epoch FROM acked_at - created_at) * 1000 AS ms FROM pankha.commands "
                       f"WHERE command_id = ANY ({cids}) AND acked_at IS NOT NULL) x")
        res["commands"] = {"sent": len(self.commands), "acked": acked_n, "not_acked": pending_n,
                           "not_acked_real": pending_real, "latency_ms": lat}
        # everything the bridge holds committed
        poll_until(lambda: (br.metric("pankha_bridge_frames_held") or 0) == 0, 30, 0.2)
        # the real agents: every frame acked stored, none twice
        real = {}
        poll_until(lambda: all(self.waiting(a) == 0 for a in self.real), 20, 0.5)
        for a in self.real:
            top, done = self.acked(a)
            # the agents still stream: frames after the last ack read from
            # the log are left out (stored_upto)
            seqs = db.value(f"SELECT concat_ws('|', count(*), count(DISTINCT pankha.decode_seq(payload)), "
                            f"count(*) FILTER (WHERE pankha.decode_seq(payload) = {top}), "
                            f"count(*) FILTER (WHERE pankha.decode_seq(payload) <= {top})) "
                            f"FROM pankha.readings WHERE agent_id = '{a}'").split("|")
            real[a] = {"acked_top": top, "acked": done, "stored": int(seqs[0]), "distinct": int(seqs[1]),
                       "top_stored": int(seqs[2]), "stored_upto": int(seqs[3]), "waiting": self.waiting(a)}
        res["real"] = real
        res["kill9_waiting_bound"] = self.kill9_waiting
        res["fleet"]["stored"] = int(db.value("SELECT count(*) FROM pankha.readings WHERE agent_id LIKE 'fleet-%'"))
        # connections: every row of an agent not connected now is closed
        # (the bridge records the closes of the last fleet run as it gets to them)
        real_sql = "(" + ",".join(f"'{a}'" for a in self.real) + ")"
        poll_until(lambda: db.value("SELECT count(*) FROM pankha.connections WHERE closed_at IS NULL "
                                    f"AND agent_id NOT IN {real_sql}") == "0", 60, 0.5)
        open_now = set(db.value("SELECT coalesce(string_agg(agent_id, ' '), '') FROM pankha.connections "
                                "WHERE closed_at IS NULL").split())
        res["open_rows"] = sorted(open_now)
        res["open_rows_dup"] = int(db.value("SELECT count(*) FROM (SELECT agent_id FROM pankha.connections "
                                            "WHERE closed_at IS NULL GROUP BY 1 HAVING count(*) > 1) x"))
        res["online_fleet"] = int(db.value("SELECT count(*) FROM pankha.agents WHERE status = 'online' "
                                           "AND agent_id LIKE 'fleet-%'"))
        since = self.warm["connection_id"]
        res["connects_after_warmup"] = int(db.value(f"SELECT count(*) FROM pankha.connections WHERE connection_id > {since}"))
        res["accepted_after_warmup"] = self.accepted() - self.warm["accepted"]
        res["connects_total"] = int(db.value("SELECT count(*) FROM pankha.connections"))
        # dashboards gone: the bridge's own count, and its live watches
        poll_until(lambda: (br.metric('pankha_bridge_connections{kind="dashboard"}') or 0) == 0, 15, 0.2)
        res["ui_connections_end"] = br.metric('pankha_bridge_connections{kind="dashboard"}')
        # the bridge renews its watches; with nobody subscribed it forgets them
        poll_until(lambda: db.value("SELECT count(*) FROM pankha.live_watches WHERE expires_at > now()") == "0", 40, 0.5)
        res["live_watches_live"] = int(db.value("SELECT count(*) FROM pankha.live_watches WHERE expires_at > now()"))
        res["live_watches_rows"] = int(db.value("SELECT count(*) FROM pankha.live_watches"))
        res["agent_connections_end"] = br.metric('pankha_bridge_connections{kind="agent"}')
        # memory
        self.sample()
        warm_t = self.warm["t"]
        after = lambda s: [x for x in s if x[0] >= warm_t]   # noqa: E731
        res["rss"] = {"bridge": self._series(after(self.samples["bridge"])),
                      "bridge_heap": self._series(after(self.samples["heap"])),
                      "agents": {a: self._series(after(s)) for a, s in self.samples["agents"].items()},
                      "agent_peak_all": {a: self._vmhwm(self.procs[a].pid) for a in self.real}}
        res["cpu"] = self.cpu
        # tables
        end = table_snapshot(db)
        res["tables"] = {"start": self.warm["tables"], "end": end}
        res["audit"] = {"start": json.loads(self.warm["audit"]),
                        "end": json.loads(db.value("SELECT coalesce(jsonb_object_agg(event, n), '{}') FROM "
                                                   "(SELECT event, count(*) n FROM pankha.audit_log GROUP BY 1) x"))}
        res["commands_after_warmup"] = self.events["commands_sent"] - self.warm["commands"]
        res["autovacuum"] = db.psql("SELECT relname, autovacuum_count, autoanalyze_count FROM pg_stat_user_tables "
                                    "WHERE schemaname = 'pankha' AND autovacuum_count > 0 ORDER BY 1")
        res["bridge_alive"] = br.proc.poll() is None
        return res

    @staticmethod
    def _vmhwm(pid):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
        except OSError:
            return None

    @staticmethod
    def _series(s):
        if not s:
            return None
        return {"n": len(s), "first": round(s[0][1]), "last": round(s[-1][1]), "min": round(min(v for _, v in s)),
                "max": round(max(v for _, v in s)), "slope": slope(s)}

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        codes = {}
        for a, p in self.procs.items():
            try:
                codes[a] = p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                codes[a] = "killed"
        return codes, self.bridge.stop()


def growth_report(res):
    """Lines on the tables' growth from the end of the warm-up to the end."""
    start, end = res["tables"]["start"], res["tables"]["end"]
    lines = []
    for kind, title in (("data", "data (frames, readings partitions, rollups, cold storage)"),
                        ("other", "everything else")):
        names = sorted(n for n in set(start) | set(end) if (end.get(n) or start.get(n))["kind"] == kind)
        sb = sum(start.get(n, {}).get("bytes", 0) for n in names)
        eb = sum(end.get(n, {}).get("bytes", 0) for n in names)
        lines.append(f"{title}: {sb / 1024:.0f} kB -> {eb / 1024:.0f} kB (+{(eb - sb) / 1024:.0f} kB)")
        for n in names:
            s, e = start.get(n, {"rows": 0, "bytes": 0, "dead": 0}), end.get(n, {"rows": 0, "bytes": 0, "dead": 0})
            if kind == "data" and s == e:
                continue
            if kind == "other" and s["rows"] == e["rows"] and s["bytes"] == e["bytes"] and s["dead"] == e["dead"]:
                continue
            lines.append(f"  {n:28s} rows {s['rows']:>8} -> {e['rows']:>8} ({e['rows'] - s['rows']:+d}), "
                         f"{s['bytes'] / 1024:8.0f} -> {e['bytes'] / 1024:8.0f} kB, dead tuples {s['dead']} -> {e['dead']}")
        if kind == "other":
            same = [n for n in names if start.get(n) and end.get(n) and start[n]["rows"] == end[n]["rows"]
                    and start[n]["bytes"] == end[n]["bytes"] and start[n]["dead"] == end[n]["dead"]]
            lines.append(f"  unchanged: {', '.join(same)}")
    return lines


def other_rows_growth(res):
    """{table: rows grown} for the non-data tables."""
    start, end = res["tables"]["start"], res["tables"]["end"]
    return {n: end[n]["rows"] - start.get(n, {"rows": 0})["rows"] for n in end if end[n]["kind"] == "other"}


def audit_growth(res):
    s, e = res["audit"]["start"], res["audit"]["end"]
    return {k: e.get(k, 0) - s.get(k, 0) for k in sorted(set(s) | set(e)) if e.get(k, 0) != s.get(k, 0)}


def unexplained_growth(res):
    """Non-data tables whose rows grew by more than the churn records, each
    with (grew, allowed, why)."""
    grow = other_rows_growth(res)
    audit = audit_growth(res)
    allowed = {
        "connections": (res["accepted_after_warmup"], "one row per agent connection the bridge accepted after the "
                        "warm-up (its /metrics: disconnects + connected), plus those of the 5 s before the "
                        "snapshot whose rows may have been in flight"),
        "commands": (res["commands_after_warmup"], "one row per command sent after the warm-up"),
        "audit_log": (sum(v for k, v in audit.items() if k.startswith("command.")),
                      "one row per command issued and per command acked (by event: " +
                      ", ".join(f"{k} +{v}" for k, v in audit.items()) + ")"),
        "live_watches": (20, "no live row at the end (checked apart); expired rows wait for the next pankha.live_watch "
                             "call of any bridge to be deleted, at most one per topic the dashboards named"),
        "bridges": (0, "one row per bridge, beaten in place"),
        "agent_reports": (0, "one row per agent, replaced by each status report"),
    }
    out = {}
    for n, g in grow.items():
        lim, why = allowed.get(n, (0, "not written by the churn"))
        if g > lim or g < 0 and n in ("agents", "tokens"):
            out[n] = (g, lim, why)
    return out, {n: (grow.get(n, 0),) + allowed[n] for n in allowed}


def fmt(v, spec):
    return "n/a" if v is None else format(v, spec)


def checks(res, cfg, quick):
    """[(ok, name, detail)]: the verdicts, for TAP or for the report."""
    ev, fl, out = res["events"], res["fleet"], []

    def ok(cond, name, detail=None):
        out.append((bool(cond), name, detail))
    ok(ev["real_kill9"] >= 1 and ev["real_sigterm"] >= 1 and ev["real_cut"] >= 1,
       f"real agents churned: {ev['real_kill9']} SIGKILL + restart, {ev['real_sigterm']} SIGTERM + restart, "
       f"{ev['real_cut']} TCP connections destroyed (ss -K)", ev)
    ok(ev["fleet_runs"] >= 2 * cfg.fleet_groups,
       f"fleet groups ended and reconnected: {ev['fleet_runs']} runs of {cfg.fleet_groups} groups of "
       f"{cfg.fleet_per_group}, {fl['connected']} connections opened by them", ev)
    ok(ev["ui_opened"] >= 5 and ev["ui_clean_close"] >= 1 and ev["ui_dropped"] >= 1 and ev["ui_errors"] == 0,
       f"dashboards came and went: {ev['ui_opened']} opened, {ev['ui_clean_close']} closed cleanly, "
       f"{ev['ui_dropped']} dropped their TCP connection, {ev['ui_slow_closed']} closed by the bridge as too slow "
       f"(its slow-consumer policy, 1008), {ev['ui_errors']} errors", ev)
    ok(ev["ui_data_msgs"] > 0, f"the dashboards received live data ({ev['ui_data_msgs']} data messages)")
    c = res["commands"]
    ok(c["sent"] >= 10 and c["not_acked"] == 0,
       f"every command sent from SQL is acked: {c['sent']} sent, {c['acked']} acked "
       f"(acked_at - created_at p50|p99 {c['latency_ms']} ms)", c)
    u = fl["frames_unacked_closed"]
    ok(fl["frames_sent"] > 0 and fl["frames_sent"] == fl["frames_acked"] + u
       and fl["frames_acked"] <= fl["stored"] <= fl["frames_acked"] + u and fl["errors"] == 0,
       f"fleet zero loss: frames sent {fl['frames_sent']} = acked {fl['frames_acked']} = stored {fl['stored']}"
       + (f" (besides {u} frames sent on connections the bridge closed before acking them, which the fleet "
          f"does not re-send: {fl['stored'] - fl['frames_acked']} of them stored)" if u else "")
       + f", {fl['errors']} error messages", fl)
    bad = {}
    for a, r in res["real"].items():
        stable = a.startswith("soak-s")
        extra = r["stored_upto"] - r["acked"]
        if not (r["acked"] > 0 and r["stored"] == r["distinct"] and r["top_stored"] == 1
                and extra >= 0 and (extra == 0 if stable else extra <= res["kill9_waiting_bound"])):
            bad[a] = r
    tot = {k: sum(r[k] for r in res["real"].values()) for k in ("acked", "stored_upto")}
    ok(not bad, f"real agents: every frame they logged as acknowledged is stored, none twice "
       f"({tot['acked']} acked, {tot['stored_upto']} stored up to the last ack logged; the stored-but-unacked ones are frames committed "
       f"as their process was killed or stopped, at most {res['kill9_waiting_bound']})", bad or res["real"])
    ok(res["open_rows"] == sorted(res["real"]) and res["open_rows_dup"] == 0 and res["online_fleet"] == 0,
       f"connection rows: only the {len(res['real'])} real agents still connected have open rows; "
       f"every gone agent's rows are closed ({res['connects_total']} rows in all)",
       {"open": res["open_rows"][:10], "dup": res["open_rows_dup"], "online_fleet": res["online_fleet"]})
    ok(res["ui_connections_end"] == 0 and res["live_watches_live"] == 0 and res["live_watches_rows"] <= 20,
       f"dashboard state does not accumulate: {res['ui_connections_end']:.0f} dashboards counted by the bridge "
       f"after they left, {res['live_watches_live']} live watches, {res['live_watches_rows']} rows in live_watches",
       res)
    unexplained, _ = unexplained_growth(res)
    ok(not unexplained, "no non-data table grew beyond what the churn records", unexplained)
    r = res["rss"]
    if quick:
        b = r["bridge"]
        ok(b and b["last"] <= b["first"] + 16384,
           f"bridge RSS after the warm-up: {b['first']} -> {b['last']} kB (bound: +16 MB)", b)
        ags = r["agents"]
        ok(ags and all(s and s["last"] <= s["first"] + 2048 for s in ags.values()),
           "stable agents' RSS after the warm-up: " +
           ", ".join(f"{s['first']} -> {s['last']} kB" for s in ags.values()) + " (bound: +2 MB)", ags)
    else:
        b = r["bridge"]
        ok(b and b["slope"] is not None and b["slope"] <= cfg.bridge_slope_bound,
           f"bridge RSS slope {fmt(b['slope'], '+.1f')} kB/min after the warm-up ({b['n']} samples, {b['first']} -> "
           f"{b['last']} kB, min {b['min']} max {b['max']}; bound {cfg.bridge_slope_bound:.0f} kB/min)", b)
        h = r["bridge_heap"]
        if h:
            out.append((True, f"bridge heap in use (mallinfo2) slope {fmt(h['slope'], '+.1f')} kB/min ({h['first']} -> "
                        f"{h['last']} kB; reported, not a verdict)", None))
        for a, s in r["agents"].items():
            ok(s and s["slope"] is not None and s["slope"] <= cfg.agent_slope_bound,
               f"agent {a} RSS slope {fmt(s['slope'], '+.2f')} kB/min ({s['n']} samples, {s['first']} -> {s['last']} kB; "
               f"bound {cfg.agent_slope_bound:.0f} kB/min)", s)
    ok(res["bridge_alive"], "the bridge ran through it")
    return out


def report_lines(res, cfg):
    """The figures, as the report prints them."""
    ev, fl = res["events"], res["fleet"]
    L = [f"soak: {res['seconds']:.0f} s, warm-up {cfg.warmup:.0f} s; {cfg.real_stable} stable + {cfg.real_churn} "
         f"churned real agents (frame every 1 s), {cfg.fleet_groups} x {cfg.fleet_per_group} fleet agents "
         f"(frame every {cfg.fleet_interval_ms} ms, runs of {cfg.fleet_life[0]}-{cfg.fleet_life[1]} s, half with deflate), "
         f"up to {cfg.ui_max} dashboards",
         f"churn: {ev['real_kill9']} SIGKILL, {ev['real_sigterm']} SIGTERM, {ev['real_cut']} ss -K of real agents; "
         f"{ev['fleet_runs']} fleet runs ({fl['connected']} connections); {ev['ui_opened']} dashboards "
         f"({ev['ui_clean_close']} closed, {ev['ui_dropped']} dropped, {ev['ui_slow_closed']} closed as too slow, "
         f"{ev['ui_data_msgs']} data messages); "
         f"{res['commands']['sent']} commands; {res['connects_total']} connection rows",
         f"bridge CPU: {res['cpu']['bridge'] * 100:.1f}% of one core over the soak"]
    for name, s in (("bridge RSS", res["rss"]["bridge"]), ("bridge heap in use", res["rss"]["bridge_heap"])):
        if s:
            L.append(f"{name}: {s['first']} -> {s['last']} kB (min {s['min']}, max {s['max']}), "
                     f"slope {fmt(s['slope'], '+.1f')} kB/min over {s['n']} samples after the warm-up")
    for a, s in res["rss"]["agents"].items():
        if s:
            L.append(f"agent {a} RSS: {s['first']} -> {s['last']} kB (min {s['min']}, max {s['max']}), "
                     f"slope {fmt(s['slope'], '+.2f')} kB/min over {s['n']} samples")
    L.append("agents' peak RSS (VmHWM): " + ", ".join(f"{a} {v} kB" for a, v in res["rss"]["agent_peak_all"].items()))
    L.append("PostgreSQL tables, end of warm-up -> end:")
    L += ["  " + x for x in growth_report(res)]
    _, explained = unexplained_growth(res)
    L.append("non-data rows grown after the warm-up, and what the churn allows:")
    for n, (g, lim, why) in explained.items():
        L.append(f"  {n}: {g:+d} (allowed {lim}: {why})")
    if res["autovacuum"]:
        L.append("autovacuum ran on: " + ", ".join(x.replace("|", " vacuum x", 1).replace("|", " analyze x")
                                                  for x in res["autovacuum"].splitlines()))
    return L
