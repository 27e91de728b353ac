"""pyfleet_bridge.dspex: the DSPex command set on a bridge (DESIGN §9).

dspy itself is not packaged for Debian and a real LM needs keys, so the
programs run on tests/fixtures/fake_dspy, whose LMs answer with their model
name: what is checked is this module's bookkeeping (namespaces per session,
the LM a request uses, validation, counters), and that without dspy it
still loads and says why each DSPy command cannot run.
"""

import unittest

from support import BridgeTestCase, fixture

MODULE = "pyfleet_bridge.dspex"
FAKE_DSPY = fixture("fake_dspy")
QA = {"inputs": [{"name": "question", "description": "a question"}],
      "outputs": [{"name": "answer"}, {"name": "confidence", "type": "float"}]}


class WithoutDspy(BridgeTestCase):
    def setUp(self):
        super().setUp()
        self.bridge = self.start("--module", MODULE)

    def test_the_module_loads_and_dspy_commands_say_which_interpreter_lacks_it(self):
        stats = self.bridge.call(1, "get_stats")["result"]
        self.assertFalse(stats["dspy_available"])
        self.assertIsNone(stats["dspy_version"])
        for request_id, (cmd, args) in enumerate([
                ("configure_lm", {"model": "openai/gpt-4o-mini"}),
                ("create_program", {"program_id": "p", "signature": QA})], start=2):
            reply = self.bridge.call(request_id, cmd, args, session="s")
            self.assertErrorReply(reply, request_id, "PYTHON_ERROR", "DspyUnavailable")
            self.assertIn("dspy is not importable by", reply["error"]["message"])
            self.assertIn("pip install dspy", reply["error"]["message"])
        # Bookkeeping needs no dspy.
        self.assertEqual(self.bridge.call(4, "list_programs", session="s")["result"]["total_count"], 0)


