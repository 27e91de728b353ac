"""Requests and replies: the ready frame, built-ins, errors, bad requests."""

import os
import signal
import time
import unittest

from support import BridgeTestCase, fixture, frame, pack

MIB = 1024 * 1024


class ReadyTest(BridgeTestCase):

    def test_ready_frame_names_pid_commands_and_version(self):
        bridge = self.start()
        ready = bridge.ready
        self.assertEqual(ready["id"], 0)
        self.assertEqual(ready["event"], "ready")
        self.assertEqual(ready["pid"], bridge.pid)
        self.assertEqual(ready["version"], "0.1.0")
        self.assertEqual(ready["commands"], sorted(ready["commands"]))
        for name in ("ping", "echo", "sleep", "stats", "commands", "session_end"):
            self.assertIn(name, ready["commands"])

    def test_ready_lists_the_commands_of_loaded_modules(self):
        bridge = self.start("--module", fixture("faults.py"))
        self.assertIn("raise_error", bridge.ready["commands"])
        self.assertIn("hang", bridge.ready["commands"])
        self.assertNotIn("hang_forever_here", bridge.ready["commands"])


class BuiltinCommandTest(BridgeTestCase):

    def setUp(self):
        super().setUp()
        self.bridge = self.start()

    def test_ping_answers_pong_with_the_pid(self):
        reply = self.bridge.call(1, "ping")
        self.assertEqual(reply, {"id": 1, "ok": True, "result": {"pong": True, "pid": self.bridge.pid}})

    def test_echo_returns_any_value_unchanged(self):
        values = [True, -5, 2 ** 64 - 1, 1.25, "text é", b"\x00\x01",
                  [1, [2, [3]]], {"a": {"b": [b"c"]}}, {1: "int key"}]
        for number, value in enumerate(values, start=1):
            reply = self.bridge.call(number, "echo", value)
            self.assertEqual(reply, {"id": number, "ok": True, "result": value})

    def test_echo_round_trips_one_mib_of_bytes(self):
        data = os.urandom(MIB)
        reply = self.bridge.call(9, "echo", {"blob": data})
        self.assertTrue(reply["ok"])
        self.assertEqual(reply["result"]["blob"], data)
        self.assertIsInstance(reply["result"]["blob"], bytes)

    def test_missing_or_nil_args_reach_the_handler_as_an_empty_map(self):
        # The C encoder writes nil when the caller gave no arguments.
        self.bridge.send({"id": 3, "cmd": "echo"})
        self.assertEqual(self.bridge.recv(), {"id": 3, "ok": True, "result": {}})
        self.bridge.send({"id": 4, "cmd": "echo", "args": None})
        self.assertEqual(self.bridge.recv(), {"id": 4, "ok": True, "result": {}})

    def test_sleep_returns_the_seconds_slept(self):
        self.assertEqual(self.bridge.call(4, "sleep", {"seconds": 0.05})["result"], {"slept": 0.05})
        self.assertEqual(self.bridge.call(5, "sleep", {"seconds": 0})["result"], {"slept": 0})

    def test_sleep_with_bad_seconds_is_a_bad_request(self):
        for number, args in enumerate([{"seconds": -1}, {"seconds": 3601}, {"seconds": "1"},
                                       {"seconds": True}, {}, [1], {"seconds": float("nan")}],
                                      start=10):
            reply = self.bridge.call(number, "sleep", args)
            self.assertErrorReply(reply, number, "BAD_REQUEST", "BadRequest")

    def test_stats_reports_counts_memory_and_uptime(self):
        self.bridge.call(1, "ping")
        self.bridge.call(2, "no_such_command")
        stats = self.bridge.call(3, "stats")["result"]
        self.assertEqual(set(stats), {"pid", "rss_kb", "requests", "errors", "skipped",
                                      "released", "uptime_s", "sessions", "version"})
        self.assertEqual(stats["pid"], self.bridge.pid)
        self.assertGreater(stats["rss_kb"], 1000)
        self.assertEqual(stats["requests"], 3)
        self.assertEqual(stats["errors"], 1)
        self.assertGreaterEqual(stats["uptime_s"], 0)
        self.assertEqual(stats["sessions"], 0)
        self.assertEqual(stats["version"], "0.1.0")

    def test_commands_lists_every_command_sorted(self):
        result = self.bridge.call(1, "commands")["result"]
        self.assertEqual(result, sorted(result))
        self.assertEqual(result, self.bridge.ready["commands"])


