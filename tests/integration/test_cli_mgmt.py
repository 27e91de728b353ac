"""The operator's CLI: `pyfleet status|workers|sessions|services|metrics`,
`drain`, `recycle`, `end-session`, `top` and `watch` (docs/MANAGEMENT.md).

Most tests run the CLI against a fake PFM1 server (a pyzmq ROUTER in a thread
answering canned bodies from the spec) and a fake PUB socket, so they pin
the CLI's side of the contract on their own. `top` is driven in a detached
tmux session. Every wait is bounded; every process and tmux session is
stopped by its id or name.
"""

import json
import os
import re
import signal
import subprocess
import threading
import time
import unittest

import zmq

from tests.integration.fleet import BIN, FIXTURES, Fleet, free_port, wait_until

PYFLEET = os.path.join(BIN, "pyfleet")

STATUS = {
    "uptime_s": 12.5, "agents": 2,
    "bridges": {"ready": 3, "busy": 1, "draining": 0, "total": 4},
    "sessions": 20, "queued": 7, "in_flight": 1,
    "requests_total": 1000, "replies_total": 999, "requests_per_s": 250.0,
    "errors": {"TIMEOUT": 1, "PYTHON_ERROR": 3},
    "malformed": 0, "send_failures": 0, "late_replies": 2,
    "sessions_lost": 0, "sessions_expired": 5,
    "actions": [{"time": "2026-11-27T10:00:00Z", "action": "drain", "agent": "host-1-ab12",
                 "result": "draining"}],
}

WORKERS = {"agents": [
    {"agent": "host-1-ab12", "host": "host-1", "pid": 4242, "service": "demo",
     "uptime_s": 60.1, "last_beat_ms": 120, "capacity": 3, "serving": 2,
     "in_flight": 1, "requests": 500, "errors": 2, "draining": False,
     "bridges": [
         {"bridge": 0, "generation": 1, "state": "ready", "requests": 100, "errors": 0,
          "sessions": 3, "in_flight": 0, "request": None, "request_age_ms": None, "pid": 4250, "rss_kb": 13000},
         {"bridge": 1, "generation": 4, "state": "busy", "requests": 400, "errors": 2,
          "sessions": 7, "in_flight": 1, "request": 77, "request_age_ms": 15, "pid": 4251, "rss_kb": 2048000}]},
    {"agent": "host-2-cd34", "host": "host-2", "pid": 5151, "service": "demo",
     "uptime_s": 7300, "last_beat_ms": 2500, "capacity": 2, "serving": 2,
     "in_flight": 0, "requests": 900, "errors": 0, "draining": True,
     "bridges": [
         {"bridge": 0, "generation": 1, "state": "draining", "requests": 900, "errors": 0,
          "sessions": 0, "request": None, "request_age_ms": None, "pid": None,
          "rss_kb": None}]}]}

SESSIONS = {"total": 1000000, "offset": 10, "limit": 2, "sessions": [
    {"service": "demo", "session": "s1", "agent": "host-1-ab12", "bridge": 0, "generation": 1,
     "idle_ms": 1200, "queued": 0},
    {"service": "demo", "session": "s2", "agent": None, "bridge": None, "generation": None,
     "idle_ms": 5, "queued": 1}]}

SERVICES = {"services": [
    {"service": "demo", "agents": 2, "bridges": 4, "queued": 7, "requests": 1000,
     "requests_per_s": 250.0, "latency_us": {"p50": 400, "p95": 900, "p99": 2000, "count": 1000},
     "errors": {"TIMEOUT": 1}, "error_rate": 0.001}]}

METRICS = (b"# HELP pyfleet_requests_total Requests accepted.\n"
           b"# TYPE pyfleet_requests_total counter\n"
           b"pyfleet_requests_total 1000\n"
           b"pyfleet_bridges{state=\"busy\"} 1\n"
           b"pyfleet_request_duration_seconds_bucket{service=\"demo\",le=\"+Inf\"} 1000\n")


def ok(body):
    return (b"OK", json.dumps(body).encode())


def error(code, message):
    return (b"ERROR", json.dumps({"error": code, "message": message}).encode())


