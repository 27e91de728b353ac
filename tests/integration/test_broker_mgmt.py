"""The broker's management endpoint (PFM1) and events, against a live fleet:
the numbers it reports match what the test did."""

import json
import os
import re
import unittest

import zmq

from tests.integration.fleet import FIXTURES, Fleet, wait_until

MODULES = [os.path.join(FIXTURES, "faults.py"), os.path.join(FIXTURES, "broker_cmds.py")]


class Management(unittest.TestCase):
    def setUp(self):
        self.fleet = Fleet()
        self.fleet.start_broker()
        self.subscriber = zmq.Context.instance().socket(zmq.SUB)
        self.subscriber.setsockopt(zmq.LINGER, 0)
        self.subscriber.setsockopt(zmq.SUBSCRIBE, b"")
        self.subscriber.connect(self.fleet.events)
        self.workers = [self.fleet.start_worker(bridges=2, modules=MODULES) for _ in range(2)]
        self.client = self.fleet.client()

    def tearDown(self):
        self.client.close()
        self.subscriber.close(0)
        self.fleet.stop()

    def events(self, topic, count, timeout=5.0):
        found = []
        while len(found) < count:
            if not self.subscriber.poll(int(timeout * 1000)):
                raise AssertionError("only %d %s events" % (len(found), topic))
            frames = self.subscriber.recv_multipart()
            if frames[0].decode() == topic:
                found.append(json.loads(frames[1]))
        return found

    def test_status_and_services_count_what_was_done(self):
        for i in range(20):
            self.assertTrue(self.client.call("test", "echo", {"i": i})["ok"])
        for session in ("a", "b", "c"):
            self.client.call("test", "counter", {}, session=session)
        self.assertEqual(self.client.call("test", "raise_error")["code"], "PYTHON_ERROR")
        status, body = self.fleet.manage("STATUS")
        self.assertEqual(status, "OK")
        self.assertEqual(body["agents"], 2)
        self.assertEqual(body["bridges"]["total"], 4)
        self.assertEqual(body["bridges"]["ready"], 4)
        self.assertEqual(body["sessions"], 3)
        self.assertEqual(body["queued"], 0)
        self.assertEqual(body["requests_total"], 24)
        self.assertEqual(body["errors"], {"PYTHON_ERROR": 1})
        status, body = self.fleet.manage("SERVICES")
        service = body["services"][0]
        self.assertEqual((service["service"], service["requests"], service["bridges"]),
                         ("test", 24, 4))
        self.assertEqual(service["latency_us"]["count"], 24)
        self.assertGreater(service["latency_us"]["p50"], 0)
        self.assertLessEqual(service["latency_us"]["p50"], service["latency_us"]["p99"])
        self.assertAlmostEqual(service["error_rate"], 1 / 24, places=4)

    def test_workers_lists_every_bridge_with_its_counts(self):
        for _ in range(8):
            self.client.call("test", "echo")
        self.client.call("test", "counter", {}, session="w")
        status, body = self.fleet.manage("WORKERS")
        self.assertEqual(len(body["agents"]), 2)
        bridges = [b for agent in body["agents"] for b in agent["bridges"]]
        self.assertEqual(len(bridges), 4)
        self.assertEqual(sum(b["requests"] for b in bridges), 9)
        self.assertEqual(sum(b["sessions"] for b in bridges), 1)
        self.assertTrue(all(b["state"] == "ready" for b in bridges))
        self.assertTrue(all(a["last_beat_ms"] < 3000 for a in body["agents"]))
        self.assertEqual([a["key"] for a in body["agents"]], [None, None], "no CurveZMQ here")

    def test_sessions_filter_and_page(self):
        for i in range(25):
            self.client.call("test", "counter", {}, session="p%02d" % i)
        status, body = self.fleet.manage("SESSIONS", {"offset": 10, "limit": 10})
        self.assertEqual((body["total"], len(body["sessions"])), (25, 10))
        status, first = self.fleet.manage("SESSIONS", {"limit": 10})
        names = {s["session"] for s in first["sessions"]} | {s["session"] for s in body["sessions"]}
        self.assertEqual(len(names), 20, "pages do not overlap")
        agent = body["sessions"][0]["agent"]
        status, mine = self.fleet.manage("SESSIONS", {"agent": agent, "limit": 100})
        self.assertTrue(all(s["agent"] == agent for s in mine["sessions"]))
        status, none = self.fleet.manage("SESSIONS", {"service": "other"})
        self.assertEqual(none["total"], 0)

    def test_end_session_runs_the_hook_and_is_recorded(self):
        for _ in range(2):
            self.client.call("test", "counter", {}, session="ended")
        status, body = self.fleet.manage("END_SESSION", {"service": "test", "session": "ended"})
        self.assertEqual((status, body["result"]), ("OK", "ended"))
        self.assertTrue(self.wait_hook(), "the bridge ran its session_end hook")
        status, body = self.fleet.manage("STATUS")
        self.assertEqual(body["sessions"], 0)
        self.assertEqual(body["actions"][-1]["action"], "end_session")
        status, body = self.fleet.manage("END_SESSION", {"service": "test", "session": "ended"})
        self.assertEqual((status, body["error"]), ("ERROR", "BAD_REQUEST"))

    def wait_hook(self):
        """True once one of the agents logged the hook's line (bounded)."""
        return wait_until(lambda: any(w.count(r"session_end ended n=2") for w in self.workers),
                          5)

    def test_metrics_are_prometheus_text(self):
        for _ in range(5):
            self.client.call("test", "echo")
        status, text = self.fleet.manage("METRICS")
        self.assertEqual(status, "OK")
        samples = {}
        for line in text.splitlines():
            if line.startswith("#"):
                self.assertRegex(line, r"^# (HELP|TYPE) [a-z_]+ .+")
                continue
            match = re.fullmatch(r'([a-z_]+)(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? (\S+)', line)
            self.assertIsNotNone(match, line)
            samples[match.group(1) + (match.group(2) or "")] = float(match.group(4))
        self.assertEqual(samples["pyfleet_requests_total"], 5)
        self.assertEqual(samples['pyfleet_replies_total{code="OK"}'], 5)
        self.assertEqual(samples["pyfleet_agents"], 2)
        self.assertEqual(samples['pyfleet_request_duration_seconds_count{service="test"}'], 5)
        self.assertEqual(samples['pyfleet_request_duration_seconds_bucket{service="test",le="+Inf"}'], 5)
        buckets = [v for k, v in samples.items() if k.startswith("pyfleet_request_duration_seconds_bucket")]
        self.assertEqual(buckets, sorted(buckets), "cumulative buckets never decrease")

    def test_bad_requests_are_answered_and_the_broker_keeps_going(self):
        status, body = self.fleet.manage("NOPE")
        self.assertEqual((status, body["error"]), ("ERROR", "BAD_REQUEST"))
        status, body = self.fleet.manage("DRAIN", {"agent": "no-such-agent"})
        self.assertEqual(status, "ERROR")
        socket = zmq.Context.instance().socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.connect(self.fleet.mgmt)
        socket.send_multipart([b"", b"PFM1", b"STATUS", b"[not json"])
        self.assertTrue(socket.poll(2000))
        self.assertEqual(socket.recv_multipart()[2], b"ERROR")
        socket.send_multipart([b"garbage"])
        socket.close(0)
        self.assertEqual(self.fleet.manage("STATUS")[0], "OK")

    def test_events_tell_of_bridges_and_agents(self):
        pid = self.client.call("test", "stats")["result"]["pid"]
        os.kill(pid, 9)
        down = self.events("bridge.down", 1)[0]
        self.assertLessEqual({"agent", "bridge", "generation", "time", "event"}, set(down))
        up = self.events("bridge.up", 1)[0]
        self.assertEqual((up["agent"], up["bridge"]), (down["agent"], down["bridge"]))
        self.assertNotEqual(up["generation"], down["generation"])
        self.workers[1].stop()
        left = self.events("agent.left", 1)[0]
        self.assertIn("reason", left)


if __name__ == "__main__":
    unittest.main()
