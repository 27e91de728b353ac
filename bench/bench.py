"""The benchmark orchestrator behind bench/run.sh (run that, not this).

Starts every system on 127.0.0.1 with free ports, runs the workloads with
the same client load on each, interleaves the systems over R rounds, and
writes a table (stdout) and a JSON file (bench/results/).  Every process
it starts is recorded by pid and stopped (its process group: TERM, then
KILL) when a system is torn down, on exit, on error and on SIGINT/SIGTERM.
Every wait is bounded.

Systems: floor (C parent + 2 bridges over pipes), floor-relay (the same bridges
behind one relaying C thread, the load from a separate C client process over a
Unix stream socket: the floor of any broker), pyfleet-tcp, pyfleet-ipc,
pyfleet-local (the agent in the broker's process), pyfleet-unix (the same, clients
on the broker's Unix stream socket), gearman, mp-pool, celery.
Workloads: (a) throughput, (b) latency, (c) cpu-bound, (d) payload sweep on
every system; (e) startup and crash replacement, (f) CPU per request and
callgrind instructions, (g) scale, and the bare round trips over ZeroMQ and a Unix
socket, with pyfleet.
"""

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from free_port import free_port  # noqa: E402  (shared with the tests and the demo)
PY = "/usr/bin/python3"
# $PYFLEET_BUILD: a build directory to measure instead of ./build (bench/run.sh
# sets it; use it to measure a fixed snapshot while the tree is being edited).
BUILD = os.path.abspath(os.environ.get("PYFLEET_BUILD", os.path.join(ROOT, "build")))
BIN = os.path.join(BUILD, "bin")
FLOOR = os.path.join(BENCH, "results", ".bin", "floor")
SESSIONS = os.path.join(BENCH, "results", ".bin", "sessions")
ZMQ_RTT = os.path.join(BENCH, "results", ".bin", "zmq_rtt")
MODULE = os.path.join(BENCH, "commands.py")
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVICE = "bench"

FULL = {
    "throughput": 100000, "latency": 5000, "cpu": 2000,
    "sweep": [(100, 5000), (10240, 5000), (102400, 1000), (1048576, 200)],
    "startup": [2, 16, 64], "crashes": 5, "scale": 30000, "scale_agents": [1, 2, 4],
    "sessions": [1000, 1000000], "session_requests": 20000, "callgrind": 3000,
}
# Celery runs ~1 k req/s here: its counts are cut so a full run stays
# under 15 minutes; the table says which count each figure used.
FULL_CELERY = {"throughput": 3000, "latency": 1000, "cpu": 1000,
               "sweep": [(100, 1000), (10240, 1000), (102400, 300), (1048576, 50)]}
SMOKE = {
    "throughput": 300, "latency": 100, "cpu": 50,
    "sweep": [(100, 50), (1048576, 5)],
    "startup": [2], "crashes": 1, "scale": 300, "scale_agents": [1, 2],
    "sessions": [100], "session_requests": 200, "callgrind": 0,
}
SMOKE_CELERY = {"throughput": 100, "latency": 50, "cpu": 20, "sweep": [(100, 20), (1048576, 3)]}

CONCURRENCY = 64
BURN_MS = 1
QUIET_CORES = 0.5  # background load above which a round is left out of the medians


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Processes: every one we start is tracked and stopped by its pid

class Procs:
    def __init__(self):
        self.live = {}  # pid -> Popen

    def start(self, argv, logfile=None, env=None, stdin=subprocess.DEVNULL):
        out = open(logfile, "ab") if logfile else subprocess.DEVNULL
        try:
            p = subprocess.Popen(argv, stdin=stdin, stdout=out, stderr=out, env=env,
                                 cwd=ROOT, start_new_session=True)
        finally:
            if logfile:
                out.close()
        self.live[p.pid] = p
        return p

    def stop(self, p, grace=5.0):
        """TERM the process group we started, wait (bounded), then KILL it."""
        if p.pid not in self.live:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
        try:  # stragglers in the group (bridges, pool children) after the leader died
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.live.pop(p.pid, None)

    def stop_all(self):
        for p in list(self.live.values())[::-1]:
            self.stop(p, grace=2.0)


PROCS = Procs()


def wait_for(predicate, timeout, what, interval=0.002):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise RuntimeError("timed out after %.0f s waiting for %s" % (timeout, what))


def wait_port(port, timeout=10):
    def up():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False
    wait_for(up, timeout, "port %d" % port, interval=0.02)


def count_ready(logfile):
    try:
        with open(logfile, "rb") as f:
            return f.read().count(b"-> ready")
    except FileNotFoundError:
        return 0