class ErrorReplyTest(BridgeTestCase):

    def setUp(self):
        super().setUp()
        self.bridge = self.start("--module", fixture("faults.py"),
                                 "--module", fixture("sessions.py"))

    def test_unknown_command_is_unknown_command(self):
        error = self.assertErrorReply(self.bridge.call(5, "frobnicate"), 5,
                                      "UNKNOWN_COMMAND", "UnknownCommand")
        self.assertIn("frobnicate", error["message"])

    def test_raising_handler_is_a_python_error_with_type_and_traceback(self):
        error = self.assertErrorReply(self.bridge.call(6, "raise_error"), 6,
                                      "PYTHON_ERROR", "ValueError")
        self.assertEqual(error["message"], "boom")
        self.assertIn("raise_error", error["traceback"])
        self.assertIn("ValueError: boom", error["traceback"])
        self.assertIn("faults.py", error["traceback"])

    def test_bridge_keeps_serving_after_a_handler_error(self):
        self.bridge.call(1, "raise_error")
        self.assertTrue(self.bridge.call(2, "ping")["ok"])

    def test_handler_raising_bad_request_is_a_bad_request(self):
        error = self.assertErrorReply(self.bridge.call(7, "reject"), 7, "BAD_REQUEST", "BadRequest")
        self.assertEqual(error["message"], "reject always refuses")

    def test_unencodable_result_is_an_error_reply_not_a_crash(self):
        error = self.assertErrorReply(self.bridge.call(8, "unencodable"), 8,
                                      "PYTHON_ERROR", "TypeError")
        self.assertIn("unencodable", error["message"])
        self.assertIn("msgpack", error["message"])
        self.assertErrorReply(self.bridge.call(9, "huge_int"), 9, "PYTHON_ERROR", "OverflowError")
        self.assertTrue(self.bridge.call(10, "ping")["ok"])

    def test_result_above_the_frame_limit_is_too_large(self):
        bridge = self.start("--module", fixture("sessions.py"), "--max-frame", "4096")
        self.assertTrue(bridge.call(1, "big_result", {"size": 1000})["ok"])
        self.assertErrorReply(bridge.call(2, "big_result", {"size": 5000}), 2,
                              "TOO_LARGE", "TooLarge")
        self.assertTrue(bridge.call(3, "ping")["ok"])


class BadRequestTest(BridgeTestCase):

    def setUp(self):
        super().setUp()
        self.bridge = self.start()

    def assertBadRequest(self, raw_payload, request_id):
        self.bridge.send_raw(frame(raw_payload))
        reply = self.bridge.recv()
        self.assertIsNotNone(reply, "bridge closed the stream instead of replying")
        return self.assertErrorReply(reply, request_id, "BAD_REQUEST", "BadRequest")

    def test_request_without_id_gets_a_reply_with_id_zero(self):
        error = self.assertBadRequest(pack({"cmd": "ping"}), 0)
        self.assertIn("id", error["message"])

    def test_request_with_a_non_positive_or_non_integer_id_gets_id_zero(self):
        for bad_id in (0, -3, "7", 1.0, True, None):
            self.assertBadRequest(pack({"id": bad_id, "cmd": "ping"}), 0)

    def test_request_without_cmd_gets_a_reply_with_its_id(self):
        error = self.assertBadRequest(pack({"id": 12}), 12)
        self.assertIn("cmd", error["message"])
        self.assertBadRequest(pack({"id": 13, "cmd": 5}), 13)

    def test_request_that_is_not_a_map_is_a_bad_request(self):
        for value in ([1, "ping"], "ping", 42, None):
            error = self.assertBadRequest(pack(value), 0)
            self.assertIn("map", error["message"])

    def test_bytes_that_are_not_msgpack_are_a_bad_request(self):
        self.assertBadRequest(b"\xc1\xc1\xc1", 0)
        self.assertBadRequest(b"", 0)
        self.assertBadRequest(pack({"id": 1, "cmd": "ping"}) + b"\x00", 0)

    def test_session_that_is_not_a_string_is_a_bad_request(self):
        self.assertBadRequest(pack({"id": 14, "cmd": "ping", "session": 99}), 14)

    def test_deadline_that_is_not_an_integer_is_a_bad_request(self):
        for bad in ("soon", 1.5, True, [1]):
            self.assertBadRequest(pack({"id": 15, "cmd": "ping", "deadline": bad}), 15)

    def test_bridge_keeps_serving_after_bad_requests(self):
        self.assertBadRequest(b"\xc1", 0)
        self.assertBadRequest(pack([]), 0)
        self.assertEqual(self.bridge.call(20, "ping")["result"]["pong"], True)
        stats = self.bridge.call(21, "stats")["result"]
        self.assertEqual(stats["errors"], 2)


