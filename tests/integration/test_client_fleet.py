"""libpyfleet and `pyfleet call` against a real broker and worker.

The library is driven through tests/programs/client_driver.c (one client
process, commands on stdin, one JSON line back each), so a test can keep the
same client across a broker restart and see request ids, attempts and local
replies. Every wait is bounded; every process is stopped by its pid.
"""

import json
import os
import selectors
import signal
import subprocess
import time
import unittest

from tests.integration.fleet import BUILD, FIXTURES, Fleet, wait_until

DRIVER = os.path.join(BUILD, "tests", "client_driver")
TIMEOUT_MARGIN_MS = 500  # PF_CLIENT_TIMEOUT_MARGIN_MS


class Driver:
    """A client_driver process: one libpyfleet client for the test's life."""

    def __init__(self, endpoint, retry=None):
        argv = [DRIVER, endpoint] + [str(value) for value in (retry or ())]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.proc.stdout, selectors.EVENT_READ)
        self.buffer = b""

    def send(self, line):
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def answer(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not self.selector.select(left):
                raise AssertionError("client_driver gave no answer within %.1f s" % timeout)
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                raise AssertionError("client_driver exited: %s" % self.proc.stderr.read())
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def request(self, line, timeout=30.0):
        self.send(line)
        return self.answer(timeout)

    def call(self, service, command, args="{}", timeout_ms=5000, flags=0, wait=30.0):
        return self.request("call %s %s %d %d %s" % (service, command, timeout_ms, flags, args),
                            wait)

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.send("quit")
                self.proc.wait(10)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)
        self.selector.close()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            stream.close()
        return self.proc.returncode


class ClientAgainstFleet(unittest.TestCase):
    """One broker and one worker (2 bridges, the faults fixture) for the class."""
    unix = False  # the client on the broker's Unix stream socket, not ZeroMQ

    @classmethod
    def setUpClass(cls):
        cls.fleet = Fleet(unix=cls.unix)
        cls.broker_started = time.monotonic()
        cls.fleet.start_broker()
        cls.fleet.start_worker(service="test", bridges=2,
                               modules=[os.path.join(FIXTURES, "faults.py")])
        cls.driver = Driver(cls.fleet.client_endpoint)

    @classmethod
    def tearDownClass(cls):
        cls.driver.stop()
        cls.fleet.stop()

    def test_ten_thousand_pipelined_requests_are_all_answered_and_matched_by_id(self):
        summary = self.driver.request("pipeline test 10000 1000 30000", timeout=60)
        self.assertEqual(summary["sent"], 10000, summary)
        self.assertEqual(summary["answered"], 10000, summary)
        self.assertEqual(summary["matched"], 10000, summary)
        self.assertEqual(summary["unknown"] + summary["mismatched"] + summary["errors"], 0)

    def test_load_generator_prints_throughput_last_and_json_with_latencies(self):
        status, out, err = self.fleet.cli("call", "--count", "2000", "--concurrency", "100",
                                          "test", "echo", '{"x": 1}')
        self.assertEqual(status, 0, err)
        self.assertIn("req/s", out.strip().splitlines()[-1])
        self.assertIn("errors:     0", out)
        status, out, err = self.fleet.cli("call", "--count", "10000", "--concurrency", "1000",
                                          "--json", "test", "echo", "{}")
        self.assertEqual(status, 0, err)
        report = json.loads(out)
        self.assertEqual(report["requests"], 10000)
        self.assertEqual(report["errors"], 0)
        self.assertGreater(report["req_per_s"], 0)
        self.assertLessEqual(report["p50_us"], report["p99_us"])
        self.assertLessEqual(report["p99_us"], report["max_us"])

    def test_python_error_reaches_the_caller_with_type_message_and_traceback(self):
        reply = self.driver.call("test", "raise_error")
        self.assertEqual(reply["code"], "PYTHON_ERROR")
        self.assertEqual(reply["type"], "ValueError")
        self.assertIn("boom", reply["message"])
        self.assertIn("raise_error", reply["traceback"])
        self.assertFalse(reply["local"])
        status, out, err = self.fleet.cli("call", "--json", "test", "raise_error")
        self.assertEqual(status, 5, err)
        envelope = json.loads(out)
        self.assertEqual(envelope["error"]["type"], "ValueError")
        self.assertIn("Traceback", envelope["error"]["traceback"])

    def test_unknown_command_reaches_the_caller_and_exits_6(self):
        reply = self.driver.call("test", "no_such_command")
        self.assertEqual(reply["code"], "UNKNOWN_COMMAND")
        self.assertIn("no_such_command", reply["message"] + (reply["traceback"] or ""))
        status, _, err = self.fleet.cli("call", "test", "no_such_command")
        self.assertEqual(status, 6, err)
        self.assertIn("UNKNOWN_COMMAND", err)

    def test_bad_arguments_to_a_command_are_bad_request_and_exit_10(self):
        reply = self.driver.call("test", "sleep", '{"seconds": -1}')
        self.assertEqual(reply["code"], "BAD_REQUEST")
        self.assertIn("seconds", reply["message"])
        status, _, err = self.fleet.cli("call", "test", "sleep", '{"seconds": "x"}')
        self.assertEqual(status, 10, err)
        self.assertIn("BAD_REQUEST", err)

    def test_unknown_service_reaches_the_caller_once_the_startup_grace_is_over(self):
        # During its startup grace (5 s) the broker queues requests for
        # services no agent has announced yet; after it, it refuses them.
        attempt = [0]

        def unknown_service_answered():
            attempt[0] += 1
            reply = self.driver.call("no_such_service_%d" % attempt[0], "echo", timeout_ms=300)
            return reply if reply["code"] == "UNKNOWN_SERVICE" else None

        reply = wait_until(unknown_service_answered, timeout=15, interval=0.1)
        self.assertTrue(reply, "no UNKNOWN_SERVICE within 15 s of the broker's start")
        self.assertFalse(reply["local"])
        status, _, err = self.fleet.cli("call", "no_such_service", "echo")
        self.assertEqual(status, 6, err)
        self.assertIn("UNKNOWN_SERVICE", err)

    def test_deadline_passed_in_the_worker_is_timeout_by_the_deadline(self):
        reply = self.driver.call("test", "sleep", '{"seconds": 5}', timeout_ms=400)
        self.assertEqual(reply["code"], "TIMEOUT")
        self.assertLess(reply["elapsed_ms"], 400 + TIMEOUT_MARGIN_MS + 300, reply)
        status, _, err = self.fleet.cli("call", "--timeout", "300", "test", "sleep",
                                        '{"seconds": 5}')
        self.assertEqual(status, 3, err)
        self.assertIn("TIMEOUT", err)


