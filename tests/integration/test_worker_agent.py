"""The worker agent under faults, with a real broker and real bridges on 127.0.0.1.

Each test waits on events (log lines, replies) with bounded timeouts and
stops every process it started by pid (Fleet.stop).
"""

import datetime
import os
import re
import signal
import subprocess
import time
import unittest

from tests.integration.fleet import (BIN, FIXTURES, PYTHON, Fleet, pid_alive, wait_until,
                                     write_config)

FAULTS = os.path.join(FIXTURES, "faults.py")
SPAWNED = r"bridge (\d+) gen (\d+): spawned pid (\d+)"


def spawned_pids(worker):
    return [int(re.search(SPAWNED, line).group(3)) for line in worker.wait_for(SPAWNED, 0)]


def timestamp(line):
    return datetime.datetime.strptime(line.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


def assert_no_sanitizer_report(test, fleet):
    """Under -DPYFLEET_SANITIZE=ON a report goes to the daemon's stderr, which we collect."""
    for process in fleet.workers + [fleet.broker]:
        reports = [line for line in process.lines
                   if re.search(r"AddressSanitizer|LeakSanitizer|runtime error:", line)]
        test.assertEqual(reports, [], process.name)


class FleetCase(unittest.TestCase):
    bridges = 2
    args = ()
    modules = (FAULTS,)

    def setUp(self):
        self.fleet = Fleet()
        self.fleet.start_broker()
        self.worker = self.fleet.start_worker(bridges=self.bridges, modules=self.modules,
                                              args=self.args)
        self.client = self.fleet.client()

    def tearDown(self):
        self.client.close()
        self.fleet.stop()
        assert_no_sanitizer_report(self, self.fleet)

    def ready_count(self):
        return self.worker.count(r"-> ready after")


class Lifecycle(unittest.TestCase):
    def test_sixteen_bridges_start_in_parallel_and_transitions_say_why_and_how_long(self):
        fleet = Fleet()
        try:
            fleet.start_broker()
            start = time.monotonic()
            worker = fleet.start_worker(bridges=16)
            elapsed = time.monotonic() - start
            client = fleet.client()
            pids = {client.call("test", "stats")["result"]["pid"] for _ in range(40)}
            client.close()
        finally:
            self.assertEqual(fleet.stop(), [0, 0])
        print("\n16 bridges ready in %.2f s" % elapsed)
        self.assertLess(elapsed, 20)
        self.assertGreater(len(pids), 1)
        log = worker.log()
        for step in ("spawning -> starting", "starting -> ready", "ready -> stopping",
                     "stopping -> dead"):
            self.assertEqual(len(re.findall(r"gen 1: %s after \d+ ms \(" % step, log)), 16, step)


class Beats(FleetCase):
    args = ("--beat", "200")

    def test_a_stopped_bridge_is_wedged_killed_and_replaced_and_gets_no_work(self):
        victim = spawned_pids(self.worker)[0]
        os.kill(victim, signal.SIGSTOP)
        self.worker.wait_for(r"pid %d: no beat for \d+ ms; taking no work" % victim, timeout=5)
        # Suspect and not listed: every request now runs on the other bridge.
        for _ in range(6):
            reply = self.client.call("test", "stats", timeout_ms=5000)
            self.assertTrue(reply["ok"], reply)
            self.assertNotEqual(reply["result"]["pid"], victim)
        self.worker.wait_for(r"pid %d: bridge wedged: no beat for \d+ ms; killing it" % victim,
                             timeout=5)
        self.worker.wait_for(r"-> ready after", count=3, timeout=15)
        self.assertTrue(wait_until(lambda: not pid_alive(victim), 3))
        self.assertTrue(self.client.call("test", "ping")["ok"])

    def test_a_busy_bridge_keeps_beating_and_is_not_wedged(self):
        reply = self.client.call("test", "sleep", {"seconds": 1.5}, timeout_ms=5000)
        self.assertTrue(reply["ok"], reply)
        self.assertEqual(self.worker.count("wedged"), 0)


class Deadline(FleetCase):
    def test_hung_handler_times_out_with_its_stack_in_the_log_and_no_late_reply(self):
        start = time.monotonic()
        reply = self.client.call("test", "hang", {}, timeout_ms=1000)
        elapsed = time.monotonic() - start
        self.assertFalse(reply["ok"])
        self.assertEqual(reply["code"], "TIMEOUT")
        self.assertLess(elapsed, 2.0, "TIMEOUT within deadline + 1 s")
        self.worker.wait_for(r"bridge \d+ pid \d+: .*hang_forever_here", timeout=5)
        after = self.client.call("test", "echo", {"next": 1})
        self.assertEqual(after["result"], {"next": 1})
        self.assertFalse(self.client.socket.poll(500), "a late reply reached the client")
        self.worker.wait_for(r"-> ready after", count=3, timeout=15)


class Crash(FleetCase):
    def test_exit_sigkill_and_segfault_are_bridge_crashed_and_replaced(self):
        for number, command in enumerate(("crash_exit", "kill_self", "crash_segv")):
            reply = self.client.call("test", command)
            self.assertFalse(reply["ok"], command)
            self.assertEqual(reply["code"], "BRIDGE_CRASHED", reply)
            self.worker.wait_for(r"-> ready after", count=3 + number, timeout=15)
        self.assertEqual(self.worker.count(r"exited with status 7"), 1)
        self.assertEqual(self.worker.count(r"killed by signal 9"), 1)
        self.assertEqual(self.worker.count(r"killed by signal 11"), 1)
        self.assertTrue(self.client.call("test", "ping")["ok"])

    def test_replacement_is_ready_fast_after_a_crash(self):
        delays = []
        for number in range(5):
            self.client.call("test", "crash_exit")
            lines = self.worker.wait_for(r"-> ready after", count=3 + number, timeout=15)
            dead = self.worker.wait_for(r"-> dead after .*status 7", count=1 + number)[-1]
            delays.append(timestamp(lines[-1]) - timestamp(dead))
        self.assertLess(sorted(delays)[2], 2.0)


class CrashWithAPipeline(FleetCase):
    """Requests waiting behind a crashing one (in the bridge's pipe, or at
    the agent) never started: they run on the replacement, each once."""
    bridges = 1
    args = ("--log-level", "debug")

    def test_the_running_request_is_bridge_crashed_and_those_behind_it_run_once(self):
        crash = self.client.send_request("test", "crash_exit")
        behind = [self.client.send_request("test", "ping") for _ in range(4)]
        replies = {}
        for _ in range(5):
            reply = self.client.recv(timeout=15)
            self.assertNotIn(reply["id"], replies, "a request was answered twice")
            replies[reply["id"]] = reply
        self.assertEqual(replies[crash]["code"], "BRIDGE_CRASHED", replies[crash])
        for request_id in behind:
            self.assertTrue(replies[request_id]["ok"], replies[request_id])
        pids = {replies[request_id]["result"]["pid"] for request_id in behind}
        self.assertEqual(len(pids), 1, "all ran on the replacement")
        self.assertGreaterEqual(self.worker.count(r"BUSY \(bridge lost before it could start"), 1)


class BadImport(unittest.TestCase):
    def test_import_error_backs_off_and_the_agent_reports_no_capacity(self):
        fleet = Fleet()
        try:
            fleet.start_broker()
            worker = fleet.start_worker(bridges=1, modules=[os.path.join(FIXTURES,
                                                                         "bad_import.py")],
                                        wait_ready=False)
            worker.wait_for(r"RuntimeError: fixture import failure", timeout=10)
            worker.wait_for(r"capacity: 0 of 1 bridges serving", timeout=5)
            worker.wait_for(r"respawn in 3200 ms", timeout=10)
            spawns = [timestamp(line) for line in worker.wait_for(SPAWNED, 0)]
            within = [t for t in spawns if t - spawns[0] <= 3.0]
            self.assertLessEqual(len(within), 6)
            self.assertGreaterEqual(len(within), 4)
            for delay in (100, 200, 400, 800, 1600):
                self.assertEqual(worker.count(r"respawn in %d ms" % delay), 1)
            self.assertIsNone(worker.proc.poll())
            client = fleet.client()
            reply = client.call("test", "ping", timeout_ms=500)
            client.close()
            self.assertFalse(reply["ok"])
            self.assertEqual(worker.count(r"-> ready after"), 0)
        finally:
            self.assertEqual(fleet.stop(), [0, 0])


WORKLOAD = os.path.join(FIXTURES, "workload.py")
RECYCLED = (r"bridge (\d+) gen (\d+): recycling \((.*?)\) after (\d+) requests; replacement "
            r"bridge (\d+) gen (\d+) ready (\d+) ms before, waited (\d+) ms")


def recycles(worker, reason=""):
    """One dict per retirement logged by the agent (the swap with a ready replacement)."""
    found = []
    for line in worker.wait_for(RECYCLED, 0):
        m = re.search(RECYCLED, line)
        if m.group(3).startswith(reason):
            found.append({"old": (m.group(1), m.group(2)), "requests": int(m.group(4)),
                          "new": (m.group(5), m.group(6)), "ready_before_ms": int(m.group(7)),
                          "waited_ms": int(m.group(8))})
    return found


def capacities(worker):
    """The agent's `capacity: N of M bridges serving` values from the first serving one on."""
    values = [int(re.search(r"capacity: (\d+)", line).group(1))
              for line in worker.wait_for(r"capacity: \d+ of", 0)]
    first = next(i for i, value in enumerate(values) if value > 0)
    return values[first:]


def most_recycling_at_once(worker):
    """Bridges with a replacement on the way or draining, at most, over the whole log."""
    now = most = 0
    for line in worker.log().splitlines():
        if re.search(r"gen \d+: replacement starts in slot", line):
            now += 1
        elif re.search(r"gen \d+: draining -> (stopping|dead)|its replacement in slot \d+ takes",
                       line):
            now -= 1
        most = max(most, now)
    return most


def spawned_before_retired(worker):
    """Each retirement's replacement logged ready before the retirement: pairs that break it."""
    log = worker.log().splitlines()
    broken = []
    for index, line in enumerate(log):
        m = re.search(RECYCLED, line)
        if m and not any(re.search(r"bridge %s gen %s: starting -> ready" % (m.group(5), m.group(6)),
                                   earlier) for earlier in log[:index]):
            broken.append(line)
    return broken


def run_closed_loop(client, total, in_flight, command, args):
    """Sends `total` requests keeping `in_flight` outstanding; returns the failed replies."""
    sent = done = 0
    failed = []
    while sent < min(in_flight, total):
        client.send_request("test", command, dict(args, n=sent), timeout_ms=20000)
        sent += 1
    while done < total:
        reply = client.recv(timeout=20)
        done += 1
        if not reply["ok"]:
            failed.append(reply)
        if sent < total:
            client.send_request("test", command, dict(args, n=sent), timeout_ms=20000)
            sent += 1
    return failed


class RecycleByRequests(FleetCase):
    args = ("--max-requests", "50")
    modules = (FAULTS, WORKLOAD)

    def test_two_thousand_requests_all_succeed_across_thirty_recycles_never_below_one_bridge(self):
        # A ~2 ms handler: echo (~0.2 ms) would reach the limit every ~15 ms,
        # far faster than one Python start (~60-100 ms here) with K = 1.
        start = time.monotonic()
        failed = run_closed_loop(self.client, 2000, 8, "work", {"ms": 2})
        elapsed = time.monotonic() - start
        done = recycles(self.worker, "max requests")
        capacity = capacities(self.worker)
        startups = [int(x) for x in re.findall(r"gen (?:[2-9]|\d\d+): starting -> ready after "
                                               r"(\d+) ms", self.worker.log())]
        waited = sorted(r["waited_ms"] for r in done)
        print("\nrecycling: 2000 requests in %.2f s, %d failed, %d recycles, capacity min %d; "
              "replacement start median %d ms; waited for a replacement: median %d ms, "
              "max %d ms, %d of %d not at all"
              % (elapsed, len(failed), len(done), min(capacity), sorted(startups)[len(startups) // 2],
                 waited[len(waited) // 2], waited[-1], waited.count(0), len(waited)))
        self.assertEqual(failed, [])
        self.assertGreaterEqual(len(done), 30)
        # The agent logged capacity after every roster change: never below one.
        self.assertGreaterEqual(min(capacity), 1, capacity)
        # Spawn before retire, and K = 1.
        self.assertEqual(spawned_before_retired(self.worker), [])
        self.assertEqual(most_recycling_at_once(self.worker), 1)


class PrespawnBeforeTheLimit(FleetCase):
    bridges = 1
    args = ("--max-requests", "40", "--jitter", "0")
    modules = (FAULTS, WORKLOAD)

    def test_replacement_is_ready_before_the_limit_so_no_request_waits_for_a_start(self):
        # At a moderate pace the bridge takes ~0.45 s to reach its limit: the
        # replacement, started ahead, is ready when the limit is hit, and
        # the two swap with no moment without a serving bridge.
        failed = run_closed_loop(self.client, 240, 1, "work", {"ms": 10})
        self.assertEqual(failed, [])
        done = recycles(self.worker, "max requests")
        self.assertGreaterEqual(len(done), 4)
        self.assertEqual([r["waited_ms"] for r in done], [0] * len(done))
        self.assertEqual([r["requests"] for r in done], [40] * len(done))
        self.assertEqual(set(capacities(self.worker)), {1})


class DrainWithSessions(unittest.TestCase):
    """A bridge due for recycling that holds a session keeps serving that
    session (HEARTBEAT lists it as "draining", so the broker sends it only
    that session's requests) until the session ends or --drain-cap passes."""

    def start(self, broker_args, worker_args):
        self.fleet = Fleet()
        self.addCleanup(assert_no_sanitizer_report, self, self.fleet)
        self.addCleanup(self.fleet.stop)
        self.fleet.start_broker(*broker_args)
        self.worker = self.fleet.start_worker(
            bridges=1, modules=[FAULTS, os.path.join(FIXTURES, "broker_cmds.py")],
            args=("--max-requests", "8", "--jitter", "0") + worker_args)
        self.client = self.fleet.client()
        self.addCleanup(self.client.close)

    def pin_a_session_then_recycle(self):
        """Returns the pid of the draining bridge that holds session "pinned"."""
        first = self.client.call("test", "counter", {}, session="pinned")
        pid = first["result"]["pid"]
        for _ in range(7):  # the 8th request reaches --max-requests 8
            self.assertEqual(self.client.call("test", "stats")["result"]["pid"], pid)
        self.worker.wait_for(r"bridge 0 gen 1: recycling \(max requests 8 reached\)", timeout=10)
        self.worker.wait_for(r"bridge 0 gen 1: \w+ -> draining", timeout=5)
        # The broker has the new roster: the draining bridge and its replacement.
        self.fleet.broker.wait_for(r"2 of 3 bridges serving", timeout=5)
        others = {self.client.call("test", "stats")["result"]["pid"] for _ in range(5)}
        self.assertNotIn(pid, others, "work outside the session went to the draining bridge")
        for n in (2, 3):
            reply = self.client.call("test", "counter", {}, session="pinned")
            self.assertTrue(reply["ok"], reply)
            self.assertEqual(reply["result"], {"n": n, "pid": pid})
        return pid

    def test_drain_cap_retires_the_bridge_and_the_session_is_lost(self):
        self.start((), ("--drain-cap", "2"))
        pid = self.pin_a_session_then_recycle()
        line = self.worker.wait_for(r"bridge 0 gen 1: draining -> stopping after \d+ ms "
                                    r"\(drain cap passed; sessions lost\)", timeout=6)[0]
        drained_ms = int(re.search(r"after (\d+) ms", line).group(1))
        self.assertGreaterEqual(drained_ms, 2000)
        self.assertLess(drained_ms, 3500)
        self.worker.wait_for(r"session 'pinned' lost")
        self.assertTrue(wait_until(lambda: not pid_alive(pid), 5))
        lost = self.client.call("test", "counter", {}, session="pinned")
        self.assertFalse(lost["ok"])
        self.assertEqual(lost["code"], "SESSION_LOST", lost)
        again = self.client.call("test", "counter", {}, session="pinned")
        self.assertTrue(again["ok"], again)
        self.assertEqual(again["result"]["n"], 1)
        self.assertNotEqual(again["result"]["pid"], pid)

    def test_session_end_runs_the_hook_then_the_bridge_retires_before_the_cap(self):
        self.start(("--session-ttl", "2"), ("--drain-cap", "60"))
        pid = self.pin_a_session_then_recycle()
        # Idle for the TTL: the broker ends the session, the hook runs on
        # the draining bridge, which then has nothing left and stops.
        self.worker.wait_for(r"bridge 0 pid %d: session_end pinned n=3" % pid, timeout=6)
        line = self.worker.wait_for(r"bridge 0 gen 1: draining -> stopping after \d+ ms "
                                    r"\(drained\)", timeout=5)[0]
        self.assertLess(int(re.search(r"after (\d+) ms", line).group(1)), 10000)
        self.assertTrue(wait_until(lambda: not pid_alive(pid), 5))
        self.assertEqual(self.worker.count(r"session 'pinned' lost"), 0)
        # An ended session is not lost: the same id starts a fresh one.
        fresh = self.client.call("test", "counter", {}, session="pinned")
        self.assertTrue(fresh["ok"], fresh)
        self.assertEqual(fresh["result"]["n"], 1)
        self.assertNotEqual(fresh["result"]["pid"], pid)


class BroadcastWhileAStandbyWaits(FleetCase):
    bridges = 1
    args = ("--max-requests", "6", "--jitter", "0")

    def test_the_standby_is_restarted_so_the_swapped_in_bridge_has_the_broadcast_state(self):
        first = self.client.call("test", "stats")["result"]["pid"]
        self.worker.wait_for(r"standby to replace bridge 0", timeout=10)
        reply = self.client.call("test", "set_value", {"value": 7}, flags=0x04)  # BROADCAST
        self.assertTrue(reply["ok"], reply)
        self.assertEqual(len(reply["result"]), 1, "the standby is not listed: not broadcast to")
        self.worker.wait_for(r"setup list changed; a fresh standby replays it", timeout=5)
        self.worker.wait_for(r"standby to replace bridge 0", count=2, timeout=10)
        for _ in range(4):
            self.assertEqual(self.client.call("test", "stats")["result"]["pid"], first)
        self.worker.wait_for(r"recycling \(max requests 6 reached\)", timeout=10)
        # Had the broker not yet seen the swap, the agent answers BUSY "not
        # started" and the broker runs the request on the new roster.
        after = self.client.call("test", "get_value")["result"]
        self.assertNotEqual(after["pid"], first)
        self.assertEqual(after["value"], 7)


class RecycleByMemory(FleetCase):
    args = ("--max-rss", "150")

    def test_growing_handler_is_recycled_with_no_failed_request(self):
        for _ in range(12):
            reply = self.client.call("test", "grow_memory", {"mb": 40})
            self.assertTrue(reply["ok"], reply)
        self.worker.wait_for(r"due for recycling: RSS \d+ KiB above max 153600 KiB", timeout=10)
        self.worker.wait_for(r"recycling \(RSS", timeout=10)
        self.worker.wait_for(r"replacement bridge \d+ gen \d+ ready", timeout=15)


class FreshBridgeAboveRss(FleetCase):
    args = ("--max-rss", "1")

    def test_is_reported_loudly_and_not_recycled_in_a_loop(self):
        self.worker.wait_for(r"already above --max-rss .*NOT recycling it", count=2)
        for _ in range(10):
            self.assertTrue(self.client.call("test", "ping")["ok"])
        self.assertEqual(self.worker.count(r"recycling \("), 0)


class RecycleByAge(FleetCase):
    args = ("--max-age", "1", "--jitter", "0")

    def test_old_bridges_are_replaced_one_at_a_time(self):
        self.worker.wait_for(r"recycling \(max age 1000 ms", count=2, timeout=10)
        self.worker.wait_for(r"replacement bridge \d+ gen \d+ ready", count=2, timeout=10)
        self.assertTrue(self.client.call("test", "ping")["ok"])
        # K = 1: a second replacement never starts before the first old
        # bridge stopped taking work.
        self.assertEqual(most_recycling_at_once(self.worker), 1)
        self.assertEqual(spawned_before_retired(self.worker), [])


class Containment(FleetCase):
    def test_kill_9_of_the_agent_leaves_no_bridge_and_no_grandchild(self):
        grandchild = self.client.call("test", "fork_grandchild")["result"]["child"]
        bridges = spawned_pids(self.worker)
        self.assertTrue(pid_alive(grandchild))
        self.worker.signal(signal.SIGKILL)
        self.worker.proc.wait(5)
        gone = wait_until(lambda: not any(pid_alive(p) for p in bridges + [grandchild]), 2)
        self.assertTrue(gone, [p for p in bridges + [grandchild] if pid_alive(p)])

    def test_bridges_get_one_blas_thread_by_default(self):
        reply = self.client.call("test", "environ", {"names": ["OMP_NUM_THREADS",
                                                              "OPENBLAS_NUM_THREADS",
                                                              "MKL_NUM_THREADS"]})
        self.assertEqual(set(reply["result"].values()), {"1"})

    def test_sigterm_stops_with_no_child_left_even_grandchildren(self):
        grandchild = self.client.call("test", "fork_grandchild")["result"]["child"]
        bridges = spawned_pids(self.worker)
        self.assertEqual(self.worker.stop(), 0)
        self.assertFalse(any(pid_alive(p) for p in bridges + [grandchild]))


class EnvOverride(FleetCase):
    args = ("--env", "OMP_NUM_THREADS=4")

    def test_env_overrides_the_default(self):
        reply = self.client.call("test", "environ", {"names": ["OMP_NUM_THREADS",
                                                              "MKL_NUM_THREADS"]})
        self.assertEqual(reply["result"], {"OMP_NUM_THREADS": "4", "MKL_NUM_THREADS": "1"})


class BadOutput(FleetCase):
    def test_garbage_and_a_4_gib_length_are_bridge_crashed_and_replaced(self):
        for number, command in enumerate(("garbage_output", "huge_length")):
            reply = self.client.call("test", command)
            self.assertEqual(reply["code"], "BRIDGE_CRASHED", reply)
            self.worker.wait_for(r"-> ready after", count=3 + number, timeout=15)
        self.worker.wait_for(r"bad bridge output: frame length above the 67108864 byte limit")
        with open("/proc/%d/status" % self.worker.pid) as f:
            peak_kb = int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))
        self.assertLess(peak_kb, 1024 * 1024, "the agent never allocates the bogus length")
        self.assertTrue(self.client.call("test", "ping")["ok"])

    def test_stderr_flood_never_blocks_and_is_prefixed_and_cut(self):
        flood = self.client.send_request("test", "spam_stderr", {"lines": 50000},
                                         timeout_ms=30000)
        pings = {self.client.send_request("test", "ping", timeout_ms=10000) for _ in range(20)}
        replies = {}
        while len(replies) < 21:
            reply = self.client.recv(timeout=30)
            replies[reply["id"]] = reply
        self.assertEqual(set(replies), pings | {flood})
        self.assertTrue(all(reply["ok"] for reply in replies.values()), replies)
        self.worker.wait_for(r"bridge \d+ pid \d+: spam_stderr line 49999", timeout=10)
        self.worker.wait_for(r"bridge \d+ pid \d+: L{200,}", timeout=10)
        self.assertLess(max(len(line) for line in self.worker.lines), 8192, "long lines are cut")


class SetupReplay(FleetCase):
    args = ("--setup", 'set_value {"value": 42}')

    def test_every_new_bridge_replays_the_setup_before_it_is_ready(self):
        values = {self.client.call("test", "get_value")["result"]["value"] for _ in range(6)}
        self.assertEqual(values, {42})
        self.client.call("test", "crash_exit")
        self.worker.wait_for(r"-> ready after .*setup replayed", count=3, timeout=15)
        values = {self.client.call("test", "get_value")["result"]["value"] for _ in range(6)}
        self.assertEqual(values, {42})


class GracefulStop(FleetCase):
    args = ("--stop-grace", "1500", "--log-level", "debug")

    def test_in_flight_request_finishes_then_the_agent_exits_0(self):
        request = self.client.send_request("test", "sleep", {"seconds": 0.5}, timeout_ms=10000)
        self.worker.wait_for(r"ready -> busy after \d+ ms \(sleep\)", timeout=5)
        bridges = spawned_pids(self.worker)
        self.worker.signal(signal.SIGTERM)
        reply = self.client.recv(timeout=5)
        self.assertEqual(reply["id"], request)
        self.assertTrue(reply["ok"], reply)
        self.assertEqual(self.worker.proc.wait(10), 0)
        self.assertFalse(any(pid_alive(p) for p in bridges))
        self.assertEqual(children(self.worker.pid), [])
        self.worker.wait_for(r"stopped$")

    def test_a_request_longer_than_the_grace_gets_timeout(self):
        request = self.client.send_request("test", "sleep", {"seconds": 30}, timeout_ms=60000)
        self.worker.wait_for(r"ready -> busy after \d+ ms \(sleep\)", timeout=5)
        self.worker.signal(signal.SIGTERM)
        reply = self.client.recv(timeout=10)
        self.assertEqual(reply["id"], request)
        self.assertEqual(reply["code"], "TIMEOUT")
        self.assertEqual(self.worker.proc.wait(15), 0)


class Config(unittest.TestCase):
    def run_worker(self, *args, timeout=10):
        return subprocess.run([os.path.join(BIN, "pyfleet-worker")] + list(args),
                              capture_output=True, timeout=timeout)

    def test_invalid_value_in_the_file_is_refused_naming_the_key(self):
        path = write_config(self, "worker\n    bridges = 2\n    max-rss = lots\n")
        done = self.run_worker("--config", path)
        self.assertEqual(done.returncode, 2)
        self.assertIn(b"worker/max-rss", done.stderr)

    def test_unknown_key_and_bad_flag_are_refused(self):
        path = write_config(self, "worker\n    bridgez = 2\n")
        done = self.run_worker("--config", path)
        self.assertEqual(done.returncode, 2)
        self.assertIn(b"unknown key 'worker/bridgez'", done.stderr)
        done = self.run_worker("--jitter", "90")
        self.assertEqual(done.returncode, 2)
        self.assertIn(b"--jitter", done.stderr)
        done = self.run_worker("--setup", "echo {not json")
        self.assertEqual(done.returncode, 2)
        self.assertIn(b"--setup", done.stderr)
        done = self.run_worker("--config", "/no/such/file.zpl")
        self.assertEqual(done.returncode, 2)

    def test_flags_override_the_file(self):
        fleet = Fleet()
        path = write_config(self, "worker\n    service = fromfile\n    bridges = 3\n"
                          "    setup = 'set_value {\"value\": \"file\"}'\n")
        try:
            fleet.start_broker()
            worker = fleet.start_worker(service="fromflag", bridges=1,
                                        modules=[FAULTS], args=["--config", path])
            worker.wait_for(r"serving 'fromflag' with 1 bridges")
            client = fleet.client()
            self.assertEqual(client.call("fromflag", "get_value")["result"]["value"], "file")
            client.close()
        finally:
            fleet.stop()


if __name__ == "__main__":
    unittest.main()
