"""pyfleet-broker --local-worker: an agent in the broker's process, over inproc.

Real processes on 127.0.0.1; every wait is on a log line or a reply with a
bounded timeout, and every process started here is stopped by its pid.
"""

import os
import re
import signal
import subprocess
import unittest

from tests.integration.fleet import (BIN, FIXTURES, PYTHON, Fleet, pid_alive, wait_until,
                                     write_config)

FAULTS = os.path.join(FIXTURES, "faults.py")
SPAWNED = r"worker: bridge \d+ gen \d+: spawned pid (\d+)"


class LocalWorker(unittest.TestCase):
    bridges = 2

    def setUp(self):
        self.fleet = Fleet()
        # Its broker key points nowhere: the local worker connects in-process.
        self.config = write_config(self, (
            "worker\n    broker = tcp://127.0.0.1:1\n    service = test\n    bridges = %d\n"
            "    python = %s\n    module = %s\n    stop-grace = 1500\n")
            % (self.bridges, PYTHON, FAULTS))
        self.broker = self.fleet.start_broker("--local-worker", self.config,
                                              "--log-level", "debug")
        self.broker.wait_for(r"agent \S+: %d of \d+ bridges serving" % self.bridges, timeout=30)
        self.client = self.fleet.client()

    def tearDown(self):
        self.client.close()
        # A clean exit (0) also means no leak or memory error under valgrind
        # or ASan, which make a daemon exit non-zero.
        statuses = self.fleet.stop()
        self.assertTrue(all(status == 0 for status in statuses), statuses)

    def bridge_pids(self):
        return [int(re.search(SPAWNED, line).group(1))
                for line in self.broker.wait_for(SPAWNED, self.bridges)]

    def test_calls_run_on_its_bridges_and_status_lists_it_as_an_agent(self):
        pids = set(self.bridge_pids())
        seen = {self.client.call("test", "ping")["result"]["pid"] for _ in range(20)}
        self.assertTrue(seen <= pids and seen, (seen, pids))
        status, body = self.fleet.manage("WORKERS")
        self.assertEqual(status, "OK")
        self.assertEqual([agent["pid"] for agent in body["agents"]], [self.broker.pid], body)
        code, out, err = self.fleet.cli("call", "--count", "2000", "--concurrency", "32",
                                         "test", "echo", '{"x": 1}')
        self.assertEqual(code, 0, err)
        self.assertIn("answered of 2000", out)
        self.assertIn("errors:     0", out)
        # Its lines say which part of the process wrote them.
        self.assertTrue(self.broker.count(r" INFO worker: agent \S+ serving 'test'"))
        self.assertTrue(self.broker.count(r" INFO broker: listening on"))

    def test_a_separate_worker_joins_the_same_broker(self):
        self.fleet.start_worker(service="other", bridges=1, modules=[FAULTS])
        self.assertTrue(self.client.call("other", "echo", {"a": 1})["ok"])
        self.assertTrue(self.client.call("test", "echo", {"a": 2})["ok"])
        status, body = self.fleet.manage("WORKERS")
        self.assertEqual(len(body["agents"]), 2, body)

    def test_a_crashed_bridge_is_replaced_and_the_broker_lives_on(self):
        reply = self.client.call("test", "crash_segv")
        self.assertEqual(reply["code"], "BRIDGE_CRASHED")
        self.broker.wait_for(r"worker: bridge \d+ gen 2: starting -> ready", timeout=15)
        self.assertTrue(self.client.call("test", "echo", {"a": 3})["ok"])

    def test_a_drained_local_worker_leaves_and_the_broker_serves_on(self):
        pids = self.bridge_pids()
        agent = re.search(r"agent (\S+) serving", self.broker.wait_for(r"agent \S+ serving")[0])
        done = subprocess.run([os.path.join(BIN, "pyfleet"), "drain", "--mgmt", self.fleet.mgmt,
                               agent.group(1)], capture_output=True, timeout=10)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.broker.wait_for(r"broker: the local worker has left \(drained\)", timeout=10)
        self.assertFalse(any(pid_alive(p) for p in pids))
        self.fleet.start_worker(service="test", bridges=1, modules=[FAULTS])
        self.assertTrue(self.client.call("test", "echo", {"a": 4})["ok"])

    def test_kill_9_of_the_broker_leaves_no_bridge_and_no_grandchild(self):
        grandchild = self.client.call("test", "fork_grandchild")["result"]["child"]
        pids = self.bridge_pids()
        self.assertTrue(pid_alive(grandchild))
        self.broker.signal(signal.SIGKILL)
        self.broker.proc.wait(5)
        gone = wait_until(lambda: not any(pid_alive(p) for p in pids + [grandchild]), 2)
        self.assertTrue(gone, [p for p in pids + [grandchild] if pid_alive(p)])
        self.assertEqual(self.broker.stop(), -signal.SIGKILL)
        self.fleet.broker = None  # stopped here: tearDown checks the others

    def test_sigterm_finishes_the_request_in_flight_then_exits_0_with_no_child_left(self):
        pids = self.bridge_pids()
        request = self.client.send_request("test", "sleep", {"seconds": 0.5}, timeout_ms=10000)
        self.broker.wait_for(r"ready -> busy after \d+ ms \(sleep\)", timeout=5)
        self.broker.signal(signal.SIGTERM)
        reply = self.client.recv(timeout=5)
        self.assertEqual(reply["id"], request)
        self.assertTrue(reply["ok"], reply)
        self.assertEqual(self.broker.proc.wait(10), 0)
        self.assertFalse(any(pid_alive(p) for p in pids))
        self.broker.wait_for(r"worker: stopped$")
        self.broker.wait_for(r"broker: served \d+ requests")


class LocalWorkerConfig(unittest.TestCase):
    def run_broker(self, *args):
        return subprocess.run([os.path.join(BIN, "pyfleet-broker"), "--bind",
                               "tcp://127.0.0.1:1", "--mgmt", "none", "--events", "none"]
                              + list(args), capture_output=True, timeout=10)

    def test_a_bad_file_is_refused_naming_the_key_before_anything_starts(self):
        done = self.run_broker("--local-worker", "/no/such/file.zpl")
        self.assertEqual(done.returncode, 2)
        self.assertIn(b"pyfleet-broker: config file '/no/such/file.zpl' not found", done.stderr)
        path = write_config(self, "worker\n    bridges = many\n")
        done = self.run_broker("--local-worker", path)
        self.assertEqual(done.returncode, 2)
        self.assertIn(b"invalid value 'many' for key 'worker/bridges'", done.stderr)
        path = write_config(self, "worker\n    bridgez = 2\n")
        done = self.run_broker("--local-worker", path)
        self.assertEqual(done.returncode, 2)
        self.assertIn(b"unknown key 'worker/bridgez'", done.stderr)
        self.assertNotIn(b"listening", done.stderr)


if __name__ == "__main__":
    unittest.main()
