"""Majordomo (ZeroMQ RFC 7, MDP/0.1) clients and 8/MMI on the broker's
endpoint (docs/PROTOCOL.md 7): a client written from the RFC with pyzmq,
independent of pyfleet's C code. Real processes on 127.0.0.1; every wait is
bounded, every process stopped by its pid.
"""

import os
import threading
import time
import unittest

import msgpack
import zmq

from tests.integration.fleet import FIXTURES, Fleet, RawClient, wait_until

FAULTS = os.path.join(FIXTURES, "faults.py")


class MdpClient:
    """A Majordomo client: REQ (one request at a time, the envelope added by
    the socket) or DEALER (pipelined; it writes the empty frame itself)."""

    def __init__(self, endpoint, kind=zmq.REQ):
        self.kind = kind
        self.socket = zmq.Context.instance().socket(kind)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(endpoint)

    def close(self):
        self.socket.close(0)

    def send(self, *frames):
        envelope = [b""] if self.kind == zmq.DEALER else []
        self.socket.send_multipart(envelope + [b"MDPC01"] + [
            f if isinstance(f, bytes) else f.encode() for f in frames])

    def recv(self, timeout=10.0):
        if not self.socket.poll(int(timeout * 1000)):
            raise AssertionError("no MDP answer within %.1f s" % timeout)
        frames = self.socket.recv_multipart()
        if self.kind == zmq.DEALER:
            assert frames[0] == b"", frames
            frames = frames[1:]
        assert frames[0] == b"MDPC01", frames
        return frames[1:]

    def call(self, *frames, timeout=10.0):
        self.send(*frames)
        return self.recv(timeout)


