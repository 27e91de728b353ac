"""One request end to end: client -> broker -> agent -> Python bridge -> back.

A broker and a worker with 2 bridges run on 127.0.0.1 for the whole class.
"""

import json
import os
import signal
import struct
import time
import unittest

from tests.integration.fleet import FIXTURES, Fleet, pid_alive, wait_until


class EndToEnd(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.fleet = Fleet()
        # No start-up grace: a service nobody serves is UNKNOWN_SERVICE at once.
        cls.fleet.start_broker("--startup-grace", "0")
        cls.worker = cls.fleet.start_worker(
            service="test", bridges=2, modules=[os.path.join(FIXTURES, "faults.py")])
        cls.client = cls.fleet.client()

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        # A clean exit (0) also means no leak or memory error under valgrind
        # or ASan, which make a daemon exit non-zero.
        statuses = cls.fleet.stop()
        if statuses != [0, 0]:
            raise AssertionError("worker and broker exit statuses: %s" % statuses)

    def test_one_mib_payload_echoes_back_byte_exact(self):
        payload = os.urandom(1024 * 1024)
        reply = self.client.call("test", "echo", {"blob": payload})
        self.assertTrue(reply["ok"], reply)
        self.assertEqual(reply["result"]["blob"], payload)

    def test_cli_call_prints_the_result_as_json(self):
        status, out, err = self.fleet.cli("call", "test", "echo", '{"a": [1, 2.5, "x", null]}')
        self.assertEqual(status, 0, err)
        self.assertEqual(json.loads(out), {"a": [1, 2.5, "x", None]})

    def test_cli_reads_one_mib_of_args_from_stdin(self):
        text = "x" * (1024 * 1024)
        status, out, err = self.fleet.cli("call", "test", "echo", "-",
                                          stdin=json.dumps({"text": text}).encode())
        self.assertEqual(status, 0, err)
        self.assertEqual(json.loads(out)["text"], text)

    def test_two_sleeps_run_at_once_on_two_bridges(self):
        start = time.monotonic()
        first = self.client.send_request("test", "sleep", {"seconds": 0.5})
        second = self.client.send_request("test", "sleep", {"seconds": 0.5})
        replies = {}
        for _ in range(2):
            reply = self.client.recv(timeout=5)
            replies[reply["id"]] = (reply, time.monotonic() - start)
        self.assertEqual(set(replies), {first, second})
        for reply, elapsed in replies.values():
            self.assertTrue(reply["ok"], reply)
            self.assertLess(elapsed, 0.9, "both sleeps must finish within 0.9 s of the first send")

    def test_unknown_command_is_unknown_command(self):
        reply = self.client.call("test", "no_such_command")
        self.assertFalse(reply["ok"])
        self.assertEqual(reply["code"], "UNKNOWN_COMMAND")
        status, _, err = self.fleet.cli("call", "test", "no_such_command", "{}")
        self.assertNotEqual(status, 0)
        self.assertIn("UNKNOWN_COMMAND", err)

    def test_raising_handler_is_python_error_naming_the_type(self):
        reply = self.client.call("test", "raise_error")
        self.assertFalse(reply["ok"])
        self.assertEqual(reply["code"], "PYTHON_ERROR")
        self.assertEqual(reply["detail"]["type"], "ValueError")
        self.assertIn("boom", reply["message"])
        self.assertIn("raise_error", reply["detail"]["traceback"])
        status, _, err = self.fleet.cli("call", "test", "raise_error", "{}")
        self.assertNotEqual(status, 0)
        self.assertIn("PYTHON_ERROR", err)
        self.assertIn("ValueError", err)

    def test_print_to_stdout_does_not_break_the_stream(self):
        for _ in range(4):  # reach both bridges
            reply = self.client.call("test", "print_stdout")
            self.assertTrue(reply["ok"], reply)
            self.assertEqual(self.client.call("test", "echo", {"still": "fine"})["result"],
                             {"still": "fine"})

    def test_unknown_service_is_unknown_service(self):
        status, _, err = self.fleet.cli("call", "--timeout", "3000", "nope", "echo", "{}")
        self.assertEqual(status, 6, err)
        self.assertIn("UNKNOWN_SERVICE", err)

    def test_malformed_client_messages_leave_the_broker_answering(self):
        good_id = struct.pack(">Q", 4242)
        malformed = [
            [b"PFC1", b"\x01", good_id],                              # no empty delimiter
            [b"", b"XXXX", b"\x01", good_id],                         # wrong header
            [b"", b"PFC1", b"\x7f", good_id],                         # unknown command
            [b"", b"PFC1", b"\x01", good_id, b"test"],                # too few frames
            [b"", b"PFC1", b"\x01", b"\x01\x02", b"test", b"", b"echo",  # short request id
             b"\0\0\0\0", b"\0\0\0\0", b"\x80"],
            [b"", b"PFC1", b"\x01", good_id, b"s" * 300, b"", b"echo",   # service too long
             b"\0\0\0\0", b"\0\0\0\0", b"\x80"],
            [b""] * 40,                                               # frame flood
        ]
        # BATCH (PROTOCOL.md 4.6): a packed REQUEST_PACKED with an empty service
        # (answered by its id), an unknown command, a length past the end.
        bad_request = (b"\x05" + good_id + b"\0\0\x03\xe8" + b"\0\0\0\0" + b"\x00" + b"\x00"
                       + b"\x04echo" + b"\0\0\0\0")
        entries = (struct.pack(">I", len(bad_request)) + bad_request
                   + struct.pack(">I", 2) + b"\x7f\x00" + struct.pack(">I", 255) + b"\x01")
        malformed.append([b"", b"PFC1", b"\x06", entries])
        for frames in malformed:
            self.client.send_raw(frames)
        # Where the request id was readable the broker answers BAD_REQUEST.
        # Three are answered (bounded waits, valgrind-slow brokers too), then no more.
        answered = []
        while len(answered) < 3 and self.client.socket.poll(10000):
            answered.append(self.client.recv())
        while self.client.socket.poll(300):
            answered.append(self.client.recv())
        for reply in answered:
            self.assertFalse(reply["ok"])
            self.assertEqual(reply["code"], "BAD_REQUEST")
            self.assertEqual(reply["id"], 4242)
        # Too few frames, the long service, and the bad request in the BATCH.
        self.assertEqual(len(answered), 3, answered)
        reply = self.client.call("test", "echo", {"alive": True})
        self.assertEqual(reply["result"], {"alive": True})
        self.assertIsNone(self.fleet.broker.proc.poll())


class CleanStop(unittest.TestCase):
    def test_sigterm_stops_broker_and_worker_with_no_child_left(self):
        fleet = Fleet()
        try:
            fleet.start_broker()
            worker = fleet.start_worker(bridges=2)
            client = fleet.client()
            pids = {client.call("test", "stats")["result"]["pid"] for _ in range(6)}
            client.close()
            self.assertTrue(all(pid_alive(pid) for pid in pids))
        finally:
            statuses = fleet.stop()
        self.assertEqual(statuses, [0, 0])
        self.assertEqual(len(pids), 2)
        self.assertTrue(wait_until(lambda: not any(pid_alive(pid) for pid in pids), 2))
        self.assertIn("stopped", worker.log())

    def test_sigint_stops_the_worker_too(self):
        fleet = Fleet()
        try:
            fleet.start_broker()
            worker = fleet.start_worker(bridges=1)
            worker.signal(signal.SIGINT)
            self.assertEqual(worker.proc.wait(10), 0)
        finally:
            fleet.stop()


if __name__ == "__main__":
    unittest.main()