class BrokerOutages(unittest.TestCase):
    """A fleet per test: these stop and restart the broker."""
    unix = False

    def setUp(self):
        self.fleet = Fleet(unix=self.unix)
        self.fleet.start_broker()
        self.worker = self.fleet.start_worker(service="test", bridges=1,
                                              args=["--log-level", "debug"])
        self.drivers = []

    def tearDown(self):
        for driver in self.drivers:
            driver.stop()
        self.fleet.stop()

    def driver(self, retry=None):
        driver = Driver(self.fleet.client_endpoint, retry)
        self.drivers.append(driver)
        return driver

    def restart_broker(self, *args):
        self.fleet.broker.signal(signal.SIGKILL)
        self.fleet.broker.stop()
        self.fleet.start_broker(*args)

    def test_every_request_times_out_by_its_deadline_while_the_broker_is_down(self):
        driver = self.driver()
        self.assertEqual(driver.call("test", "ping")["code"], "OK")
        self.fleet.broker.stop()
        burst = driver.request("burst test ping 500 300 {}", timeout=10)
        self.assertEqual(burst["answered"], 500, burst)
        self.assertEqual(burst["codes"], {"TIMEOUT": 500}, burst)
        self.assertLessEqual(burst["max_late_ms"], TIMEOUT_MARGIN_MS + 300, burst)
        self.assertEqual(burst["outstanding"], 0)
        reply = driver.call("test", "ping", timeout_ms=200)
        self.assertEqual(reply["code"], "TIMEOUT")
        self.assertTrue(reply["local"])

    def test_the_same_client_gets_answers_again_after_a_broker_restart(self):
        driver = self.driver()
        self.assertEqual(driver.call("test", "ping")["code"], "OK")
        self.restart_broker()
        # The worker notices the dead broker and reconnects with its backoff;
        # until then requests time out, after it they are answered.
        answered = wait_until(lambda: driver.call("test", "ping", timeout_ms=1000)["code"] == "OK",
                              timeout=30, interval=0)
        self.assertTrue(answered, "no answer within 30 s of the broker's restart")

    def test_idempotent_request_in_flight_when_the_broker_dies_is_sent_again(self):
        driver = self.driver(retry=(3, 100, 500))
        self.assertEqual(driver.call("test", "ping")["code"], "OK")
        driver.send("call test sleep 30000 1 {\"seconds\": 1}")
        # The sleep itself is running (the ping before it logged a busy line too).
        self.worker.wait_for(r"-> busy after \d+ ms \(sleep\)", timeout=10)
        self.restart_broker()
        reply = driver.answer(timeout=40)
        self.assertEqual(reply["code"], "OK", reply)
        self.assertEqual(reply["attempts"], 2, reply)

    def test_busy_reaches_the_caller_without_retries_and_is_retried_with_them(self):
        self.restart_broker("--queue-max", "1", "--window", "1")
        driver = self.driver()
        # The worker is back once the new broker answers.
        self.assertTrue(wait_until(
            lambda: driver.call("test", "ping", timeout_ms=1000)["code"] == "OK",
            timeout=30, interval=0))
        burst = driver.request('burst test sleep 6 5000 {"seconds": 0.3}', timeout=15)
        self.assertEqual(burst["answered"], 6, burst)
        self.assertGreaterEqual(burst["codes"].get("BUSY", 0), 4, burst)

        # One running, one queued: the CLI's request finds the queue full.
        busy_before = self.worker.count(r"-> busy")
        driver.send('burst test sleep 2 5000 {"seconds": 1}')
        self.worker.wait_for(r"-> busy", count=busy_before + 1, timeout=10)
        status, _, err = self.fleet.cli("call", "test", "ping")
        self.assertEqual(status, 4, err)
        self.assertIn("BUSY", err)
        self.assertEqual(driver.answer(timeout=10)["codes"], {"OK": 2})

        retrying = self.driver(retry=(20, 50, 200))
        burst = retrying.request('burst test sleep 5 8000 {"seconds": 0.1}', timeout=15)
        self.assertEqual(burst["codes"], {"OK": 5}, burst)


class ClientOverUnixSocket(ClientAgainstFleet):
    """All of the above with the client on the broker's Unix stream socket."""
    unix = True


class BrokerOutagesOverUnixSocket(BrokerOutages):
    """All of the above over unix://: a broker killed with -9 leaves its
    socket file, which the restarted one replaces."""
    unix = True


if __name__ == "__main__":
    unittest.main()
