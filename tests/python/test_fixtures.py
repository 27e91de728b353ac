"""The fault fixtures do what the agent's integration tests rely on."""

import os
import signal
import unittest

from support import BridgeTestCase, fixture

MIB_IN_KB = 1024


class FaultFixtureTest(BridgeTestCase):

    def setUp(self):
        super().setUp()
        self.bridge = self.start("--module", fixture("faults.py"))

    def test_crash_exit_exits_with_status_7(self):
        self.bridge.request(1, "crash_exit")
        self.assertEqual(self.bridge.wait_exit(), 7)
        self.assertIsNone(self.bridge.recv_any())

    def test_crash_segv_dies_of_sigsegv_with_a_fatal_error_dump(self):
        self.bridge.request(1, "crash_segv")
        self.assertEqual(self.bridge.wait_exit(), -signal.SIGSEGV)
        text = self.bridge.wait_stderr_closed()
        self.assertIn("Segmentation fault", text)
        self.assertIn("crash_segv", text)

    def test_kill_self_dies_of_sigkill(self):
        self.bridge.request(1, "kill_self")
        self.assertEqual(self.bridge.wait_exit(), -signal.SIGKILL)

    def test_garbage_output_puts_a_frame_that_is_not_msgpack_on_the_stream(self):
        self.bridge.request(1, "garbage_output")
        self.assertEqual(self.bridge.read_raw(16), b"\x00\x00\x00\x0c\xc1\xc1\xc1\xc1 garbage")

    def test_huge_length_puts_a_4_gib_header_on_the_stream(self):
        self.bridge.request(1, "huge_length")
        self.assertEqual(self.bridge.read_raw(4), b"\xff\xff\xff\xff")

    def test_grow_memory_raises_resident_memory(self):
        before = self.bridge.call(1, "stats")["result"]["rss_kb"]
        result = self.bridge.call(2, "grow_memory", {"mb": 30})["result"]
        self.assertEqual(result["held_mb"], 30)
        self.assertGreater(result["rss_kb"], before + 25 * MIB_IN_KB)

    def test_fork_grandchild_leaves_a_child_in_the_bridge_process_group(self):
        child = self.bridge.call(1, "fork_grandchild")["result"]["child"]
        self.assertNotEqual(child, self.bridge.pid)
        self.assertEqual(os.getpgid(child), os.getpgid(self.bridge.pid))
        self.assertTrue(self.bridge.call(2, "ping")["ok"])

    def test_counter_counts_per_session_and_names_the_process(self):
        self.assertEqual(self.bridge.call(1, "counter", session="s")["result"],
                         {"n": 1, "pid": self.bridge.pid})
        self.assertEqual(self.bridge.call(2, "counter", session="s")["result"]["n"], 2)

    def test_set_value_is_seen_by_later_get_value(self):
        self.assertIsNone(self.bridge.call(1, "get_value")["result"]["value"])
        self.bridge.call(2, "set_value", {"value": {"lm": "gpt-4o"}})
        self.assertEqual(self.bridge.call(3, "get_value")["result"],
                         {"value": {"lm": "gpt-4o"}, "pid": self.bridge.pid})


if __name__ == "__main__":
    unittest.main()