class WithDspy(BridgeTestCase):
    def setUp(self):
        super().setUp()
        self.bridge = self.start("--module", MODULE, python_path=[FAKE_DSPY])
        self.next_id = 1

    def call(self, cmd, args=None, session=None):
        self.next_id += 1
        return self.bridge.call(self.next_id, cmd, args, session=session)

    def ok(self, cmd, args=None, session=None):
        reply = self.call(cmd, args, session)
        self.assertTrue(reply["ok"], reply)
        return reply["result"]

    def bad(self, cmd, args=None, session=None, message=""):
        reply = self.call(cmd, args, session)
        self.assertErrorReply(reply, self.next_id, "BAD_REQUEST")
        self.assertIn(message, reply["error"]["message"])
        return reply

    def test_a_program_runs_in_its_session_with_that_sessions_lm(self):
        configured = self.ok("configure_lm", {"model": "gemini-1.5-flash", "provider": "gemini",
                                              "temperature": 0.2}, session="s1")
        self.assertEqual(configured, {"status": "configured", "model": "gemini/gemini-1.5-flash",
                                      "scope": "session", "temperature": 0.2})
        created = self.ok("create_program", {"id": "qa", "signature": QA}, session="s1")
        self.assertEqual((created["status"], created["program_id"]), ("created", "qa"))
        self.assertEqual((created["inputs"], created["outputs"]), (["question"], ["answer", "confidence"]))
        result = self.ok("execute_program", {"program_id": "qa", "inputs": {"question": "why?"}},
                         session="s1")
        self.assertEqual(result["outputs"]["answer"],
                         "gemini/gemini-1.5-flash: answer for question=why?")
        self.assertIsInstance(result["outputs"]["confidence"], float)
        self.assertGreaterEqual(result["execution_ms"], 0)
        info = self.ok("get_program_info", {"program_id": "qa"}, session="s1")
        self.assertEqual(info["execution_count"], 1)
        self.assertIsNotNone(info["last_executed"])

    def test_sessions_do_not_see_each_others_programs_or_lm(self):
        self.ok("configure_lm", {"model": "openai/a"}, session="s1")
        self.ok("create_program", {"program_id": "qa", "signature": QA}, session="s1")
        self.bad("execute_program", {"program_id": "qa", "inputs": {"question": "x"}},
                 session="s2", message="no program 'qa' in session 's2'")
        self.ok("create_program", {"program_id": "qa", "signature": QA}, session="s2")
        self.bad("execute_program", {"program_id": "qa", "inputs": {"question": "x"}},
                 session="s2", message="no LM configured in session 's2'")
        # The bridge's default LM (configure_lm in no session) serves s2 now.
        self.assertEqual(self.ok("configure_lm", {"model": "openai/default"})["scope"], "bridge")
        out = self.ok("execute_program", {"program_id": "qa", "inputs": {"question": "x"}},
                      session="s2")["outputs"]["answer"]
        self.assertTrue(out.startswith("openai/default:"), out)
        out = self.ok("execute_program", {"program_id": "qa", "inputs": {"question": "x"}},
                      session="s1")["outputs"]["answer"]
        self.assertTrue(out.startswith("openai/a:"), out)
        self.assertEqual(self.ok("list_programs", session="s1")["total_count"], 1)

    def test_a_string_signature_and_chain_of_thought(self):
        self.ok("configure_lm", {"model": "openai/m"}, session="s")
        self.ok("create_program", {"program_id": "cot", "signature": "context, question -> answer",
                                   "program_type": "chain_of_thought"}, session="s")
        result = self.ok("execute_program", {"program_id": "cot",
                                             "inputs": {"context": "c", "question": "q"}}, session="s")
        self.assertEqual(result["outputs"], {"answer": "openai/m: answer for context=c, question=q"})
        self.assertEqual(result["reasoning"], "step by step")

    def test_bad_arguments_are_bad_requests_naming_what_is_wrong(self):
        self.bad("create_program", {"signature": QA}, session="s", message="program_id is required")
        self.bad("create_program", {"program_id": "p", "signature": QA, "program_type": "react"},
                 session="s", message="program_type must be one of predict, chain_of_thought")
        for fields, message in [
                ([{"name": "1x"}], "'1x' is not a Python identifier"),
                ([{"name": "a-b"}], "'a-b' is not a Python identifier"),
                ([{"name": "a", "type": "tensor"}], "unknown type 'tensor'"),
                ([], "must be a non-empty list")]:
            self.bad("create_program", {"program_id": "p", "signature": {
                "inputs": fields, "outputs": ["answer"]}}, session="s", message=message)
        self.bad("create_program", {"program_id": "p", "signature": "no arrow"}, session="s",
                 message="must look like 'question -> answer'")
        self.bad("create_program", {"program_id": "p", "signature": "a -> a"}, session="s",
                 message="must be distinct")
        self.bad("create_program", [1, 2], session="s", message="arguments must be a map")
        self.ok("create_program", {"program_id": "p", "signature": QA}, session="s")
        self.bad("create_program", {"program_id": "p", "signature": QA}, session="s",
                 message="program 'p' exists in session 's'")
        self.ok("create_program", {"program_id": "p", "signature": "q -> a", "replace": True},
                session="s")
        self.bad("execute_program", {"program_id": "p", "inputs": {}}, session="s",
                 message="missing q")
        self.bad("execute_program", {"program_id": "p", "inputs": {"q": 1, "z": 2}}, session="s",
                 message="unknown z")
        self.bad("configure_lm", {"model": "openai/m", "temperature": "hot"}, session="s",
                 message="temperature has the wrong type")
        self.bad("configure_lm", {}, session="s", message="model is required")
        self.bad("cleanup_session", {"session_id": "other"}, session="s",
                 message="cleans the session it is sent in")

    def test_an_lm_that_fails_its_test_call_is_a_python_error_not_a_success(self):
        reply = self.call("configure_lm", {"model": "openai/m", "api_key": "wrong", "test": True},
                          session="s")
        self.assertErrorReply(reply, self.next_id, "PYTHON_ERROR", "RuntimeError")
        self.assertIn("AuthenticationError", reply["error"]["message"])
        reply = self.call("configure_lm", {"model": "no-provider"}, session="s")
        self.assertErrorReply(reply, self.next_id, "PYTHON_ERROR", "ValueError")

    def test_cleanup_delete_session_end_stats_and_reset(self):
        self.ok("configure_lm", {"model": "openai/m"})
        for session in ("s1", "s2"):
            for name in ("a", "b"):
                self.ok("create_program", {"program_id": name, "signature": QA}, session=session)
        self.ok("create_program", {"program_id": "shared", "signature": QA})
        stats = self.ok("get_stats")
        self.assertEqual((stats["programs_count"], stats["sessions_with_programs"]), (5, 2))
        self.assertTrue(stats["dspy_available"])
        self.assertEqual(stats["dspy_version"], "0.0-fake")
        self.assertEqual(stats["default_lm"], "openai/m")
        self.assertEqual(self.ok("delete_program", {"program_id": "a"}, session="s1"),
                         {"program_id": "a", "status": "deleted"})
        self.bad("get_program_info", {"program_id": "a"}, session="s1", message="no program 'a'")
        self.assertEqual(self.ok("cleanup_session", session="s1")["programs_removed"], 1)
        # A session's end frees its programs with its state.
        self.assertEqual(self.ok("session_end", session="s2"), {"ended": True})
        self.assertEqual(self.ok("get_stats")["programs_count"], 1)
        reset = self.ok("reset_state")
        self.assertEqual(reset["programs_cleared"], 1)
        self.assertGreater(reset["commands_reset"], 5)
        self.assertEqual(reset["errors_reset"], 1)
        stats = self.ok("get_stats")
        self.assertEqual((stats["programs_count"], stats["command_count"], stats["default_lm"]),
                         (0, 1, None))


if __name__ == "__main__":
    unittest.main()
