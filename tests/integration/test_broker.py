"""The broker with real agents and bridges on 127.0.0.1: credit dispatch,
session affinity, lost sessions, backpressure and deadlines, heartbeats,
broadcast, cancel."""

import collections
import os
import signal
import time
import unittest

from tests.integration.fleet import FIXTURES, Fleet, wait_until

MODULES = [os.path.join(FIXTURES, "faults.py"), os.path.join(FIXTURES, "broker_cmds.py")]
IDEMPOTENT, SOFT, BROADCAST = 0x01, 0x02, 0x04
DEBUG = ("--log-level", "debug")  # the agent then logs every ready -> busy change
RUNNING = r"-> busy after \d+ ms \(sleep_pid\)"


class FleetCase(unittest.TestCase):
    broker_args = ()

    def setUp(self):
        self.fleet = Fleet()
        self.fleet.start_broker(*self.broker_args)
        self.clients = []

    def tearDown(self):
        for client in self.clients:
            client.close()
        self.fleet.stop()

    def client(self):
        client = self.fleet.client()
        self.clients.append(client)
        return client

    def collect(self, client, count, timeout=20):
        replies = {}
        for _ in range(count):
            reply = client.recv(timeout=timeout)
            self.assertNotIn(reply["id"], replies, "a request was answered twice")
            replies[reply["id"]] = reply
        return replies


class CreditDispatch(FleetCase):
    def test_fifth_long_request_waits_for_a_free_bridge_then_runs(self):
        for _ in range(2):
            self.fleet.start_worker(bridges=2, modules=MODULES)
        client = self.client()
        start = time.monotonic()
        ids = [client.send_request("test", "sleep_pid", {"seconds": 1.0}) for _ in range(5)]
        arrival = {}
        replies = {}
        for _ in range(5):
            reply = client.recv(timeout=10)
            arrival[reply["id"]] = time.monotonic() - start
            replies[reply["id"]] = reply
        self.assertTrue(all(r["ok"] for r in replies.values()), replies)
        first_four = sorted(ids[:4], key=arrival.get)
        self.assertEqual(len({replies[i]["result"]["pid"] for i in ids[:4]}), 4,
                         "the first four ran at once on four different bridges")
        self.assertLess(max(arrival[i] for i in ids[:4]), 1.8)
        self.assertGreater(arrival[ids[4]], 1.9, "the fifth waited for a bridge to free up")
        self.assertGreaterEqual(arrival[ids[4]], arrival[first_four[0]])