class FakeBroker:
    """A PFM1 management endpoint: a ROUTER answering canned replies by command.

    `replies` maps a command to (status, body) or to a function of the request's
    arguments giving one; `requests` records (command, arguments) as received.
    A command set to None is never answered."""

    def __init__(self, replies):
        self.replies = dict(replies)
        self.requests = []
        self.context = zmq.Context.instance()
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind("tcp://127.0.0.1:0")
        self.endpoint = self.socket.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping.is_set():
            if not self.socket.poll(50):
                continue
            frames = self.socket.recv_multipart()
            identity, rest = frames[0], frames[1:]
            assert rest[0] == b"" and rest[1] == b"PFM1", rest
            command = rest[2].decode()
            args = json.loads(rest[3]) if len(rest) > 3 and rest[3] else {}
            self.requests.append((command, args))
            reply = self.replies.get(command, error("BAD_REQUEST", "unknown command"))
            if callable(reply):
                reply = reply(args)
            if reply is None:
                continue
            if isinstance(reply, list):  # raw frames after the identity
                self.socket.send_multipart([identity] + reply)
            else:
                self.socket.send_multipart([identity, b"", b"PFM1", reply[0], reply[1]])

    def stop(self):
        self.stopping.set()
        self.thread.join(5)
        self.socket.close(0)


def run(*args, env=None, timeout=20):
    started = time.monotonic()
    done = subprocess.run([PYFLEET] + list(args), capture_output=True, timeout=timeout,
                          env=env, stdin=subprocess.DEVNULL)
    return done.returncode, done.stdout.decode(), done.stderr.decode(), \
        time.monotonic() - started


def table(text):
    """Rows of a printed table, split on runs of two or more spaces."""
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines() if line.strip()]