class MdpClients(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.fleet = Fleet()
        # Also if the set-up fails half way (tearDownClass would not run).
        cls.addClassCleanup(cls.stop_fleet)
        cls.fleet.start_broker("--timeout", "1500", "--max-body", "100000",
                               "--startup-grace", "0")
        cls.fleet.start_worker(service="test", bridges=2, modules=[FAULTS])

    @classmethod
    def stop_fleet(cls):
        statuses = cls.fleet.stop()
        # Exit 0 also means no leak or memory error under valgrind or ASan.
        assert all(status == 0 for status in statuses), statuses

    def setUp(self):
        self.client = MdpClient(self.fleet.endpoint)
        self.addCleanup(self.client.close)

    def test_a_request_with_arguments_gets_ok_and_the_msgpack_result(self):
        service, status, result = self.client.call(
            "test", "echo", msgpack.packb({"text": "héllo", "n": [1, 2.5]}))
        self.assertEqual((service, status), (b"test", b"OK"))
        self.assertEqual(msgpack.unpackb(result), {"text": "héllo", "n": [1, 2.5]})

    def test_a_request_without_arguments_runs_with_none(self):
        service, status, result = self.client.call("test", "ping")
        self.assertEqual((service, status), (b"test", b"OK"))
        self.assertTrue(msgpack.unpackb(result)["pong"])

    def test_errors_come_back_as_code_message_and_detail(self):
        service, status, message, detail = self.client.call("test", "raise_error")
        self.assertEqual((service, status, message), (b"test", b"PYTHON_ERROR", b"boom"))
        detail = msgpack.unpackb(detail)
        self.assertEqual(detail["type"], "ValueError")
        self.assertIn("raise ValueError", detail["traceback"])
        self.assertEqual(self.client.call("test", "no_such")[:2], [b"test", b"UNKNOWN_COMMAND"])
        self.assertEqual(self.client.call("nowhere", "echo")[:2],
                         [b"nowhere", b"UNKNOWN_SERVICE"])

    def test_the_broker_deadline_applies(self):
        service, status, message, _ = self.client.call(
            "test", "sleep", msgpack.packb({"seconds": 5}), timeout=10)
        self.assertEqual((service, status), (b"test", b"TIMEOUT"))

    def test_mmi_service_says_whether_a_service_is_served(self):
        self.assertEqual(self.client.call("mmi.service", "test"), [b"mmi.service", b"200"])
        self.assertEqual(self.client.call("mmi.service", "nowhere"), [b"mmi.service", b"404"])
        self.assertEqual(self.client.call("mmi.other", "test"), [b"mmi.other", b"501"])

    def test_malformed_requests_are_answered_and_the_broker_goes_on(self):
        for frames, status, reason in [
                (("test",), b"BAD_REQUEST", b"expected SERVICE COMMAND [ARGS]"),
                (("test", "echo", b"\xc0", b"extra"), b"BAD_REQUEST", b"got 4 frames"),
                (("test", ""), b"BAD_REQUEST", b"command: empty"),
                (("s" * 256, "echo"), b"BAD_REQUEST", b"service: 256 bytes exceeds"),
                (("test", "echo", b"x" * 100001), b"TOO_LARGE", b"exceeds limit of 100000")]:
            answer = self.client.call(*frames)
            self.assertEqual(answer[1], status, (frames[:2], answer))
            self.assertIn(reason, answer[2])
        self.assertEqual(self.client.call("test", "ping")[1], b"OK")

    def test_pipelined_requests_on_a_dealer_are_all_answered(self):
        client = MdpClient(self.fleet.endpoint, zmq.DEALER)
        self.addCleanup(client.close)
        for n in range(300):
            client.send("test", "echo", msgpack.packb({"n": n}))
        seen = sorted(msgpack.unpackb(client.recv()[2])["n"] for _ in range(300))
        self.assertEqual(seen, list(range(300)))


class MdpAndPfc1Clients(unittest.TestCase):
    """The broker numbers MDP requests itself from 1: a PFC1 client using the
    same id on the same broker gets its own answer, and so does the MDP one."""

    def setUp(self):
        self.fleet = Fleet()
        self.fleet.start_broker("--startup-grace", "0")
        self.fleet.start_worker(service="test", bridges=2)

    def tearDown(self):
        statuses = self.fleet.stop()
        self.assertTrue(all(status == 0 for status in statuses), statuses)

    def test_the_same_request_id_from_both_kinds_of_client(self):
        mdp = MdpClient(self.fleet.endpoint)
        pfc1 = RawClient(self.fleet.endpoint)
        self.addCleanup(mdp.close)
        self.addCleanup(pfc1.close)
        mdp.send("test", "sleep", msgpack.packb({"seconds": 0.3}))
        pfc1.send_request("test", "echo", {"from": "pfc1"}, request_id=1)
        reply = pfc1.recv()
        self.assertEqual((reply["id"], reply["result"]), (1, {"from": "pfc1"}))
        service, status, result = mdp.recv()
        self.assertEqual((service, status), (b"test", b"OK"))


class MdpWorker(threading.Thread):
    """A Majordomo worker written from RFC 7 with pyzmq: READY, then it
    answers each REQUEST (COMMAND ARGS) with {command, upper} after `delay`
    s, heartbeats every `beat` s while `beating`, and leaves (DISCONNECT)
    when stopped. It counts how many requests it held at once."""

    def __init__(self, endpoint, service, delay=0.0, replying=True, beat=0.2):
        super().__init__(daemon=True)
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(endpoint)
        self.service, self.delay, self.replying, self.beat = service, delay, replying, beat
        self.beating = True
        self.stopping = threading.Event()
        self.requests = 0
        self.most_held = 0
        self.disconnected = threading.Event()

    def run(self):
        self.socket.send_multipart([b"", b"MDPW01", b"\x01", self.service.encode()])
        held = []
        beat_at = time.monotonic()
        for _ in range(100000):  # bounded; stopping ends it long before
            if self.stopping.is_set():
                break
            if self.socket.poll(20):
                frames = self.socket.recv_multipart()
                assert frames[:2] == [b"", b"MDPW01"], frames
                if frames[2] == b"\x02":
                    held.append((time.monotonic() + self.delay, frames[3], frames[5], frames[6]))
                    self.requests += 1
                    self.most_held = max(self.most_held, len(held))
                elif frames[2] == b"\x05":
                    self.disconnected.set()
            now = time.monotonic()
            while held and held[0][0] <= now:
                _, address, command, args = held.pop(0)
                if self.replying:
                    text = msgpack.unpackb(args).get("text", "") if args else ""
                    self.socket.send_multipart([b"", b"MDPW01", b"\x03", address, b"",
                                                msgpack.packb({"command": command.decode(),
                                                               "upper": text.upper()})])
            if self.beating and now >= beat_at:
                self.socket.send_multipart([b"", b"MDPW01", b"\x04"])
                beat_at = now + self.beat
        if not self.disconnected.is_set():
            self.socket.send_multipart([b"", b"MDPW01", b"\x05"])
        self.socket.close(0)

    def stop(self):
        self.stopping.set()
        self.join(10)


class MdpWorkers(unittest.TestCase):
    """Majordomo workers (MDPW01) serve pyfleet services as agents with one
    bridge, one request at a time."""

    def setUp(self):
        self.fleet = Fleet()
        self.fleet.start_broker("--startup-grace", "0", "--heartbeat", "200")
        self.workers = []

    def tearDown(self):
        for worker in self.workers:
            worker.stop()
        statuses = self.fleet.stop()
        self.assertTrue(all(status == 0 for status in statuses), statuses)

    def worker(self, service="mdp", **kw):
        worker = MdpWorker(self.fleet.endpoint, service, **kw)
        self.workers.append(worker)
        worker.start()
        self.fleet.broker.wait_for(r"agent mdp-\w+: 1 of 1 bridges serving",
                                   count=len(self.workers), timeout=10)
        return worker

    def test_pfc1_and_mdp_clients_are_served_by_an_mdp_worker(self):
        self.worker()
        client = RawClient(self.fleet.endpoint)
        self.addCleanup(client.close)
        reply = client.call("mdp", "upper", {"text": "abc"})
        self.assertEqual(reply["result"], {"command": "upper", "upper": "ABC"})
        mdp = MdpClient(self.fleet.endpoint)
        self.addCleanup(mdp.close)
        service, status, result = mdp.call("mdp", "upper", msgpack.packb({"text": "x"}))
        self.assertEqual((service, status, msgpack.unpackb(result)),
                         (b"mdp", b"OK", {"command": "upper", "upper": "X"}))
        self.assertEqual(mdp.call("mmi.service", "mdp"), [b"mmi.service", b"200"])
        agents = self.fleet.manage("WORKERS")[1]["agents"]
        self.assertEqual([(a["host"], a["capacity"]) for a in agents], [("mdp", 1)])

    def test_an_mdp_worker_holds_one_request_at_a_time(self):
        worker = self.worker(delay=0.01)
        client = RawClient(self.fleet.endpoint)
        self.addCleanup(client.close)
        ids = [client.send_request("mdp", "upper", {"text": str(n)}) for n in range(30)]
        answers = {}
        for _ in ids:
            reply = client.recv()
            answers[reply["id"]] = reply["result"]["upper"]
        self.assertEqual(answers, {request_id: str(n) for n, request_id in enumerate(ids)})
        self.assertEqual((worker.requests, worker.most_held), (30, 1))

    def test_a_silent_worker_times_out_its_request_and_is_dropped(self):
        worker = self.worker(replying=False)
        client = RawClient(self.fleet.endpoint)
        self.addCleanup(client.close)
        reply = client.call("mdp", "upper", {"text": "x"}, timeout_ms=500)
        self.assertEqual(reply["code"], "TIMEOUT", reply)
        worker.beating = False
        # RFC 7's liveness: silent 2.5 s x 3, whatever the broker's own (0.6 s here).
        started = time.monotonic()
        self.fleet.broker.wait_for(r"agent mdp-\w+ \(mdp pid 0\) removed: heartbeat expired",
                                   timeout=15)
        self.assertGreater(time.monotonic() - started, 6.0)

    def test_a_worker_beating_every_2_5_s_as_rfc_7_says_stays(self):
        self.worker(beat=2.5)
        client = RawClient(self.fleet.endpoint)
        self.addCleanup(client.close)
        for _ in range(3):
            time.sleep(1.2)  # across at least two of its beats, far past 3 x 200 ms
            self.assertTrue(client.call("mdp", "upper", {"text": "x"})["ok"])
        self.assertEqual(self.fleet.broker.count(r"removed: heartbeat expired"), 0)

    def test_a_worker_that_leaves_says_so_and_the_broker_forgets_it(self):
        worker = self.worker()
        worker.stop()
        self.fleet.broker.wait_for(r"removed: the MDP worker disconnected", timeout=10)
        self.assertTrue(wait_until(lambda: not self.fleet.manage("WORKERS")[1]["agents"], 5))


if __name__ == "__main__":
    unittest.main()
