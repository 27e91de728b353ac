"""pyfleet-broker --unix: clients on a Unix stream socket served by the
broker's own loop (docs/PROTOCOL.md 2.1).

What only this transport can get wrong: where entries start and end, a
client that sends what is not PFC1 or does not read, the socket file.
libpyfleet and the CLI over unix:// run the whole client suite too
(test_client_fleet: ClientOverUnixSocket, BrokerOutagesOverUnixSocket).
Real processes on 127.0.0.1 and a temporary directory; every wait is
bounded, every process stopped by its pid.
"""

import os
import socket
import struct
import subprocess
import time
import unittest

import msgpack

from tests.integration.fleet import (BIN, FIXTURES, PYTHON, Fleet, Process, StreamClient,
                                     wait_until, write_config)

FAULTS = os.path.join(FIXTURES, "faults.py")


class UnixClients(unittest.TestCase):
    def setUp(self):
        self.fleet = Fleet(unix=True)
        self.broker = self.fleet.start_broker("--max-body", "100000")
        self.fleet.start_worker(service="test", bridges=2, modules=[FAULTS])
        self.clients = []

    def tearDown(self):
        for client in self.clients:
            client.close()
        # Exit 0 also means no leak or memory error under valgrind or ASan.
        statuses = self.fleet.stop()
        self.assertTrue(all(status == 0 for status in statuses), statuses)
        self.assertFalse(os.path.exists(self.fleet.unix_path or "/"), "socket file left behind")

    def client(self):
        client = self.fleet.client()
        self.clients.append(client)
        return client

    def test_pipelined_requests_on_one_connection_are_all_answered_by_id(self):
        client = self.client()
        ids = [client.send_request("test", "echo", {"n": n}) for n in range(2000)]
        answers = {}
        for _ in ids:
            reply = client.recv()
            self.assertTrue(reply["ok"], reply)
            answers[reply["id"]] = reply["result"]["n"]
        self.assertEqual(answers, {request_id: n for n, request_id in enumerate(ids)})

    def test_a_bad_request_or_one_too_large_is_answered_by_id_and_the_connection_goes_on(self):
        client = self.client()
        # An empty service name: BAD_REQUEST, by its id.
        bad = client.call("", "echo")
        self.assertEqual(bad["code"], "BAD_REQUEST", bad)
        self.assertIn("service", bad["message"])
        # Over --max-body but within what a reader holds: TOO_LARGE from the codec.
        large = client.call("test", "echo", raw_body=b"\xc4" * 100001)
        self.assertEqual(large["code"], "TOO_LARGE", large)
        # Far over it: refused by its id, its 3 MB skipped, never held whole.
        huge = client.call("test", "echo", raw_body=b"\xc0" * 3000000)
        self.assertEqual(huge["code"], "TOO_LARGE", huge)
        self.assertIn("over the limit", huge["message"])
        self.assertEqual(client.call("test", "echo", {"after": 1})["result"], {"after": 1})

    def test_bytes_that_are_not_pfc1_close_that_connection_only(self):
        good = self.client()
        self.assertTrue(good.call("test", "ping")["ok"])
        for garbage in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x00\x00\x00\x00",
                        struct.pack(">I", 5) + b"\x0b\x00\x00\x00\x00"):
            bad = self.client()
            bad.send_raw(garbage)
            with self.assertRaises(ConnectionError):
                bad.recv(timeout=10)
        self.broker.wait_for(r"unix:// client dropped: stream: an entry", count=3)
        self.assertTrue(good.call("test", "echo", {"still": "here"})["ok"])

    def test_a_client_that_does_not_read_loses_its_connection_not_the_broker(self):
        silent = self.client()
        silent.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        # 80 000-byte echoes until 64 MiB of answers wait unread: ~900 of them.
        body = msgpack.packb({"pad": "x" * 79000})
        for _ in range(1200):
            try:
                silent.send_request("test", "echo", raw_body=body)
            except OSError:
                break  # the broker closed it while we were still sending
        self.broker.wait_for(r"a unix:// client has \d+ bytes unread: connection closed",
                             timeout=60)
        other = self.client()
        self.assertTrue(other.call("test", "echo", {"ok": 1})["ok"])

    def test_requests_of_a_client_that_left_are_cancelled_not_run(self):
        leaving = self.client()
        for _ in range(40):  # 40 x 0.25 s on 2 bridges: 5 s of work
            leaving.send_request("test", "sleep", {"seconds": 0.25}, timeout_ms=30000)
        leaving.close()
        self.clients.remove(leaving)
        self.broker.wait_for(r"a unix:// client left with \d+ requests unanswered: cancelled")
        # At most the two sleeps already running are in the way.
        other = self.client()
        start = time.monotonic()
        self.assertTrue(other.call("test", "ping")["ok"])
        self.assertLess(time.monotonic() - start, 2.0)

    def test_status_counts_the_connections_open_on_the_socket(self):
        def unix_clients():
            return self.fleet.manage("STATUS")[1]["unix_clients"]
        first, second = self.client(), self.client()
        for client in (first, second):  # connected once the broker has read from them
            self.assertTrue(client.call("test", "ping")["ok"])
        self.assertEqual(unix_clients(), 2)
        first.close()
        self.clients.remove(first)
        self.assertTrue(wait_until(lambda: unix_clients() == 1, timeout=5))
        done = subprocess.run([os.path.join(BIN, "pyfleet"), "status", "--mgmt", self.fleet.mgmt],
                              capture_output=True, timeout=10)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn(b"unix clients 1", done.stdout)

    def test_a_second_broker_on_the_same_path_is_refused(self):
        second = Process("broker2", [os.path.join(BIN, "pyfleet-broker"), "--bind",
                                     "tcp://127.0.0.1:0", "--mgmt", "none", "--events", "none",
                                     "--unix", self.fleet.unix_path])
        second.proc.wait(10)
        self.assertEqual(second.stop(), 1)
        self.assertTrue(second.count(r"cannot listen on %s: Address already in use"
                                     % self.fleet.unix_path))
        self.assertTrue(self.client().call("test", "ping")["ok"])