class QueriesAgainstAFakeBroker(unittest.TestCase):
    def setUp(self):
        self.broker = FakeBroker({"STATUS": ok(STATUS), "WORKERS": ok(WORKERS),
                                  "SESSIONS": ok(SESSIONS), "SERVICES": ok(SERVICES),
                                  "METRICS": (b"OK", METRICS)})

    def tearDown(self):
        self.broker.stop()

    def cli(self, command, *args, **kw):
        return run(command, "--mgmt", self.broker.endpoint, *args, **kw)

    def test_status_prints_a_summary_block(self):
        rc, out, err, _ = self.cli("status")
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.broker.requests, [("STATUS", {})])
        self.assertRegex(out, r"(?m)^agents\s+2$")
        self.assertRegex(out, r"(?m)^bridges\s+4 total: 3 ready, 1 busy, 0 draining$")
        self.assertRegex(out, r"(?m)^sessions\s+20$")
        self.assertRegex(out, r"(?m)^queued\s+7$")
        self.assertRegex(out, r"(?m)^requests\s+1000 accepted, 999 answered, 250.0 req/s$")
        self.assertRegex(out, r"(?m)^errors\s+TIMEOUT=1 PYTHON_ERROR=3$")
        self.assertRegex(out, r"(?m)^2026-11-27T10:00:00Z\s+drain\s+host-1-ab12\s+draining$")

    def test_json_prints_the_brokers_body_as_one_object(self):
        for command, body in (("status", STATUS), ("workers", WORKERS),
                              ("sessions", SESSIONS), ("services", SERVICES)):
            rc, out, err, _ = self.cli(command, "--json")
            self.assertEqual(rc, 0, err)
            self.assertEqual(json.loads(out), body, command)
            self.assertEqual(len(out.strip().splitlines()), 1, "one line: %r" % out)

    def test_workers_lists_each_bridge_under_its_agent(self):
        rc, out, err, _ = self.cli("workers")
        self.assertEqual(rc, 0, err)
        rows = table(out)
        header = rows[0]
        self.assertEqual(header, ["AGENT / BRIDGE", "HOST", "PID", "UPTIME", "BEAT", "CAPACITY",
                                  "STATE", "IN FLIGHT", "REQUESTS", "ERRORS", "SESSIONS",
                                  "REQUEST", "AGE", "RSS"])
        names = [row[0] for row in rows[1:]]
        self.assertEqual(names, ["host-1-ab12", "bridge 0.1", "bridge 1.4",
                                 "host-2-cd34", "bridge 0.1"])
        lines = out.splitlines()
        # agent: host, pid, uptime, beat, serving/capacity, state, in flight, requests, errors
        self.assertRegex(lines[1], r"^host-1-ab12\s+host-1\s+4242\s+1m00s\s+120ms\s+2/3\s+"
                                   r"serving\s+1\s+500\s+2$")
        self.assertRegex(lines[4], r"^host-2-cd34\s+host-2\s+5151\s+2h01m\s+2.5s\s+2/2\s+"
                                   r"draining\s+0\s+900\s+0$")
        # bridge: pid, state, in flight, requests, errors, sessions, request, its age, RSS
        self.assertRegex(lines[2], r"^  bridge 0\.1\s+4250\s+ready\s+0\s+100\s+0\s+3\s+-\s+-\s+"
                                   r"12\.7M$")
        self.assertRegex(lines[3], r"^  bridge 1\.4\s+4251\s+busy\s+1\s+400\s+2\s+7\s+77\s+15ms\s+"
                                   r"1\.95G$")
        # Values the agent did not report show as "-".
        self.assertRegex(lines[5], r"^  bridge 0\.1\s+-\s+draining\s+-\s+900\s+0\s+0\s+-\s+-\s+-$")

    def test_sessions_sends_filters_and_paging_and_lists_rows(self):
        rc, out, err, _ = self.cli("sessions", "--service", "demo", "--agent", "host-1-ab12",
                                   "--offset", "10", "--limit", "2")
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.broker.requests, [("SESSIONS", {
            "service": "demo", "agent": "host-1-ab12", "offset": 10, "limit": 2})])
        rows = table(out)
        self.assertEqual(rows[0], ["SERVICE", "SESSION", "AGENT", "BRIDGE", "GEN", "IDLE",
                                   "QUEUED"])
        self.assertEqual(rows[1], ["demo", "s1", "host-1-ab12", "0", "1", "1.2s", "0"])
        self.assertEqual(rows[2], ["demo", "s2", "(unbound)", "-", "-", "5ms", "1"])
        self.assertEqual(out.splitlines()[-1], "sessions 11-12 of 1000000")

    def test_sessions_defaults_to_the_first_hundred(self):
        rc, _, err, _ = self.cli("sessions")
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.broker.requests, [("SESSIONS", {"offset": 0, "limit": 100})])

    def test_sessions_limit_out_of_range_is_a_usage_error_sent_nowhere(self):
        rc, _, err, _ = self.cli("sessions", "--limit", "10001")
        self.assertEqual(rc, 2)
        self.assertIn("--limit", err)
        self.assertEqual(self.broker.requests, [])

    def test_services_shows_queue_rate_latency_and_errors(self):
        rc, out, err, _ = self.cli("services")
        self.assertEqual(rc, 0, err)
        rows = table(out)
        self.assertEqual(rows[0], ["SERVICE", "AGENTS", "BRIDGES", "QUEUED", "REQUESTS", "REQ/S",
                                   "P50", "P95", "P99", "ERROR RATE", "ERRORS"])
        self.assertEqual(rows[1], ["demo", "2", "4", "7", "1000", "250.0", "400us", "900us",
                                   "2.0ms", "0.10%", "TIMEOUT=1"])

    def test_metrics_prints_the_prometheus_text_as_is(self):
        done = subprocess.run([PYFLEET, "metrics", "--mgmt", self.broker.endpoint],
                              capture_output=True, timeout=20)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stdout, METRICS)

    def test_metrics_refuses_json(self):
        rc, _, err, _ = self.cli("metrics", "--json")
        self.assertEqual(rc, 2)
        self.assertIn("Prometheus", err)

    def test_endpoint_comes_from_pyfleet_mgmt(self):
        env = dict(os.environ, PYFLEET_MGMT=self.broker.endpoint)
        rc, out, err, _ = run("status", "--json", env=env)
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["agents"], 2)

    def test_tables_survive_missing_and_mistyped_fields(self):
        self.broker.replies["WORKERS"] = ok({"agents": [
            {"agent": "a\x1b[2Jx", "bridges": [{"bridge": "zero", "state": 3}, 7]}, "junk"]})
        self.broker.replies["STATUS"] = ok({"bridges": [], "errors": "none"})
        rc, out, err, _ = self.cli("workers")
        self.assertEqual(rc, 0, err)
        self.assertNotIn("\x1b", out)
        self.assertIn("a?[2Jx", out)
        rc, out, err, _ = self.cli("status")
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"(?m)^agents\s+-$")

    def test_an_ok_body_that_is_not_json_is_a_local_failure(self):
        self.broker.replies["STATUS"] = (b"OK", b"{not json")
        rc, _, err, _ = self.cli("status")
        self.assertEqual(rc, 1)
        self.assertIn("not a JSON object", err)

    def test_a_reply_that_is_not_pfm1_is_a_local_failure(self):
        self.broker.replies["STATUS"] = [b"", b"PFC1", b"OK", b"{}"]
        rc, _, err, _ = self.cli("status")
        self.assertEqual(rc, 1)
        self.assertIn("not PFM1", err)