class Window(FleetCase):
    """Several requests per bridge (--window, --pipeline): short ones
    stream, but none is left waiting behind a long one."""

    def test_a_request_waiting_behind_a_long_one_is_handed_back_and_runs_elsewhere(self):
        worker = self.fleet.start_worker(bridges=2, modules=MODULES, args=DEBUG)
        client = self.client()
        # Both bridges learn that their requests are long: one at a time now.
        warm = [client.send_request("test", "sleep_pid", {"seconds": 0.2}) for _ in range(2)]
        self.assertTrue(all(r["ok"] for r in self.collect(client, 2).values()))
        start = time.monotonic()
        long = client.send_request("test", "sleep_pid", {"seconds": 1.5})
        short = client.send_request("test", "sleep_pid", {"seconds": 0.1})
        marked = client.send_request("test", "mark", {"tag": "quick"})
        arrival = {}
        for _ in range(3):
            reply = client.recv(timeout=10)
            self.assertTrue(reply["ok"], reply)
            arrival[reply["id"]] = time.monotonic() - start
        self.assertLess(arrival[marked], 0.8, "it ran on the bridge that freed up: %r" % arrival)
        self.assertGreater(arrival[long], 1.4)
        self.assertNotIn(warm[0], arrival)

    def test_requests_in_a_pipe_behind_a_long_one_are_released_and_run_elsewhere(self):
        worker = self.fleet.start_worker(bridges=2, modules=MODULES, args=DEBUG)
        client = self.client()
        start = time.monotonic()
        long = client.send_request("test", "sleep_pid", {"seconds": 1.5})
        short = client.send_request("test", "sleep_pid", {"seconds": 0.3})
        # Fresh bridges look fast: these go into both bridges' pipes at once.
        marks = [client.send_request("test", "mark", {"tag": "m%d" % i}) for i in range(6)]
        arrival = {}
        for _ in range(8):
            reply = client.recv(timeout=10)
            self.assertTrue(reply["ok"], reply)
            self.assertNotIn(reply["id"], arrival, "answered twice")
            arrival[reply["id"]] = time.monotonic() - start
        self.assertLess(max(arrival[m] for m in marks), 1.0,
                        "none waited for the long one: %r" % arrival)
        self.assertGreater(arrival[long], 1.4)
        self.assertLess(arrival[short], 1.0)
        worker.wait_for(r"runs long; releasing those behind it")

    def test_a_cancelled_request_in_a_pipe_never_starts(self):
        self.fleet.start_worker(bridges=1, modules=MODULES)
        client = self.client()
        running = client.send_request("test", "sleep_pid", {"seconds": 0.5})
        waiting = client.send_request("test", "mark", {"tag": "cancelled"})
        client.send_raw([b"", b"PFC1", b"\x04", waiting.to_bytes(8, "big")])
        reply = client.recv(timeout=5)
        self.assertEqual((reply["id"], reply["code"]), (waiting, "CANCELLED"))
        self.assertEqual(client.recv(timeout=5)["id"], running)
        self.assertEqual(client.call("test", "marks")["result"]["marks"], [])

    def test_a_request_in_a_pipe_past_its_deadline_times_out_and_never_starts(self):
        self.fleet.start_worker(bridges=1, modules=MODULES)
        client = self.client()
        start = time.monotonic()
        running = client.send_request("test", "sleep_pid", {"seconds": 0.6})
        late = client.send_request("test", "mark", {"tag": "late"}, timeout_ms=100)
        reply = client.recv(timeout=5)
        self.assertEqual((reply["id"], reply["code"]), (late, "TIMEOUT"))
        self.assertLess(time.monotonic() - start, 0.5, "answered at its deadline")
        self.assertTrue(client.recv(timeout=5)["ok"])
        self.assertEqual(client.call("test", "marks")["result"]["marks"], [])
        self.assertNotEqual(running, late)


class Sessions(FleetCase):
    def test_session_requests_stay_on_one_bridge_in_order(self):
        for _ in range(2):
            self.fleet.start_worker(bridges=2, modules=MODULES)
        client = self.client()
        sessions = ["s%02d" % i for i in range(20)]
        sent = collections.defaultdict(list)
        for _ in range(50):
            for session in sessions:
                sent[session].append(client.send_request("test", "counter", {},
                                                         session=session))
        replies = self.collect(client, 1000)
        bridges_used = set()
        for session in sessions:
            results = [replies[i] for i in sent[session]]
            self.assertTrue(all(r["ok"] for r in results), results[:3])
            self.assertEqual([r["result"]["n"] for r in results], list(range(1, 51)))
            pids = {r["result"]["pid"] for r in results}
            self.assertEqual(len(pids), 1, "session %s moved between bridges" % session)
            bridges_used |= pids
        self.assertGreater(len(bridges_used), 1, "sessions are spread over bridges")

    def test_killed_bridge_means_session_lost_then_a_fresh_session(self):
        worker = self.fleet.start_worker(bridges=2, modules=MODULES)
        client = self.client()
        first = client.call("test", "counter", {}, session="hard")["result"]
        self.assertEqual(first["n"], 1)
        os.kill(first["pid"], signal.SIGKILL)
        worker.wait_for(r"-> ready after", count=3, timeout=10)
        lost = client.call("test", "counter", {}, session="hard")
        self.assertFalse(lost["ok"])
        self.assertEqual(lost["code"], "SESSION_LOST")
        again = client.call("test", "counter", {}, session="hard")
        self.assertTrue(again["ok"])
        self.assertEqual(again["result"]["n"], 1)

    def test_soft_affinity_rebinds_and_flags_the_reply(self):
        worker = self.fleet.start_worker(bridges=2, modules=MODULES)
        client = self.client()
        first = client.call("test", "counter", {}, session="soft", flags=SOFT)["result"]
        client.call("test", "counter", {}, session="soft", flags=SOFT)
        os.kill(first["pid"], signal.SIGKILL)
        worker.wait_for(r"-> ready after", count=3, timeout=10)
        rebound = client.call("test", "counter", {}, session="soft", flags=SOFT)
        self.assertTrue(rebound["ok"], rebound)
        self.assertEqual(rebound["flags"] & 0x01, 0x01, "REBOUND flag")
        self.assertEqual(rebound["result"]["n"], 1)
        self.assertNotEqual(rebound["result"]["pid"], first["pid"])