class DeadlineTest(BridgeTestCase):
    """A request may wait in the pipe behind another; read after its
    deadline (CLOCK_MONOTONIC ms, the agent's clock) it never starts."""

    def setUp(self):
        super().setUp()
        self.bridge = self.start("--module", fixture("sessions.py"))

    def now_ms(self):
        return int(time.monotonic() * 1000)

    def test_request_read_after_its_deadline_is_answered_timeout_without_running(self):
        self.bridge.send({"id": 1, "cmd": "sleep", "args": {"seconds": 0.2}})
        # Waits in the pipe behind the sleep, which outlives its deadline.
        self.bridge.send({"id": 2, "cmd": "echo", "args": "late",
                          "deadline": self.now_ms() + 50})
        self.assertTrue(self.bridge.recv()["ok"])
        error = self.assertErrorReply(self.bridge.recv(), 2, "TIMEOUT", "DeadlinePassed")
        self.assertIn("not started", error["message"])
        stats = self.bridge.call(3, "stats")["result"]
        self.assertEqual(stats["skipped"], 1)

    def test_skipped_request_leaves_its_session_state_untouched(self):
        self.bridge.send({"id": 1, "cmd": "remember", "args": {"key": "a", "value": 1},
                          "session": "s"})
        self.assertTrue(self.bridge.recv()["ok"])
        self.bridge.send({"id": 2, "cmd": "remember", "args": {"key": "b", "value": 2},
                          "session": "s", "deadline": self.now_ms() - 1})
        self.assertErrorReply(self.bridge.recv(), 2, "TIMEOUT", "DeadlinePassed")
        self.bridge.send({"id": 3, "cmd": "remember", "args": {"key": "c", "value": 3},
                          "session": "s"})
        self.assertEqual(self.bridge.recv()["result"], {"a": 1, "c": 3})

    def test_request_read_before_its_deadline_runs(self):
        self.bridge.send({"id": 4, "cmd": "echo", "args": "on time",
                          "deadline": self.now_ms() + 10000})
        self.assertEqual(self.bridge.recv(), {"id": 4, "ok": True, "result": "on time"})


class ReleaseTest(BridgeTestCase):
    """SIGUSR2 from the agent: requests waiting in the pipe behind a long
    one go back unstarted if they are marked releasable; the others stay."""

    def setUp(self):
        super().setUp()
        self.bridge = self.start("--module", fixture("sessions.py"), beat_ms=20)

    def test_releasable_requests_come_back_at_once_and_the_others_run_in_order(self):
        self.bridge.send({"id": 1, "cmd": "sleep", "args": {"seconds": 1.0}})
        self.bridge.send({"id": 2, "cmd": "echo", "args": "free", "releasable": True})
        self.bridge.send({"id": 3, "cmd": "remember", "args": {"key": "k", "value": 1},
                          "session": "s"})
        self.bridge.send({"id": 4, "cmd": "echo", "args": "free too", "releasable": True})
        # The sleep runs (a beat says so): the others wait behind it.
        self.bridge.recv_beat(predicate=lambda beat: beat["busy"] == 1)
        start = time.monotonic()
        os.kill(self.bridge.pid, signal.SIGUSR2)
        released = [self.bridge.recv(), self.bridge.recv()]
        self.assertLess(time.monotonic() - start, 0.5, "released while the sleep still runs")
        for reply, request_id in zip(released, (2, 4)):
            self.assertErrorReply(reply, request_id, "BUSY", "Released")
        self.assertEqual(self.bridge.recv()["id"], 1)
        self.assertEqual(self.bridge.recv()["id"], 3)
        stats = self.bridge.call(5, "stats")["result"]
        self.assertEqual((stats["released"], stats["errors"]), (2, 0))

    def test_a_release_with_nothing_waiting_changes_nothing(self):
        os.kill(self.bridge.pid, signal.SIGUSR2)
        self.assertEqual(self.bridge.call(1, "echo", "still here")["result"], "still here")


class StdoutIsolationTest(BridgeTestCase):

    def test_printing_to_stdout_goes_to_stderr_and_leaves_the_stream_intact(self):
        bridge = self.start("--module", fixture("faults.py"))
        reply = bridge.call(1, "print_stdout")
        self.assertEqual(reply, {"id": 1, "ok": True, "result": {"printed": True}})
        self.assertEqual(bridge.call(2, "ping")["result"]["pong"], True)
        text = bridge.wait_stderr("print_stdout: written to fd 1")
        self.assertIn("print_stdout: a line from print()", text)
        self.assertIn("print_stdout: written to sys.stdout directly", text)
        self.assertIn("print_stdout: written to sys.__stdout__", text)
        self.assertIn("x" * (100 * 1024), text)

    def test_a_large_burst_on_stderr_does_not_disturb_replies(self):
        bridge = self.start("--module", fixture("faults.py"))
        reply = bridge.call(1, "spam_stderr", {"lines": 5000})
        self.assertEqual(reply["result"], {"lines": 5001})
        text = bridge.wait_stderr("spam_stderr line 4999\n" + "L" * (1024 * 1024) + "\n")
        self.assertIn("spam_stderr line 0\n", text)


if __name__ == "__main__":
    unittest.main()
