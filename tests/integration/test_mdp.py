"""Majordomo (ZeroMQ RFC 7, MDP/0.1) clients and 8/MMI on the broker's
endpoint (docs/PROTOCOL.md 7): a client written from the RFC with pyzmq,
independent of pyfleet's C code. Real processes on 127.0.0.1; every wait is
bounded, every process stopped by its pid.
"""

import os
import unittest

import msgpack
import zmq

from tests.integration.fleet import FIXTURES, Fleet, RawClient

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


if __name__ == "__main__":
    unittest.main()