def run_driver(argv, timeout, stdin_data=None, env=None):
    """Run a load driver to completion (bounded) and return its JSON and rusage."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
                             stdout=out, stderr=err, cwd=ROOT, env=env, start_new_session=True)
        PROCS.live[p.pid] = p
        if stdin_data is not None:
            p.stdin.write(stdin_data)
            p.stdin.close()
        deadline = time.monotonic() + timeout
        rusage = None
        while time.monotonic() < deadline:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                p.returncode = os.waitstatus_to_exitcode(status)
                rusage = ru
                break
            time.sleep(0.005)
        PROCS.live.pop(p.pid, None)
        if rusage is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
            raise RuntimeError("%s did not finish within %d s" % (os.path.basename(argv[1] if argv[0] == PY else argv[0]), timeout))
        out.seek(0)
        err.seek(0)
        text = out.read().decode(errors="replace").strip()
        errtext = err.read().decode(errors="replace").strip()
        try:
            result = json.loads(text.splitlines()[-1])
        except (ValueError, IndexError):
            raise RuntimeError("driver exit %d, no JSON; stderr: %s" % (p.returncode, errtext[-500:]))
        if p.returncode != 0 or result.get("errors"):
            raise RuntimeError("driver exit %d, %s errors; stderr: %s"
                               % (p.returncode, result.get("errors"), errtext[-500:]))
        result["client_cpu_s"] = rusage.ru_utime + rusage.ru_stime
        return result


def proc_cpu(pid):
    """utime + stime of one process in seconds, from /proc/PID/stat (0 if gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def children_of(pid, marker=None):
    """Pids whose parent is pid (and whose command line holds marker, if given)."""
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) != pid:
                        continue
                if marker:
                    with open("/proc/%s/cmdline" % entry, "rb") as f:
                        if marker.encode() not in f.read():
                            continue
                kids.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return kids


def cpu_busy_jiffies():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4], sum(v)  # busy (all but idle and iowait), total


def background_cores(seconds=0.5):
    """Cores kept busy by processes that are not ours, sampled while none of ours runs.

    The machine may be shared (other jobs, test suites): a figure taken while
    it was busy is flagged in the table rather than silently trusted.
    """
    p0 = all_proc_cpu()
    b0, t0 = cpu_busy_jiffies()
    time.sleep(seconds)
    b1, t1 = cpu_busy_jiffies()
    p1 = all_proc_cpu()
    busy = (b1 - b0) / (t1 - t0) * os.cpu_count() if t1 > t0 else 0.0
    # Who was busy: the processes that used at least 5% of a core meanwhile.
    top = sorted(((p1[k] - p0[k]) / seconds, k[1], k[0]) for k in p1 if k in p0)
    return busy, ["%s[%d] %.2f" % (comm, pid, cores) for cores, comm, pid in reversed(top) if cores >= 0.05][:5]