class SessionExpiry(FleetCase):
    broker_args = ("--session-ttl", "1")

    def test_idle_session_expires_and_the_bridge_runs_session_end(self):
        worker = self.fleet.start_worker(bridges=2, modules=MODULES)
        client = self.client()
        for _ in range(3):
            client.call("test", "counter", {}, session="short-lived")
        worker.wait_for(r"session_end short-lived n=3", timeout=5)


class Backpressure(FleetCase):
    # One request per bridge (--window 1): with a window, up to window x
    # bridges requests wait at the agents besides the queue's bound.
    broker_args = ("--queue-max", "2", "--window", "1")

    def test_overflow_is_busy_at_once_and_queued_deadlines_time_out_unstarted(self):
        worker = self.fleet.start_worker(bridges=1, modules=MODULES, args=DEBUG)
        client = self.client()
        running = client.send_request("test", "sleep_pid", {"seconds": 1.0})
        worker.wait_for(RUNNING)  # it runs: the queue is empty
        queued = [client.send_request("test", "mark", {"tag": "late%d" % i}, timeout_ms=200)
                  for i in range(2)]
        start = time.monotonic()
        overflow = client.send_request("test", "mark", {"tag": "overflow"})
        busy = client.recv(timeout=2)
        self.assertEqual(busy["id"], overflow)
        self.assertEqual(busy["code"], "BUSY")
        self.assertLess(time.monotonic() - start, 0.1)
        replies = self.collect(client, 3, timeout=5)
        for request_id in queued:
            self.assertEqual(replies[request_id]["code"], "TIMEOUT")
        self.assertTrue(replies[running]["ok"])
        marks = client.call("test", "marks")["result"]["marks"]
        self.assertEqual(marks, [], "timed-out queued requests never started")


class Heartbeats(FleetCase):
    broker_args = ("--heartbeat", "200", "--liveness", "3")
    hb = ("--heartbeat", "200", "--liveness", "3") + DEBUG

    def test_stopped_agent_is_declared_dead_and_its_work_reruns_or_fails(self):
        stopped = self.fleet.start_worker(bridges=2, modules=MODULES, args=self.hb)
        client = self.client()
        rerun = client.send_request("test", "sleep_pid", {"seconds": 1.0}, flags=IDEMPOTENT)
        lost = client.send_request("test", "sleep_pid", {"seconds": 1.0})
        stopped.wait_for(RUNNING, count=2)  # both run on the first agent
        self.fleet.start_worker(bridges=2, modules=MODULES, args=self.hb)
        stopped.signal(signal.SIGSTOP)
        start = time.monotonic()
        try:
            self.fleet.broker.wait_for(r"removed: heartbeat expired", timeout=5)
            declared = time.monotonic() - start
            replies = self.collect(client, 2, timeout=10)
        finally:
            stopped.signal(signal.SIGCONT)
        self.assertLess(declared, 0.6 + 0.2 + 0.3, "liveness x interval + one interval (+ slack)")
        self.assertEqual(replies[lost]["code"], "WORKER_LOST")
        self.assertTrue(replies[rerun]["ok"], replies[rerun])
        # After SIGCONT the agent is told it is unknown and registers again.
        self.fleet.broker.wait_for(r"ready for 'test'", count=3, timeout=10)
        self.assertTrue(client.call("test", "echo", {"x": 1})["ok"])


class Broadcast(FleetCase):
    def test_broadcast_runs_on_every_bridge_and_combines_the_results(self):
        self.fleet.start_worker(bridges=2, modules=MODULES)
        self.fleet.start_worker(bridges=1, modules=MODULES)
        client = self.client()
        reply = client.call("test", "set_value", {"value": 42}, flags=BROADCAST)
        self.assertTrue(reply["ok"], reply)
        results = reply["result"]
        self.assertEqual(len(results), 3)
        self.assertTrue(all(r["ok"] for r in results), results)
        self.assertEqual(len({r["result"]["pid"] for r in results}), 3)
        for _ in range(6):
            self.assertEqual(client.call("test", "get_value")["result"]["value"], 42)