class OutOfDescriptors(unittest.TestCase):
    def test_the_broker_waits_to_accept_instead_of_spinning_and_accepts_again_later(self):
        fleet = Fleet(unix=True)
        # Descriptors for the broker's own sockets and a few clients only.
        broker = Process("broker", [os.path.join(BIN, "pyfleet-broker"), "--bind",
                                    fleet.endpoint, "--mgmt", "none", "--events", "none",
                                    "--unix", fleet.unix_path], nofile=64)
        fleet.broker = broker
        clients = []
        try:
            broker.wait_for("listening on")
            for _ in range(100):
                client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                client.connect(fleet.unix_path)  # the listen backlog takes them
                clients.append(client)
            broker.wait_for(r"unix:// accept: Too many open files; new connections wait")
            before = cpu_seconds(broker.pid)
            # A broker polling a listener it cannot accept from would spin.
            wait_until(lambda: False, timeout=1.0, interval=0.1)
            self.assertLess(cpu_seconds(broker.pid) - before, 0.5)
            self.assertEqual(broker.count("Too many open files"), 1)
            for client in clients:
                client.close()
            clients = []
            # The descriptors come back: a new client is served (no agent,
            # so its request is answered UNKNOWN_SERVICE after the grace).
            late = StreamClient(fleet.unix_path)
            try:
                reply = late.call("nothing", "ping", timeout_ms=200)
                self.assertIn(reply["code"], ("UNKNOWN_SERVICE", "TIMEOUT"), reply)
            finally:
                late.close()
        finally:
            for client in clients:
                client.close()
            statuses = fleet.stop()
        self.assertEqual(statuses, [0])


def cpu_seconds(pid):
    """User + system CPU time of a process so far, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class UnixClientsOfALocalWorker(unittest.TestCase):
    """The configuration the bench measures as pyfleet-unix: the agent in
    the broker's process, clients on its Unix socket."""

    def test_calls_sessions_and_a_load_over_unix_reach_the_local_bridges(self):
        config = write_config(self, (
            "worker\n    service = test\n    bridges = 2\n    python = %s\n    module = %s\n"
            % (PYTHON, FAULTS)))
        fleet = Fleet(unix=True)
        broker = fleet.start_broker("--local-worker", config)
        try:
            broker.wait_for(r"agent \S+: 2 of \d+ bridges serving", timeout=30)
            client = fleet.client()
            try:
                pids = {client.call("test", "ping", session="s1")["result"]["pid"]
                        for _ in range(10)}
                self.assertEqual(len(pids), 1, pids)  # one session, one bridge
            finally:
                client.close()
            code, out, err = fleet.cli("call", "--count", "5000", "--concurrency", "64",
                                       "test", "echo", '{"x": 1}')
            self.assertEqual(code, 0, err)
            self.assertIn("errors:     0", out)
            status, body = fleet.manage("STATUS")
            self.assertEqual(status, "OK")
        finally:
            statuses = fleet.stop()
        self.assertEqual(statuses, [0])


if __name__ == "__main__":
    unittest.main()