def all_proc_cpu():
    """(pid, comm) -> utime + stime in seconds, for every process."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    text = f.read()
                comm = text[text.index("(") + 1:text.rindex(")")]
                fields = text.rsplit(")", 1)[1].split()
                out[(int(entry), comm)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
            except (OSError, ValueError, IndexError):
                pass
    return out


def echo_args(size):
    return json.dumps({"d": "x" * size}).encode()


# --------------------------------------------------------------------------
# Systems. Each: setup(), run(kind, count, size) -> result dict, teardown().

class Floor:
    """relay: the load comes from a separate client process and the parent
    only relays (floor.c --relay), the floor of any broker."""

    def __init__(self, relay=False):
        self.relay = relay
        self.name = "floor-relay" if relay else "floor"

    def setup(self, logdir):
        self.env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "bridge", "python"))

    def run(self, kind, count, size=100):
        argv = [FLOOR, "--children", "2", "--count", str(count), "--module", MODULE]
        argv += ["--concurrency", "1" if kind == "latency" else str(CONCURRENCY)]
        argv += ["--cmd", "burn", "--ms", str(BURN_MS)] if kind == "cpu" else ["--size", str(size)]
        if not self.relay:
            return run_driver(argv, timeout=300, env=self.env)
        r = run_driver(argv + ["--relay"], timeout=300, env=self.env)
        r["cpu_us_per_req"] = {"client": r["client_cpu_us_per_req"], "relay": r["relay_cpu_us_per_req"]}
        return r

    def teardown(self):
        pass


class Pyfleet:
    """transport tcp or ipc: a broker and separate agents on that transport;
    local: one broker (clients over tcp) running the agent in its own process
    (--local-worker), so broker and agent talk over inproc; unix: the same,
    clients over the broker's Unix stream socket (--unix) instead of tcp."""

    def __init__(self, transport):
        self.transport = transport
        self.name = "pyfleet-" + transport

    def setup(self, logdir, agents=1, bridges=2):
        if self.transport == "ipc":
            self.ep = "ipc://%s/broker.sock" % logdir
        else:
            self.ep = "tcp://127.0.0.1:%d" % free_port()
        self.logdir = logdir
        argv = [os.path.join(BIN, "pyfleet-broker"), "--bind", self.ep, "--queue-max", "200000"]
        if self.transport == "unix":
            self.ep = "unix://%s/broker.stream" % logdir
            argv += ["--unix", self.ep[len("unix://"):]]
        broker_log = os.path.join(logdir, "broker.log")
        self.worker_logs = []
        if self.transport in ("local", "unix"):
            config = os.path.join(logdir, "local-worker.zpl")
            with open(config, "w") as f:
                f.write("worker\n    service = %s\n    bridges = %d\n    module = %s\n"
                        % (SERVICE, bridges, MODULE))
            argv += ["--local-worker", config]
            self.worker_logs.append(broker_log)
            agents -= 1
        self.broker = PROCS.start(argv, broker_log)
        self.workers = []
        for i in range(agents):
            wl = os.path.join(logdir, "worker%d.log" % i)
            self.worker_logs.append(wl)
            self.workers.append(PROCS.start(
                [os.path.join(BIN, "pyfleet-worker"), "--broker", self.ep, "--service", SERVICE,
                 "--bridges", str(bridges), "--module", MODULE], wl))
        wait_for(lambda: all(count_ready(wl) >= bridges for wl in self.worker_logs), 60,
                 "%d bridges ready" % (bridges * agents), interval=0.01)
        # An agent is usable once the broker has its READY: one call proves it.
        deadline = time.monotonic() + 20
        while True:
            r = subprocess.run([os.path.join(BIN, "pyfleet"), "call", "--broker", self.ep,
                                "--timeout", "2000", SERVICE, "ping", "{}"],
                               capture_output=True, timeout=10)
            if r.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("pyfleet service not reachable: %s" % r.stderr.decode()[-300:])
            time.sleep(0.05)

    def call(self, count, concurrency, command, args_json, session=None):
        argv = [os.path.join(BIN, "pyfleet"), "call", "--broker", self.ep, "--timeout", "120000",
                "--count", str(count), "--concurrency", str(concurrency), "--json"]
        if session:
            argv += ["--session", session]
        argv += [SERVICE, command, "-"]
        return run_driver(argv, timeout=600, stdin_data=args_json)

    def components(self):
        if self.transport in ("local", "unix"):
            return {"broker+agent": [self.broker.pid],
                    "bridges": children_of(self.broker.pid, "pyfleet_bridge")}
        comps = {"broker": [self.broker.pid], "agent": [w.pid for w in self.workers], "bridges": []}
        for w in self.workers:
            comps["bridges"] += children_of(w.pid, "pyfleet_bridge")
        return comps

    def run(self, kind, count, size=100):
        # CPU by component: (f) under the throughput load, and what (c) loses to it.
        comps = self.components() if kind in ("throughput", "cpu") else {}
        if kind == "cpu":
            return with_cpu_per_request(comps, lambda: self.call(
                count, CONCURRENCY, "burn", json.dumps({"ms": BURN_MS}).encode()))
        return with_cpu_per_request(comps, lambda: self.call(
            count, 1 if kind == "latency" else CONCURRENCY, "echo", echo_args(size)))

    def teardown(self):
        for w in self.workers:
            PROCS.stop(w)
        PROCS.stop(self.broker)


def with_cpu_per_request(components, drive):
    """Runs drive() (a load driver returning its result dict); with components
    ({name: [pid, ...]}), adds "cpu_us_per_req" by component, client included."""
    before = {k: sum(proc_cpu(p) for p in pids) for k, pids in components.items()}
    r = drive()
    if components:
        after = {k: sum(proc_cpu(p) for p in pids) for k, pids in components.items()}
        n = r["requests"]
        r["cpu_us_per_req"] = {k: (after[k] - before[k]) * 1e6 / n for k in components}
        r["cpu_us_per_req"]["client"] = r["client_cpu_s"] * 1e6 / n
    return r


class Gearman:
    name = "gearman"

    def setup(self, logdir):
        self.port = free_port()
        self.server = PROCS.start(["/usr/sbin/gearmand", "--listen", "127.0.0.1", "--port", str(self.port),
                                   "--threads", "1", "--log-file", "none"], os.path.join(logdir, "gearmand.log"))
        wait_port(self.port)
        self.workers = [PROCS.start([PY, os.path.join(BENCH, "peers", "gearman_worker.py"), "127.0.0.1",
                                     str(self.port)], os.path.join(logdir, "gworker%d.log" % i)) for i in range(2)]
        self.run("throughput", 20, 10)  # both workers registered and grabbing

    def run(self, kind, count, size=100):
        argv = [PY, os.path.join(BENCH, "peers", "gearman_client.py"), "127.0.0.1", str(self.port),
                "--count", str(count), "--concurrency", "1" if kind == "latency" else str(CONCURRENCY)]
        argv += ["--cmd", "burn", "--ms", str(BURN_MS)] if kind == "cpu" else ["--size", str(size)]
        # (f) for comparison: gearmand and its Python workers
        comps = ({"server": [self.server.pid], "workers": [w.pid for w in self.workers]}
                 if kind == "throughput" else {})
        return with_cpu_per_request(comps, lambda: run_driver(argv, timeout=300))

    def teardown(self):
        for w in self.workers:
            PROCS.stop(w)
        PROCS.stop(self.server)