class ErrorsAndTimeouts(unittest.TestCase):
    def test_error_replies_print_code_and_message_with_the_codes_exit_status(self):
        for code, status in (("BAD_REQUEST", 10), ("UNKNOWN_SERVICE", 6), ("TIMEOUT", 3),
                             ("SHUTTING_DOWN", 9), ("NO_SUCH_CODE", 12)):
            broker = FakeBroker({"STATUS": error(code, "it went wrong")})
            try:
                rc, out, err, _ = run("status", "--mgmt", broker.endpoint)
            finally:
                broker.stop()
            self.assertEqual((rc, out, err), (status, "", "%s: it went wrong\n" % code))

    def test_a_broker_that_does_not_answer_gives_timeout_within_the_timeout(self):
        silent = FakeBroker({"STATUS": None})
        try:
            rc, out, err, elapsed = run("status", "--mgmt", silent.endpoint, "--timeout", "300")
        finally:
            silent.stop()
        self.assertEqual((rc, out), (3, ""))
        self.assertEqual(err, "TIMEOUT: management endpoint did not answer\n")
        self.assertGreaterEqual(elapsed, 0.3)
        self.assertLess(elapsed, 2.0)

    def test_no_broker_at_all_gives_timeout_by_the_default_deadline(self):
        rc, _, err, elapsed = run("workers", "--mgmt", "tcp://127.0.0.1:%d" % free_port())
        self.assertEqual(rc, 3)
        self.assertEqual(err, "TIMEOUT: management endpoint did not answer\n")
        self.assertGreaterEqual(elapsed, 2.0)
        self.assertLess(elapsed, 4.0)

    def test_an_invalid_endpoint_is_a_usage_error(self):
        rc, _, err, _ = run("status", "--mgmt", "nonsense://x")
        self.assertEqual(rc, 2)
        self.assertIn("invalid management endpoint", err)

    def test_unknown_options_and_extra_arguments_are_usage_errors(self):
        self.assertEqual(run("status", "--bogus")[0], 2)
        self.assertEqual(run("status", "extra")[0], 2)
        self.assertEqual(run("drain")[0], 2)
        self.assertEqual(run("end-session", "demo")[0], 2)
        self.assertEqual(run("status", "--timeout", "0")[0], 2)


class Actions(unittest.TestCase):
    def setUp(self):
        def recycle(args):
            return ok({"agent": args["agent"], "bridge": args.get("bridge"),
                       "result": "recycling"})

        def end_session(args):
            if args["session"] == "nope":
                return error("BAD_REQUEST", "no session demo/nope")
            return ok(dict(args, result="ended"))

        self.broker = FakeBroker({
            "DRAIN": lambda args: ok({"agent": args["agent"], "result": "draining"}),
            "RECYCLE": recycle, "END_SESSION": end_session})

    def tearDown(self):
        self.broker.stop()

    def cli(self, command, *args):
        return run(command, "--mgmt", self.broker.endpoint, *args)

    def test_drain_names_the_agent_and_prints_the_acknowledgement(self):
        rc, out, err, _ = self.cli("drain", "host-1-ab12")
        self.assertEqual((rc, out, err), (0, "host-1-ab12: draining\n", ""))
        self.assertEqual(self.broker.requests, [("DRAIN", {"agent": "host-1-ab12"})])

    def test_recycle_one_bridge_or_all_of_an_agent(self):
        rc, out, err, _ = self.cli("recycle", "host-1-ab12/1")
        self.assertEqual((rc, out, err), (0, "host-1-ab12 bridge 1: recycling\n", ""))
        rc, out, err, _ = self.cli("recycle", "host-1-ab12")
        self.assertEqual((rc, out, err), (0, "host-1-ab12 all bridges: recycling\n", ""))
        self.assertEqual(self.broker.requests, [("RECYCLE", {"agent": "host-1-ab12", "bridge": 1}),
                                                ("RECYCLE", {"agent": "host-1-ab12"})])

    def test_recycle_with_a_bridge_that_is_not_a_number_is_refused_locally(self):
        rc, _, err, _ = self.cli("recycle", "host-1-ab12/one")
        self.assertEqual(rc, 2)
        self.assertIn("must be a number", err)
        self.assertEqual(self.broker.requests, [])

    def test_end_session_and_its_error(self):
        rc, out, err, _ = self.cli("end-session", "demo", "s1")
        self.assertEqual((rc, out, err), (0, "demo/s1: ended\n", ""))
        rc, out, err, _ = self.cli("end-session", "demo", "nope")
        self.assertEqual((rc, out, err), (10, "", "BAD_REQUEST: no session demo/nope\n"))
        self.assertEqual(self.broker.requests[0], ("END_SESSION",
                                                   {"service": "demo", "session": "s1"}))

    def test_action_json_prints_the_acknowledgement_body(self):
        rc, out, err, _ = self.cli("drain", "--json", "host-1-ab12")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out), {"agent": "host-1-ab12", "result": "draining"})


