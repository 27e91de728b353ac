"""The bridge process: beats, signals, exit statuses and stream faults."""

import signal
import sys
import time
import unittest

from support import BRIDGE_PATH, BridgeTestCase, fixture, frame, pack

sys.path.insert(0, BRIDGE_PATH)

from pyfleet_bridge import __main__ as entry  # noqa: E402

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_PROTOCOL = 4
EXIT_REPLY_PIPE = 5


class BeatTest(BridgeTestCase):

    def test_idle_beats_arrive_every_interval_with_memory(self):
        bridge = self.start(beat_ms=50)
        started = time.monotonic()
        beats = [bridge.recv_beat(timeout=2.0) for _ in range(4)]
        self.assertLess(time.monotonic() - started, 2.0)
        for beat in beats:
            self.assertEqual(set(beat), {"event", "busy", "elapsed_ms", "rss_kb"})
            self.assertIsNone(beat["busy"])
            self.assertEqual(beat["elapsed_ms"], 0)
            self.assertGreater(beat["rss_kb"], 1000)

    def test_beats_during_a_request_name_it_and_its_running_time(self):
        bridge = self.start(beat_ms=50)
        bridge.request(42, "sleep", {"seconds": 0.6})
        beat = bridge.recv_beat(predicate=lambda b: b["busy"] == 42 and b["elapsed_ms"] >= 200)
        self.assertLess(beat["elapsed_ms"], 5000)
        reply = bridge.recv()
        self.assertEqual(reply, {"id": 42, "ok": True, "result": {"slept": 0.6}})
        busy_ids = {b["busy"] for b in bridge.beats}
        self.assertLessEqual(busy_ids, {None, 42})
        bridge.recv_beat(predicate=lambda b: b["busy"] is None)

    def test_beat_interval_comes_from_the_environment(self):
        bridge = self.start(beat_ms=None, env={"PYFLEET_BEAT_MS": "50"})
        for _ in range(3):
            bridge.recv_beat(timeout=2.0)


class SettingsTest(unittest.TestCase):

    def test_defaults_are_one_second_beats_and_64_mib_frames(self):
        options = entry.parse_args([], {})
        self.assertEqual(options.beat_ms, 1000)
        self.assertEqual(options.max_frame, 64 * 1024 * 1024)
        self.assertEqual(options.module, [])

    def test_environment_sets_beat_and_max_frame(self):
        options = entry.parse_args([], {"PYFLEET_BEAT_MS": "250", "PYFLEET_MAX_FRAME": "4096"})
        self.assertEqual((options.beat_ms, options.max_frame), (250, 4096))

    def test_flags_win_over_the_environment(self):
        options = entry.parse_args(["--beat-ms", "0", "--max-frame", "1024", "--module", "a",
                                    "--module", "b.py"],
                                   {"PYFLEET_BEAT_MS": "250", "PYFLEET_MAX_FRAME": "4096"})
        self.assertEqual((options.beat_ms, options.max_frame), (0, 1024))
        self.assertEqual(options.module, ["a", "b.py"])


class ExitTest(BridgeTestCase):

    def test_end_of_input_exits_0(self):
        bridge = self.start()
        self.assertTrue(bridge.call(1, "ping")["ok"])
        bridge.close_stdin()
        self.assertEqual(bridge.wait_exit(), EXIT_OK)
        self.assertIsNone(bridge.recv_any())

    def test_end_of_input_exits_0_while_beating(self):
        bridge = self.start(beat_ms=20)
        bridge.close_stdin()
        self.assertEqual(bridge.wait_exit(), EXIT_OK)

    def test_oversized_length_exits_at_once_without_waiting_for_the_body(self):
        bridge = self.start()
        # stdin stays open and no body follows: a reader that trusted the
        # length would block (or allocate 4 GiB) instead of exiting.
        bridge.send_raw(b"\xff\xff\xff\xff")
        self.assertEqual(bridge.wait_exit(), EXIT_PROTOCOL)
        self.assertIn("exceeds the limit", bridge.wait_stderr_closed())

    def test_max_frame_flag_sets_the_input_limit(self):
        bridge = self.start("--max-frame", "1000")
        self.assertTrue(bridge.call(1, "echo", {"b": b"x" * 900})["ok"])
        bridge.send_raw((1001).to_bytes(4, "big"))
        self.assertEqual(bridge.wait_exit(), EXIT_PROTOCOL)
        self.assertIn("1001", bridge.wait_stderr_closed())

    def test_max_frame_from_the_environment_sets_the_input_limit(self):
        bridge = self.start(env={"PYFLEET_MAX_FRAME": "1000"})
        bridge.send_raw((1001).to_bytes(4, "big"))
        self.assertEqual(bridge.wait_exit(), EXIT_PROTOCOL)

    def test_input_ending_inside_a_frame_exits_non_zero(self):
        bridge = self.start()
        bridge.send_raw(frame(pack({"id": 1, "cmd": "ping"}))[:-3])
        bridge.close_stdin()
        self.assertEqual(bridge.wait_exit(), EXIT_PROTOCOL)
        self.assertIn("end of file", bridge.wait_stderr_closed())

    def test_closed_reply_pipe_exits_5(self):
        bridge = self.start()
        bridge.process.stdout.close()
        bridge.request(1, "ping")
        self.assertEqual(bridge.wait_exit(), EXIT_REPLY_PIPE)

    def test_bad_settings_exit_2(self):
        for args, env in ((["--beat-ms", "soon"], {}), ([], {"PYFLEET_MAX_FRAME": "-5"}),
                          (["--no-such-flag"], {})):
            bridge = self.start(*args, env=env, ready=False)
            self.assertEqual(bridge.wait_exit(), EXIT_USAGE, (args, env))


class SignalTest(BridgeTestCase):

    def test_sigterm_during_a_long_request_exits_within_a_second(self):
        bridge = self.start(beat_ms=50)
        bridge.request(3, "sleep", {"seconds": 3600})
        bridge.recv_beat(predicate=lambda b: b["busy"] == 3)
        bridge.signal(signal.SIGTERM)
        status = bridge.wait_exit(timeout=1.0)
        self.assertIn(status, (0, -signal.SIGTERM))

    def test_sigusr1_dumps_the_stack_of_the_running_handler_and_carries_on(self):
        bridge = self.start("--module", fixture("faults.py"), beat_ms=50)
        bridge.request(4, "hang", {"seconds": 2})
        bridge.recv_beat(predicate=lambda b: b["busy"] == 4)
        bridge.signal(signal.SIGUSR1)
        text = bridge.wait_stderr("hang_forever_here")
        self.assertIn("faults.py", text)
        # The dump does not stop the handler: the request still completes.
        self.assertEqual(bridge.recv(), {"id": 4, "ok": True, "result": {"hung": True}})


if __name__ == "__main__":
    unittest.main()