class Pool:
    name = "mp-pool"

    def setup(self, logdir):
        pass

    def run(self, kind, count, size=100):
        argv = [PY, os.path.join(BENCH, "peers", "mp_pool.py"), "--workers", "2", "--count", str(count),
                "--concurrency", "1" if kind == "latency" else str(CONCURRENCY)]
        argv += ["--cmd", "burn", "--ms", str(BURN_MS)] if kind == "cpu" else ["--size", str(size)]
        return run_driver(argv, timeout=300)

    def teardown(self):
        pass


class Celery:
    name = "celery"

    def setup(self, logdir):
        port = free_port()
        self.redis = PROCS.start(["/usr/bin/redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                  "--save", "", "--appendonly", "no"], os.path.join(logdir, "redis.log"))
        wait_port(port)
        self.env = dict(os.environ, BENCH_REDIS_URL="redis://127.0.0.1:%d/0" % port, C_FORCE_ROOT="1",
                        PYTHONPATH=os.path.join(BENCH, "peers"))
        # prefork with 2 children: the two Python worker processes.
        self.worker = PROCS.start([PY, "-m", "celery", "-A", "celery_app", "worker", "-P", "prefork", "-c", "2",
                                   "--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "warning"],
                                  os.path.join(logdir, "celery.log"), env=self.env)

    def run(self, kind, count, size=100):
        argv = [PY, os.path.join(BENCH, "peers", "celery_client.py"), "--count", str(count),
                "--concurrency", "1" if kind == "latency" else str(CONCURRENCY)]
        argv += ["--cmd", "burn", "--ms", str(BURN_MS)] if kind == "cpu" else ["--size", str(size)]
        return run_driver(argv, timeout=300, env=self.env)

    def teardown(self):
        PROCS.stop(self.worker, grace=10)
        PROCS.stop(self.redis)


# --------------------------------------------------------------------------
# Workloads on pyfleet only: (e) startup/crash, (f) callgrind, (g) scale

def startup_and_crash(logroot, counts, crashes):
    out = {"ready_s": {}, "crash_to_ready_ms": []}
    for n in counts:
        d = tempfile.mkdtemp(prefix="startup%d-" % n, dir=logroot)
        ep = "tcp://127.0.0.1:%d" % free_port()
        broker = PROCS.start([os.path.join(BIN, "pyfleet-broker"), "--bind", ep], os.path.join(d, "broker.log"))
        wl = os.path.join(d, "worker.log")
        t0 = time.monotonic()
        worker = PROCS.start([os.path.join(BIN, "pyfleet-worker"), "--broker", ep, "--service", SERVICE,
                              "--bridges", str(n), "--module", MODULE], wl)
        try:
            wait_for(lambda: count_ready(wl) >= n, 60, "%d bridges ready" % n, interval=0.002)
            out["ready_s"][str(n)] = time.monotonic() - t0
            if n == counts[0]:
                for _ in range(crashes):
                    bridges = children_of(worker.pid, "pyfleet_bridge")
                    if not bridges:
                        raise RuntimeError("no bridge processes under the agent")
                    before = count_ready(wl)
                    t1 = time.monotonic()
                    os.kill(bridges[0], signal.SIGKILL)
                    wait_for(lambda: count_ready(wl) > before, 30, "the crashed bridge's replacement")
                    out["crash_to_ready_ms"].append((time.monotonic() - t1) * 1000)
                    time.sleep(0.2)
        finally:
            PROCS.stop(worker)
            PROCS.stop(broker)
    return out


def scale(logroot, agent_counts, count):
    out = {}
    for k in agent_counts:
        sysm = Pyfleet("tcp")
        sysm.setup(tempfile.mkdtemp(prefix="scale%d-" % k, dir=logroot), agents=k)
        try:
            out[str(k)] = sysm.call(count, CONCURRENCY, "echo", echo_args(100))["req_per_s"]
        finally:
            sysm.teardown()
    return out


def sessions(logroot, session_counts, requests):
    """Throughput over S live sessions (S sessions opened first, then requests spread over them)."""
    out = {}
    sysm = Pyfleet("tcp")
    sysm.setup(tempfile.mkdtemp(prefix="sessions-", dir=logroot))
    try:
        for s in session_counts:
            try:
                r = run_driver([SESSIONS, "--broker", sysm.ep, "--service", SERVICE, "--sessions", str(s),
                                "--count", str(requests), "--concurrency", str(CONCURRENCY)], timeout=600)
                out[str(s)] = {"req_per_s": r["req_per_s"], "open_s": r.get("open_s")}
            except RuntimeError as exc:
                out[str(s)] = {"unsupported": str(exc)[:300]}
    finally:
        sysm.teardown()
    return out


def callgrind(logroot, count):
    """Broker and agent instructions per request under callgrind (counters zeroed after warm-up)."""
    if not count or not shutil.which("valgrind"):
        return {"skipped": "valgrind missing or smoke mode"}
    d = os.path.join(logroot, "callgrind")
    os.makedirs(d, exist_ok=True)
    ep = "tcp://127.0.0.1:%d" % free_port()
    vg = ["valgrind", "--tool=callgrind", "--dump-instr=no"]
    broker = PROCS.start(vg + ["--callgrind-out-file=%s/broker.%%p.out" % d, os.path.join(BIN, "pyfleet-broker"),
                               "--bind", ep, "--queue-max", "200000"], os.path.join(d, "broker.log"))
    wl = os.path.join(d, "worker.log")
    worker = PROCS.start(vg + ["--callgrind-out-file=%s/agent.%%p.out" % d, os.path.join(BIN, "pyfleet-worker"),
                               "--broker", ep, "--service", SERVICE, "--bridges", "2", "--module", MODULE], wl)
    try:
        wait_for(lambda: count_ready(wl) >= 2, 120, "bridges under callgrind", interval=0.05)
        sysm = Pyfleet("tcp")
        sysm.ep = ep
        sysm.call(200, CONCURRENCY, "echo", echo_args(100))  # warm-up, connections up
        for p in (broker, worker):
            subprocess.run(["callgrind_control", "--zero", str(p.pid)], capture_output=True, timeout=60)
        sysm.call(count, CONCURRENCY, "echo", echo_args(100))
        for p in (broker, worker):
            subprocess.run(["callgrind_control", "--dump=measured", str(p.pid)], capture_output=True, timeout=60)
        time.sleep(0.5)
    finally:
        PROCS.stop(worker, grace=20)
        PROCS.stop(broker, grace=20)
    out = {"requests": count, "dir": d}
    for role in ("broker", "agent"):
        dumps = sorted(f for f in os.listdir(d) if f.startswith(role + ".") and f.endswith(".out.1"))
        if not dumps:
            out[role] = None
            continue
        path = os.path.join(d, dumps[-1])
        with open(path) as f:
            m = re.search(r"^summary:\s+(\d+)", f.read(), re.M)
        ir = int(m.group(1)) if m else 0
        out[role + "_instr_per_req"] = ir / count
        # Self cost, then inclusive cost, every function listed.
        with open(os.path.join(d, role + ".annotate.txt"), "wb") as f:
            for inclusive in ("no", "yes"):
                ann = subprocess.run(["callgrind_annotate", "--threshold=100", "--auto=no",
                                      "--inclusive=" + inclusive, path], capture_output=True, timeout=120)
                f.write(ann.stdout)
        out[role + "_annotate"] = os.path.join(d, role + ".annotate.txt")
    return out


# --------------------------------------------------------------------------

def med(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def fmt(stat, unit="", scale=1.0, digits=0):
    if not stat:
        return "-"
    f = "%%.%df" % digits
    m, lo, hi = (f % (stat[k] * scale) for k in ("median", "min", "max"))
    return "%s%s (%s–%s)" % (m, unit, lo, hi) if stat["n"] > 1 else "%s%s" % (m, unit)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--systems", default="floor,floor-relay,pyfleet-tcp,pyfleet-ipc,pyfleet-local,pyfleet-unix,gearman,mp-pool,celery")
    ap.add_argument("--out", default=None)
    ap.add_argument("--no-extras", action="store_true",
                    help="only workloads (a)-(d): no startup, scale, sessions or callgrind")
    ap.add_argument("--report", metavar="JSON", help="print the table of an earlier run's JSON file again")
    o = ap.parse_args()
    if o.report:
        with open(o.report) as f:
            doc = json.load(f)
        doc["summary"] = summarize(doc["raw"], doc["extra"], None)
        print(table(doc["summary"], doc))
        return 0
    cfg, ccfg = (SMOKE, SMOKE_CELERY) if o.smoke else (FULL, FULL_CELERY)
    rounds = o.rounds or (1 if o.smoke else 3)
    all_systems = {s.name: s for s in (Floor(), Floor(relay=True), Pyfleet("tcp"), Pyfleet("ipc"), Pyfleet("local"), Pyfleet("unix"),
                                       Gearman(), Pool(), Celery())}
    chosen = [all_systems[n] for n in o.systems.split(",")]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    os.makedirs(os.path.join(BENCH, "results"), exist_ok=True)
    logroot = tempfile.mkdtemp(prefix="run-%s-" % stamp, dir=os.path.join(BENCH, "results"))
    out_path = o.out or os.path.join(BENCH, "results", "bench-%s%s.json" % (stamp, "-smoke" if o.smoke else ""))

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    raw = {s.name: [] for s in chosen}
    failures = []
    extra = {"startup": [], "scale": [], "zmq_rtt": [], "unix_rtt": [], "sessions": None,
             "callgrind": None}
    t_start = time.monotonic()
    try:
        for rnd in range(rounds):
            for s in chosen:
                c = ccfg if s.name == "celery" else cfg
                d = tempfile.mkdtemp(prefix="r%d-%s-" % (rnd, s.name), dir=logroot)
                res = {"round": rnd, "counts": {"throughput": c["throughput"], "latency": c["latency"],
                                                "cpu": c["cpu"], "sweep": c["sweep"]}}
                res["background_cores"], res["background_top"] = background_cores()
                log("round %d/%d: %s (background load %.2f cores%s)" % (
                    rnd + 1, rounds, s.name, res["background_cores"],
                    (": " + ", ".join(res["background_top"])) if res["background_top"] else ""))
                try:
                    s.setup(d)
                    try:
                        res["throughput"] = s.run("throughput", c["throughput"])
                        res["latency"] = s.run("latency", c["latency"])
                        cpu = s.run("cpu", c["cpu"])
                        cpu["efficiency"] = (c["cpu"] * BURN_MS / 1000.0 / 2) / cpu["elapsed_s"]
                        res["cpu"] = cpu
                        res["sweep"] = {str(size): s.run("sweep", n, size) for size, n in c["sweep"]}
                    finally:
                        s.teardown()
                except Exception as exc:  # one system failing does not stop the others
                    log("%s failed: %s" % (s.name, exc))
                    res["error"] = str(exc)[:1000]
                    failures.append("%s round %d: %s" % (s.name, rnd, str(exc)[:300]))
                raw[s.name].append(res)
            if any(s.name.startswith("pyfleet") for s in chosen) and not o.no_extras:
                for label, fn in (("startup", lambda: startup_and_crash(logroot, cfg["startup"], cfg["crashes"])),
                                  ("scale", lambda: scale(logroot, cfg["scale_agents"], cfg["scale"])),
                                  ("zmq_rtt", lambda: run_driver(
                                      [ZMQ_RTT, str(cfg["latency"]), "tcp://127.0.0.1:%d" % free_port()],
                                      timeout=120)),
                                  ("unix_rtt", lambda: run_driver(
                                      [ZMQ_RTT, str(cfg["latency"]), "unix://%s/rtt.stream" % logroot],
                                      timeout=120))):
                    log("round %d/%d: pyfleet %s" % (rnd + 1, rounds, label))
                    try:
                        extra[label].append(fn())
                    except Exception as exc:
                        log("%s failed: %s" % (label, exc))
                        failures.append("%s round %d: %s" % (label, rnd, str(exc)[:300]))
        if any(s.name.startswith("pyfleet") for s in chosen) and not o.no_extras:
            log("pyfleet sessions")
            try:
                if os.path.exists(SESSIONS):
                    extra["sessions"] = sessions(logroot, cfg["sessions"], cfg["session_requests"])
                else:
                    extra["sessions"] = {"unsupported": "session driver not built"}
            except Exception as exc:
                failures.append("sessions: %s" % str(exc)[:300])
                extra["sessions"] = {"unsupported": str(exc)[:300]}
            log("pyfleet callgrind")
            try:
                extra["callgrind"] = callgrind(logroot, cfg["callgrind"])
            except Exception as exc:
                failures.append("callgrind: %s" % str(exc)[:300])
                extra["callgrind"] = {"error": str(exc)[:300]}
    finally:
        PROCS.stop_all()

    summary = summarize(raw, extra, cfg)
    doc = {
        "machine": machine(), "mode": "smoke" if o.smoke else "full", "rounds": rounds,
        "concurrency": CONCURRENCY, "burn_ms": BURN_MS, "wall_s": time.monotonic() - t_start,
        "summary": summary, "raw": raw, "extra": extra, "failures": failures, "logs": logroot,
    }
    with open(out_path, "w") as f:
        json.dump(doc, f, indent=1)
    print(table(summary, doc))
    print("\nJSON: %s\nlogs: %s" % (os.path.relpath(out_path, ROOT), os.path.relpath(logroot, ROOT)))
    if failures:
        print("\nFAILURES:\n  " + "\n  ".join(failures))
        return 1
    return 0


def machine():
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    try:
        commit = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                                capture_output=True, timeout=10).stdout.decode().strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"nproc": os.cpu_count(), "cpu": model, "mem_gib": round(mem_kb / 1048576, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "build": BUILD, "tree": commit, "measured_commit": os.environ.get("BENCH_COMMIT", commit)}


def summarize(raw, extra, cfg):
    s = {}
    for name, rounds in raw.items():
        ok = [r for r in rounds if "error" not in r]
        e = {"failed_rounds": len(rounds) - len(ok),
             "background_cores": med([r.get("background_cores") for r in rounds])}
        # Rounds that started while other processes kept the machine busy
        # measure the contention, not the system: leave them out of the
        # medians when at least one quiet round exists (the JSON keeps all).
        quiet = [r for r in ok if r.get("background_cores", 0) < QUIET_CORES]
        e["rounds_used"] = len(quiet) if quiet else len(ok)
        e["busy_rounds_dropped"] = len(ok) - len(quiet) if quiet else 0
        ok = quiet or ok
        if ok:
            e["throughput_rps"] = med([r["throughput"]["req_per_s"] for r in ok])
            e["latency_p50_us"] = med([r["latency"]["p50_us"] for r in ok])
            e["latency_p99_us"] = med([r["latency"]["p99_us"] for r in ok])
            e["latency_max_us"] = med([r["latency"]["max_us"] for r in ok])
            e["cpu_efficiency"] = med([r["cpu"]["efficiency"] for r in ok])
            e["sweep_rps"] = {size: med([r["sweep"][size]["req_per_s"] for r in ok]) for size in ok[0]["sweep"]}
            e["counts"] = ok[0]["counts"]
            for kind, key in (("throughput", "cpu_us_per_req"), ("cpu", "cpu_bound_cpu_us_per_req")):
                if "cpu_us_per_req" in ok[0][kind]:
                    e[key] = {k: med([r[kind]["cpu_us_per_req"][k] for r in ok])
                              for k in ok[0][kind]["cpu_us_per_req"]}
        s[name] = e
    st = extra["startup"]
    if st:
        s["startup_ready_s"] = {n: med([x["ready_s"].get(n) for x in st]) for n in st[0]["ready_s"]}
        s["crash_to_ready_ms"] = med([v for x in st for v in x["crash_to_ready_ms"]])
    if extra["scale"]:
        s["scale_rps"] = {k: med([x[k] for x in extra["scale"]]) for k in extra["scale"][0]}
    for key in ("zmq_rtt", "unix_rtt"):
        if extra.get(key):
            s[key + "_us"] = {k: med([x[k] for x in extra[key]]) for k in ("p50_us", "p99_us")}
    return s


def table(s, doc):
    lines = []
    m = doc["machine"]
    lines.append("pyfleet bench (%s, %d round(s), %d in flight): %d × %s, %.1f GiB"
                 % (doc["mode"], doc["rounds"], CONCURRENCY, m["nproc"], m["cpu"], m["mem_gib"]))
    lines.append("median (min–max) over rounds; 2 Python worker processes per system; rounds that began "
                 "with > %.1f cores busy elsewhere are left out when a quiet round exists\n" % QUIET_CORES)
    systems = [k for k, v in s.items() if isinstance(v, dict) and "failed_rounds" in v]
    hdr = ("| system | (a) req/s | (b) p50 µs | (b) p99 µs | (b) max µs | (c) efficiency "
           "| background cores busy |")
    lines += [hdr, "|---|---|---|---|---|---|---|"]
    for name in systems:
        e = s[name]
        if "throughput_rps" not in e:
            lines.append("| %s | failed | | | | | |" % name)
            continue
        lines.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            name, fmt(e["throughput_rps"]), fmt(e["latency_p50_us"]), fmt(e["latency_p99_us"]),
            fmt(e["latency_max_us"]), fmt(e["cpu_efficiency"], digits=3),
            fmt(e["background_cores"], digits=2)
            + ("; %d busy round(s) dropped" % e["busy_rounds_dropped"] if e["busy_rounds_dropped"] else "")))
    sizes = None
    for name in systems:
        if "sweep_rps" in s[name]:
            sizes = list(s[name]["sweep_rps"])
            break
    if sizes:
        lines.append("\n(d) payload sweep, req/s at %d in flight" % CONCURRENCY)
        lines.append("| system | " + " | ".join("%s B" % z for z in sizes) + " |")
        lines.append("|---|" + "---|" * len(sizes))
        for name in systems:
            sw = s[name].get("sweep_rps", {})
            lines.append("| %s | " % name + " | ".join(fmt(sw.get(z)) for z in sizes) + " |")
    if "zmq_rtt_us" in s:
        lines.append("\n(b) ZeroMQ's own round trip between two processes (tcp, bench/floor/zmq_rtt.c): "
                     "p50 %s, p99 %s" % (fmt(s["zmq_rtt_us"]["p50_us"], " µs"),
                                         fmt(s["zmq_rtt_us"]["p99_us"], " µs")))
    if "unix_rtt_us" in s:
        lines.append("(b) the same round trip over a Unix stream socket (unix://): p50 %s, p99 %s"
                     % (fmt(s["unix_rtt_us"]["p50_us"], " µs"), fmt(s["unix_rtt_us"]["p99_us"], " µs")))
    if "startup_ready_s" in s:
        lines.append("\n(e) pyfleet: time to N ready bridges: " + ", ".join(
            "N=%s %s" % (n, fmt(v, " s", digits=2)) for n, v in s["startup_ready_s"].items()))
        lines.append("    crash → replacement ready: %s" % fmt(s["crash_to_ready_ms"], " ms", digits=1))
    for key, label in (("cpu_us_per_req", "(f) %s CPU µs/request at %d in flight: %s"),
                       ("cpu_bound_cpu_us_per_req",
                        "(c) %s CPU µs/request during the CPU-bound load (%d in flight): %s")):
        for name in systems:
            cpu = s[name].get(key)
            if cpu:
                lines.append(label % (name, CONCURRENCY, ", ".join(
                    "%s %s" % (k, fmt(v, digits=1)) for k, v in cpu.items())))
    cg = doc["extra"].get("callgrind") or {}
    if cg.get("broker_instr_per_req"):
        lines.append("(f) callgrind, %d requests: broker %.0f instructions/request, agent %.0f"
                     % (cg["requests"], cg["broker_instr_per_req"], cg.get("agent_instr_per_req") or 0))
    if "scale_rps" in s:
        lines.append("(g) pyfleet-tcp req/s by agents (2 bridges each): " + ", ".join(
            "%s: %s" % (k, fmt(v)) for k, v in s["scale_rps"].items()))
    ss = doc["extra"].get("sessions")
    if ss:
        lines.append("(g) live sessions: " + ", ".join(
            "%s: %s" % (k, ("%.0f req/s" % v["req_per_s"]) if "req_per_s" in v else "unsupported (%s)" % v.get("unsupported", "")[:120])
            for k, v in ss.items()) if "unsupported" not in ss else "(g) live sessions: unsupported (%s)" % ss["unsupported"])
    # Targets of issue 7, as ratios measured in this run, for each pyfleet setup.
    ge = s.get("gearman", {})
    pys = [(name[len("pyfleet-"):], s[name]) for name in systems
           if name.startswith("pyfleet-") and "throughput_rps" in s[name]]
    if pys and ge.get("throughput_rps"):
        lines.append("\nTargets (issue 7), this run:")

        def target(label, value, met, form):
            lines.append("  %s: %s" % (label, ", ".join(
                "%s %s %s" % (n, form % value(e), "MET" if met(value(e)) else "SHORT")
                for n, e in pys)))
        target("throughput ≥ 3× Gearman",
               lambda e: e["throughput_rps"]["median"] / ge["throughput_rps"]["median"],
               lambda r: r >= 3, "%.2f×")
        target("p50 ≤ 0.8× Gearman's",
               lambda e: e["latency_p50_us"]["median"] / ge["latency_p50_us"]["median"],
               lambda r: r <= 0.8, "%.2f×")
        target("p99 ≤ 2× own p50",
               lambda e: e["latency_p99_us"]["median"] / e["latency_p50_us"]["median"],
               lambda r: r <= 2, "%.2f×")
        target("CPU-bound efficiency ≥ 0.95", lambda e: e["cpu_efficiency"]["median"],
               lambda r: r >= 0.95, "%.3f")
        bounds = [(n, s[n]["cpu_efficiency"]["median"]) for n in ("floor", "floor-relay")
                  if s.get(n, {}).get("cpu_efficiency")]
        if bounds:
            lines.append("    (reached in this run by %s)" % ", ".join("%s %.3f" % b for b in bounds))
        pys = [(n, e) for n, e in pys if e.get("cpu_us_per_req")]
        if pys:
            target("client+broker+agent CPU ≤ 20 µs/request",
                   lambda e: sum(v["median"] for k, v in e["cpu_us_per_req"].items() if k != "bridges"),
                   lambda t: t <= 20, "%.1f µs")
        r64 = (s.get("startup_ready_s") or {}).get("64")
        if r64:
            lines.append("  64 bridges ready ≤ 3 s: %.2f s %s" % (r64["median"], "MET" if r64["median"] <= 3 else "SHORT"))
        cr = s.get("crash_to_ready_ms")
        if cr:
            lines.append("  crash-to-ready ≤ 150 ms median: %.0f ms %s" % (cr["median"], "MET" if cr["median"] <= 150 else "SHORT"))
    return "\n".join(lines)


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        PROCS.stop_all()