class BroadcastReplay(FleetCase):
    def test_a_broadcast_value_survives_the_recycling_of_every_bridge(self):
        worker = self.fleet.start_worker(bridges=2, modules=MODULES)
        client = self.client()
        self.assertTrue(client.call("test", "set_value", {"value": "lm"}, flags=BROADCAST)["ok"])
        pids = {client.call("test", "stats")["result"]["pid"] for _ in range(4)}
        self.assertEqual(len(pids), 2)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        worker.wait_for(r"-> ready after", count=4, timeout=10)
        self.fleet.broker.wait_for(r"bridges serving", count=3, timeout=10)
        seen = set()
        for _ in range(6):
            reply = client.call("test", "get_value")
            self.assertTrue(reply["ok"], reply)
            self.assertEqual(reply["result"]["value"], "lm")
            seen.add(reply["result"]["pid"])
        self.assertTrue(seen.isdisjoint(pids), "these are the replacement bridges")


class BrokerRestart(FleetCase):
    def test_sessions_continue_on_their_bridge_after_a_broker_restart(self):
        self.fleet.start_worker(bridges=2, modules=MODULES)
        client = self.client()
        before = {s: client.call("test", "counter", {}, session=s)["result"]
                  for s in ("a", "b", "c", "d")}
        client.close()
        self.clients.remove(client)
        self.fleet.broker.signal(signal.SIGKILL)
        self.fleet.broker.stop()
        self.fleet.start_broker()
        self.fleet.broker.wait_for(r"ready for 'test' with \d+ bridges, 4 sessions known",
                                   timeout=15)
        self.fleet.broker.wait_for(r"bridges serving", timeout=5)
        client = self.client()
        for session, first in before.items():
            reply = client.call("test", "counter", {}, session=session)
            self.assertTrue(reply["ok"], reply)
            self.assertEqual(reply["result"]["n"], 2, session)
            self.assertEqual(reply["result"]["pid"], first["pid"], session)


class NoStartupGrace(FleetCase):
    broker_args = ("--startup-grace", "0")

    def test_a_service_no_agent_serves_is_unknown_service_at_once(self):
        client = self.client()
        start = time.monotonic()
        reply = client.call("nobody", "echo", timeout_ms=5000)
        self.assertEqual(reply["code"], "UNKNOWN_SERVICE")
        self.assertLess(time.monotonic() - start, 0.5)


class StartupGrace(FleetCase):
    def test_a_request_sent_before_its_agent_registers_waits_and_runs(self):
        client = self.client()
        request_id = client.send_request("test", "echo", {"early": True}, timeout_ms=20000)
        self.fleet.start_worker(bridges=1, modules=MODULES)
        reply = client.recv(timeout=20)
        self.assertEqual(reply["id"], request_id)
        self.assertEqual(reply["result"], {"early": True})


class Cancel(FleetCase):
    # --window 1: "queued" means at the broker. With a window, a request
    # may already wait in a bridge's pipe, where a cancel cannot stop it.
    broker_args = ("--window", "1")

    def test_cancel_queued_and_running_requests(self):
        worker = self.fleet.start_worker(bridges=1, modules=MODULES, args=DEBUG)
        client = self.client()
        running = client.send_request("test", "sleep_pid", {"seconds": 0.5})
        worker.wait_for(RUNNING)
        queued = client.send_request("test", "mark", {"tag": "cancelled"})
        client.send_raw([b"", b"PFC1", b"\x04", queued.to_bytes(8, "big")])
        reply = client.recv(timeout=2)
        self.assertEqual((reply["id"], reply["code"]), (queued, "CANCELLED"))
        client.send_raw([b"", b"PFC1", b"\x04", running.to_bytes(8, "big")])
        reply = client.recv(timeout=2)
        self.assertEqual((reply["id"], reply["code"]), (running, "CANCELLED"))
        # The running one's late reply is dropped; the next call gets its own.
        after = client.call("test", "marks")
        self.assertEqual(after["result"]["marks"], [])
        self.assertFalse(client.socket.poll(700), "no late reply reaches the client")


if __name__ == "__main__":
    unittest.main()