class FakePublisher:
    """A PUB socket sending the given events in a loop until stopped, so a
    subscriber that joins late (ZeroMQ's slow joiner) still sees them."""

    def __init__(self, events):
        self.socket = zmq.Context.instance().socket(zmq.PUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind("tcp://127.0.0.1:0")
        self.endpoint = self.socket.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.events = events
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._publish, daemon=True)
        self.thread.start()

    def _publish(self):
        while not self.stopping.wait(0.02):
            for topic, body in self.events:
                self.socket.send_multipart([topic.encode(), json.dumps(body).encode()])

    def stop(self):
        self.stopping.set()
        self.thread.join(5)
        self.socket.close(0)


JOINED = {"time": "2026-11-27T10:00:00Z", "event": "agent.joined", "agent": "host-1-ab12",
          "host": "host-1", "pid": 4242, "service": "demo", "capacity": 3}
LEFT = {"time": "2026-11-27T10:00:01Z", "event": "agent.left", "agent": "host-1-ab12",
        "reason": "heartbeat expired"}


class Watch(unittest.TestCase):
    def setUp(self):
        self.publisher = FakePublisher([("agent.joined", JOINED), ("agent.left", LEFT)])

    def tearDown(self):
        self.publisher.stop()

    def test_count_prints_that_many_events_one_line_each(self):
        rc, out, err, _ = run("watch", "--events", self.publisher.endpoint, "--count", "2")
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()
        self.assertEqual(len(lines), 2)
        expected = {
            "2026-11-27T10:00:00Z agent.joined agent=host-1-ab12 host=host-1 pid=4242 "
            "service=demo capacity=3",
            '2026-11-27T10:00:01Z agent.left agent=host-1-ab12 reason="heartbeat expired"'}
        for line in lines:
            self.assertIn(line, expected)

    def test_json_prints_each_event_object(self):
        rc, out, err, _ = run("watch", "--events", self.publisher.endpoint, "--count", "2",
                              "--json")
        self.assertEqual(rc, 0, err)
        events = [json.loads(line) for line in out.splitlines()]
        self.assertEqual(len(events), 2)
        for event in events:
            self.assertIn(event, (JOINED, LEFT))

    def test_topic_prefix_filters(self):
        rc, out, err, _ = run("watch", "--events", self.publisher.endpoint, "--count", "3",
                              "--topic", "agent.left", "--json")
        self.assertEqual(rc, 0, err)
        self.assertEqual([json.loads(line) for line in out.splitlines()], [LEFT] * 3)

    def test_runs_until_sigint_then_exits_0(self):
        proc = subprocess.Popen([PYFLEET, "watch", "--events", self.publisher.endpoint],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            first = proc.stdout.readline()  # bounded: the publisher sends every 20 ms
            self.assertIn(b"agent.", first)
            proc.send_signal(signal.SIGINT)
            self.assertEqual(proc.wait(5), 0)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
            proc.stdout.close()
            proc.stderr.close()

    def test_a_message_that_is_not_an_event_is_skipped_with_a_note(self):
        self.publisher.events = [("agent.joined", "not an object"), ("agent.left", LEFT)]
        rc, out, err, _ = run("watch", "--events", self.publisher.endpoint, "--count", "1",
                              "--json")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out), LEFT)


def tmux(*args):
    return subprocess.run(["tmux"] + list(args), capture_output=True, timeout=10)


