"""Per-session state, the session_end command and hooks, the handler context."""

import os
import shutil
import tempfile
import textwrap
import unittest

from support import BridgeTestCase, fixture

FAILING_HOOKS = """
    from pyfleet_bridge import command, on_session_end

    calls = []

    @on_session_end
    def first_hook_fails(session_id, state):
        calls.append("first")
        raise KeyError("missing program")

    @on_session_end
    def second_hook_still_runs(session_id, state):
        calls.append("second")

    @command
    def hook_calls(args, ctx):
        return calls

    @command
    def touch(args, ctx):
        ctx.state["touched"] = True
        return True
"""


class SessionStateTest(BridgeTestCase):

    def setUp(self):
        super().setUp()
        self.bridge = self.start("--module", fixture("faults.py"),
                                 "--module", fixture("sessions.py"))

    def test_state_persists_across_the_requests_of_one_session(self):
        counts = [self.bridge.call(n, "counter", session="s1")["result"]["n"] for n in range(1, 4)]
        self.assertEqual(counts, [1, 2, 3])

    def test_sessions_do_not_share_state(self):
        self.bridge.call(1, "counter", session="a")
        self.bridge.call(2, "counter", session="a")
        self.assertEqual(self.bridge.call(3, "counter", session="b")["result"]["n"], 1)
        self.assertEqual(self.bridge.call(4, "counter", session="a")["result"]["n"], 3)

    def test_requests_without_a_session_get_a_fresh_state_each_time(self):
        self.assertEqual(self.bridge.call(1, "counter")["result"]["n"], 1)
        self.assertEqual(self.bridge.call(2, "counter")["result"]["n"], 1)
        self.assertEqual(self.bridge.call(3, "counter", session="")["result"]["n"], 1)

    def test_stats_count_live_sessions(self):
        self.bridge.call(1, "counter", session="a")
        self.bridge.call(2, "counter", session="b")
        self.bridge.call(3, "counter")
        self.assertEqual(self.bridge.call(4, "stats")["result"]["sessions"], 2)
        self.bridge.call(5, "session_end", {"session": "a"})
        self.assertEqual(self.bridge.call(6, "stats")["result"]["sessions"], 1)

    def test_session_end_drops_the_state_and_runs_the_hook_with_it(self):
        self.bridge.call(1, "remember", {"key": "lm", "value": "gpt"}, session="s1")
        reply = self.bridge.call(2, "session_end", {"session": "s1"})
        self.assertEqual(reply["result"], {"ended": True})
        ended = self.bridge.call(3, "ended_sessions")["result"]
        self.assertEqual(ended, [{"session": "s1", "state": {"lm": "gpt"}}])
        # A new request of the same session starts from empty state.
        self.assertEqual(self.bridge.call(4, "remember", {"key": "k", "value": 1},
                                          session="s1")["result"], {"k": 1})

    def test_session_end_sent_in_a_session_cannot_end_another(self):
        self.bridge.call(1, "remember", {"key": "k", "value": 1}, session="victim")
        reply = self.bridge.call(2, "session_end", {"session": "victim"}, session="mine")
        self.assertFalse(reply["ok"])
        self.assertEqual(reply["error"]["type"], "BadRequest")
        self.assertIn("cannot end session 'victim'", reply["error"]["message"])
        self.assertEqual(self.bridge.call(3, "ended_sessions")["result"], [])
        # Naming its own session is the same as naming none.
        reply = self.bridge.call(4, "session_end", {"session": "mine"}, session="mine")
        self.assertEqual(reply["result"], {"ended": False})

    def test_session_end_defaults_to_the_requests_own_session(self):
        self.bridge.call(1, "counter", session="own")
        reply = self.bridge.call(2, "session_end", session="own")
        self.assertEqual(reply["result"], {"ended": True})
        self.assertEqual(self.bridge.call(3, "ended_sessions")["result"][0]["session"], "own")

    def test_ending_an_unknown_session_reports_false_and_runs_no_hook(self):
        reply = self.bridge.call(1, "session_end", {"session": "never-seen"}, session="never-seen")
        self.assertEqual(reply["result"], {"ended": False})
        self.assertEqual(self.bridge.call(2, "ended_sessions")["result"], [])
        self.assertEqual(self.bridge.call(3, "stats")["result"]["sessions"], 0)

    def test_session_end_without_any_session_is_a_bad_request(self):
        self.assertErrorReply(self.bridge.call(1, "session_end"), 1, "BAD_REQUEST", "BadRequest")
        self.assertErrorReply(self.bridge.call(2, "session_end", {"session": 5}), 2,
                              "BAD_REQUEST", "BadRequest")


class FailingHookTest(BridgeTestCase):

    def test_a_failing_hook_is_reported_but_the_session_still_ends(self):
        directory = tempfile.mkdtemp(prefix="pyfleet-hooks-")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "failing_hooks.py")
        with open(path, "w") as file:
            file.write(textwrap.dedent(FAILING_HOOKS))
        bridge = self.start("--module", path)
        bridge.call(1, "touch", session="s")
        error = self.assertErrorReply(bridge.call(2, "session_end", {"session": "s"}), 2,
                                      "PYTHON_ERROR", "KeyError")
        self.assertIn("first_hook_fails", error["traceback"])
        self.assertEqual(bridge.call(3, "hook_calls")["result"], ["first", "second"])
        self.assertEqual(bridge.call(4, "stats")["result"]["sessions"], 0)
        self.assertEqual(bridge.call(5, "session_end", {"session": "s"})["result"],
                         {"ended": False})


class ContextTest(BridgeTestCase):

    def test_handler_context_carries_request_session_command_state_and_logger(self):
        bridge = self.start("--module", fixture("sessions.py"))
        bridge.call(6, "remember", {"key": "x", "value": 1}, session="ctx")
        result = bridge.call(7, "context", session="ctx")["result"]
        self.assertEqual(result, {"request_id": 7, "session_id": "ctx", "command": "context",
                                  "state": {"x": 1}, "log": "Logger"})
        self.assertIsNone(bridge.call(8, "context")["result"]["session_id"])
        bridge.wait_stderr("context requested for request 7")

    def test_startup_hook_runs_once_before_ready(self):
        bridge = self.start("--module", fixture("sessions.py"))
        self.assertEqual(bridge.call(1, "startup_calls")["result"], 1)


if __name__ == "__main__":
    unittest.main()