class Top(unittest.TestCase):
    """`pyfleet top` in a detached 160x40 tmux session running a small shell
    script that records the terminal settings before and after and the exit
    status."""

    def setUp(self):
        self.session = "pyfleet-top-test-%d" % os.getpid()
        self.dir = "/tmp/%s" % self.session
        os.makedirs(self.dir, exist_ok=True)
        self.broker = FakeBroker({"STATUS": ok(STATUS), "WORKERS": ok(WORKERS)})

    def tearDown(self):
        tmux("kill-session", "-t", self.session)
        self.broker.stop()
        for name in os.listdir(self.dir):
            os.unlink(os.path.join(self.dir, name))
        os.rmdir(self.dir)

    def start(self, *args):
        script = ("stty -g > {d}/before; {top} {args}; echo $? > {d}/rc.tmp; "
                  "stty -g > {d}/after; mv {d}/rc.tmp {d}/rc; sleep 60").format(
            d=self.dir, top=PYFLEET + " top",
            args=" ".join("'%s'" % arg for arg in args))
        done = tmux("new-session", "-d", "-s", self.session, "-x", "160", "-y", "40",
                    "sh", "-c", script)
        self.assertEqual(done.returncode, 0, done.stderr)

    def screen(self):
        return tmux("capture-pane", "-p", "-t", self.session).stdout.decode()

    def wait_screen(self, pattern, timeout=10):
        found = wait_until(lambda: re.search(pattern, self.screen()), timeout, interval=0.05)
        self.assertTrue(found, "%r not on screen:\n%s" % (pattern, self.screen()))

    def exit_status(self, timeout=5):
        path = os.path.join(self.dir, "rc")
        self.assertTrue(wait_until(lambda: os.path.exists(path), timeout, interval=0.05),
                        "top did not exit:\n" + self.screen())
        with open(path) as f:
            return int(f.read())

    def assert_terminal_restored(self):
        with open(os.path.join(self.dir, "before")) as b, open(os.path.join(self.dir, "after")) as a:
            self.assertEqual(b.read(), a.read())
        self.assertNotIn("AGENT / BRIDGE", self.screen())  # back from the alternate screen

    def test_shows_agents_busiest_first_and_quits_on_q(self):
        self.start("--mgmt", self.broker.endpoint, "--interval", "200")
        self.wait_screen(r"host-2-cd34")
        screen = self.screen()
        self.assertRegex(screen, r"agents 2  bridges 4: 1 busy, 3 ready, 0 draining  sessions 20"
                                 r"  queued 7  in flight 1  req/s 250.0")
        order = [m.group(0) for m in re.finditer(r"host-\d-\w+|bridge \d\.\d", screen)]
        # host-1 has the busy bridge: first, and its busy bridge before the ready one.
        self.assertEqual(order, ["host-1-ab12", "bridge 1.4", "bridge 0.1",
                                 "host-2-cd34", "bridge 0.1"])
        # It refreshes: several STATUS requests arrive at a 200 ms interval.
        self.assertTrue(wait_until(
            lambda: sum(1 for c, _ in self.broker.requests if c == "STATUS") >= 3, 5))
        tmux("send-keys", "-t", self.session, "q")
        self.assertEqual(self.exit_status(), 0)
        self.assert_terminal_restored()

    def test_sigterm_restores_the_terminal(self):
        self.start("--mgmt", self.broker.endpoint)
        self.wait_screen(r"host-1-ab12")
        shell = int(tmux("display-message", "-p", "-t", self.session,
                         "#{pane_pid}").stdout.decode())
        children = [int(pid) for pid in os.listdir("/proc") if pid.isdigit()
                    and self._parent(int(pid)) == shell]
        self.assertEqual(len(children), 1, children)
        os.kill(children[0], signal.SIGTERM)
        self.exit_status()
        self.assert_terminal_restored()

    @staticmethod
    def _parent(pid):
        try:
            with open("/proc/%d/stat" % pid) as f:
                return int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return None

    def test_a_broker_that_does_not_answer_is_shown_and_q_still_quits(self):
        silent = FakeBroker({"STATUS": None, "WORKERS": None})
        try:
            self.start("--mgmt", silent.endpoint, "--timeout", "300", "--interval", "200")
            self.wait_screen(r"TIMEOUT: management endpoint \S+ did not answer within 300 ms")
            tmux("send-keys", "-t", self.session, "q")
            self.assertEqual(self.exit_status(), 0)
            self.assert_terminal_restored()
        finally:
            silent.stop()

    def test_without_a_terminal_it_refuses(self):
        rc, _, err, _ = run("top", "--mgmt", self.broker.endpoint)
        self.assertEqual(rc, 2)
        self.assertIn("needs a terminal", err)


MODULES = [os.path.join(FIXTURES, "faults.py"), os.path.join(FIXTURES, "broker_cmds.py")]


def agent_id(worker):
    return re.search(r"agent (\S+) serving", worker.wait_for(r"agent \S+ serving")[0]).group(1)


class AgainstALiveFleet(unittest.TestCase):
    """The CLI against a real broker with two agents of two bridges each: its
    numbers are the ones the test caused."""

    def setUp(self):
        self.fleet = Fleet()
        self.fleet.start_broker()
        self.workers = [self.fleet.start_worker(bridges=2, modules=MODULES) for _ in range(2)]
        self.agents = [agent_id(worker) for worker in self.workers]
        self.client = self.fleet.client()

    def tearDown(self):
        self.client.close()
        tmux("kill-session", "-t", "pyfleet-live-top-%d" % os.getpid())
        statuses = self.fleet.stop()
        self.assertEqual(statuses, [0] * len(statuses), "daemons exit 0")

    def cli(self, command, *args):
        return run(command, "--mgmt", self.fleet.mgmt, *args)

    def status(self):
        rc, out, err, _ = self.cli("status", "--json")
        self.assertEqual(rc, 0, err)
        return json.loads(out)

    def test_status_json_counts_what_the_test_did(self):
        for i in range(12):
            self.assertTrue(self.client.call("test", "echo", {"i": i})["ok"])
        for session in ("a", "b"):
            self.assertTrue(self.client.call("test", "counter", {}, session=session)["ok"])
        self.assertEqual(self.client.call("test", "raise_error")["code"], "PYTHON_ERROR")
        body = self.status()
        self.assertEqual(body["agents"], 2)
        self.assertEqual(body["bridges"]["total"], 4)
        self.assertEqual(body["bridges"]["ready"], 4)
        self.assertEqual(body["sessions"], 2)
        self.assertEqual(body["queued"], 0)
        self.assertEqual(body["requests_total"], 15)
        self.assertEqual(body["errors"], {"PYTHON_ERROR": 1})
        rc, out, err, _ = self.cli("status")
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"(?m)^bridges\s+4 total: 4 ready, 0 busy, 0 draining$")
        self.assertRegex(out, r"(?m)^requests\s+15 accepted, 15 answered")

    def test_tables_list_the_live_agents_bridges_sessions_and_service(self):
        for _ in range(6):
            self.client.call("test", "echo")
        self.client.call("test", "counter", {}, session="live")
        rc, out, err, _ = self.cli("workers")
        self.assertEqual(rc, 0, err)
        names = [row[0] for row in table(out)[1:]]
        self.assertEqual(sorted(name for name in names if not name.startswith("bridge")),
                         sorted(self.agents))
        self.assertEqual(sum(1 for name in names if name.startswith("bridge")), 4)
        rc, out, err, _ = self.cli("sessions", "--service", "test")
        self.assertEqual(rc, 0, err)
        self.assertEqual(table(out)[1][:2], ["test", "live"])
        self.assertIn(table(out)[1][2], self.agents)
        rc, out, err, _ = self.cli("services")
        self.assertEqual(rc, 0, err)
        self.assertEqual(table(out)[1][:5], ["test", "2", "4", "0", "7"])
        rc, out, err, _ = self.cli("metrics")
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"(?m)^pyfleet_requests_total 7$")

    def test_drain_is_acknowledged_and_recorded_in_status(self):
        rc, out, err, _ = self.cli("drain", self.agents[0])
        self.assertEqual((rc, out, err), (0, "%s: draining\n" % self.agents[0], ""))
        action = self.status()["actions"][-1]
        self.assertEqual((action["action"], action["agent"]), ("drain", self.agents[0]))
        rc, out, err, _ = self.cli("status")
        self.assertRegex(out, r"(?m)^\S+Z\s+drain\s+%s\s+draining$" % re.escape(self.agents[0]))
        rc, _, err, _ = self.cli("drain", "no-such-agent")
        self.assertEqual(rc, 10)
        self.assertRegex(err, r"^BAD_REQUEST: ")

    def test_a_drained_agent_leaves_and_exits_0(self):
        rc, _, err, _ = self.cli("drain", self.agents[0])
        self.assertEqual(rc, 0, err)
        try:
            self.assertEqual(self.workers[0].proc.wait(8), 0, "the drained agent exits 0")
        except subprocess.TimeoutExpired:
            self.fail("the drained agent did not exit")
        self.assertTrue(wait_until(lambda: self.status()["agents"] == 1, 5))

    def serving(self, agent):
        """The (bridge, generation, pid) of every bridge the agent serves with."""
        rc, out, err, _ = self.cli("workers", "--json")
        self.assertEqual(rc, 0, err)
        return {(b["bridge"], b["generation"], b["pid"])
                for entry in json.loads(out)["agents"] if entry["agent"] == agent
                for b in entry["bridges"]}

    def test_recycle_is_acknowledged_and_recorded_in_status(self):
        rc, out, err, _ = self.cli("recycle", "%s/0" % self.agents[1])
        self.assertEqual((rc, out, err), (0, "%s bridge 0: recycling\n" % self.agents[1], ""))
        rc, out, err, _ = self.cli("recycle", self.agents[0])
        self.assertEqual((rc, out, err), (0, "%s all bridges: recycling\n" % self.agents[0], ""))
        actions = self.status()["actions"][-2:]
        self.assertEqual([(a["action"], a["agent"], a.get("bridge")) for a in actions],
                         [("recycle", self.agents[1], 0), ("recycle", self.agents[0], None)])

    def test_recycle_replaces_the_bridge(self):
        before = self.serving(self.agents[1])
        old = [b for b in before if b[0] == 0]
        self.assertEqual(len(old), 1)
        rc, _, err, _ = self.cli("recycle", "%s/0" % self.agents[1])
        self.assertEqual(rc, 0, err)
        # Spawn before retire: a new bridge (another slot or generation, another
        # process) takes over and bridge 0's old process stops serving.
        self.assertTrue(wait_until(lambda: old[0] not in self.serving(self.agents[1])
                                   and len(self.serving(self.agents[1])) == 2, 8),
                        "bridge 0 was replaced by a new process")
        after = self.serving(self.agents[1])
        self.assertNotIn(old[0][2], {b[2] for b in after})

    def test_end_session_ends_it_and_watch_prints_the_action(self):
        watch = subprocess.Popen([PYFLEET, "watch", "--events", self.fleet.events, "--topic",
                                  "action", "--count", "1"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
        try:
            # The subscription takes a moment to reach the broker: end sessions
            # until watch has printed one (bounded).
            ended = []
            deadline = time.monotonic() + 10
            while watch.poll() is None and time.monotonic() < deadline:
                session = "e%d" % len(ended)
                self.assertTrue(self.client.call("test", "counter", {}, session=session)["ok"])
                rc, out, err, _ = self.cli("end-session", "test", session)
                self.assertEqual((rc, out, err), (0, "test/%s: ended\n" % session, ""))
                ended.append(session)
                wait_until(lambda: watch.poll() is not None, 0.2)
            self.assertEqual(watch.wait(5), 0)
            line = watch.stdout.read().decode()
            self.assertRegex(line, r"^\S+Z action action=end_session( \w+=\S+)*\n$")
            self.assertIn(" service=test", line)
            self.assertRegex(line, r" session=e\d+")
            self.assertIn(" result=ended", line)
        finally:
            if watch.poll() is None:
                watch.kill()
                watch.wait(5)
            watch.stdout.close()
            watch.stderr.close()
        rc, out, err, _ = self.cli("end-session", "test", ended[0])
        self.assertEqual(rc, 10)
        self.assertRegex(err, r"^BAD_REQUEST: ")
        self.assertEqual(self.status()["sessions"], 0)

    def test_top_shows_the_live_agents(self):
        session = "pyfleet-live-top-%d" % os.getpid()
        done = tmux("new-session", "-d", "-s", session, "-x", "160", "-y", "40",
                    "%s top --mgmt %s --interval 200; sleep 60" % (PYFLEET, self.fleet.mgmt))
        self.assertEqual(done.returncode, 0, done.stderr)
        screen = lambda: tmux("capture-pane", "-p", "-t", session).stdout.decode()
        self.assertTrue(wait_until(lambda: all(a in screen() for a in self.agents), 10),
                        screen())
        self.assertIn("agents 2  bridges 4: 0 busy, 4 ready", screen())
        tmux("send-keys", "-t", session, "q")
        self.assertTrue(wait_until(lambda: self.agents[0] not in screen(), 5), screen())


if __name__ == "__main__":
    unittest.main()
