"""Loading user code with --module: by path, by dotted name, and failures."""

import os
import shutil
import tempfile
import textwrap
import unittest

from support import FIXTURES, BridgeTestCase, fixture

EXIT_STARTUP = 3


class ModuleLoadingTest(BridgeTestCase):

    def setUp(self):
        super().setUp()
        self.directory = tempfile.mkdtemp(prefix="pyfleet-modules-")
        self.addCleanup(shutil.rmtree, self.directory, True)

    def write_module(self, name, source):
        path = os.path.join(self.directory, name)
        with open(path, "w") as file:
            file.write(textwrap.dedent(source))
        return path

    def test_module_loads_by_path(self):
        bridge = self.start("--module", "tests/fixtures/faults.py")
        self.assertEqual(bridge.call(1, "counter")["result"]["n"], 1)

    def test_module_loads_by_dotted_name(self):
        bridge = self.start("--module", "fixture_pkg.named", python_path=[FIXTURES])
        self.assertIn("named_hello", bridge.ready["commands"])
        reply = bridge.call(1, "named_hello", {"name": "pyfleet"})
        self.assertEqual(reply["result"], {"hello": "pyfleet", "module": "fixture_pkg.named"})

    def test_several_modules_load_in_one_bridge(self):
        bridge = self.start("--module", fixture("faults.py"), "--module", fixture("sessions.py"),
                            "--module", "fixture_pkg.named", python_path=[FIXTURES])
        for name in ("raise_error", "ended_sessions", "named_hello", "ping"):
            self.assertIn(name, bridge.ready["commands"])

    def test_a_path_module_can_import_its_siblings(self):
        self.write_module("helper_for_pyfleet_test.py", "VALUE = 41\n")
        path = self.write_module("uses_helper.py", """
            from pyfleet_bridge import command
            import helper_for_pyfleet_test

            @command
            def answer(args, ctx):
                return helper_for_pyfleet_test.VALUE + 1
        """)
        bridge = self.start("--module", path)
        self.assertEqual(bridge.call(1, "answer")["result"], 42)

    def test_printing_during_import_does_not_corrupt_the_stream(self):
        path = self.write_module("noisy.py", """
            import os
            print("noisy module says hello")
            os.write(1, b"noisy module wrote to fd 1\\n")
        """)
        bridge = self.start("--module", path)
        self.assertTrue(bridge.call(1, "ping")["ok"])
        bridge.wait_stderr("noisy module wrote to fd 1")

    def test_import_failure_exits_3_with_the_traceback_on_stderr(self):
        bridge = self.start("--module", fixture("bad_import.py"), ready=False)
        self.assertEqual(bridge.wait_exit(), EXIT_STARTUP)
        text = bridge.wait_stderr_closed()
        self.assertIn("Traceback", text)
        self.assertIn("RuntimeError: fixture import failure", text)
        self.assertIn("bad_import.py", text)
        self.assertIsNone(bridge.recv_any(), "no ready frame after a failed import")

    def test_missing_module_file_exits_3(self):
        bridge = self.start("--module", "tests/fixtures/no_such_file.py", ready=False)
        self.assertEqual(bridge.wait_exit(), EXIT_STARTUP)
        self.assertIn("no_such_file.py", bridge.wait_stderr_closed())

    def test_unknown_dotted_module_exits_3(self):
        bridge = self.start("--module", "no_such_package.no_such_module", ready=False)
        self.assertEqual(bridge.wait_exit(), EXIT_STARTUP)
        self.assertIn("ModuleNotFoundError", bridge.wait_stderr_closed())

    def test_syntax_error_in_a_module_exits_3(self):
        path = self.write_module("broken_syntax.py", "def broken(:\n")
        bridge = self.start("--module", path, ready=False)
        self.assertEqual(bridge.wait_exit(), EXIT_STARTUP)
        self.assertIn("SyntaxError", bridge.wait_stderr_closed())

    def test_two_handlers_for_one_command_name_exit_3(self):
        path = self.write_module("duplicate.py", """
            from pyfleet_bridge import command

            @command("ping")
            def my_ping(args, ctx):
                return "mine"
        """)
        bridge = self.start("--module", path, ready=False)
        self.assertEqual(bridge.wait_exit(), EXIT_STARTUP)
        self.assertIn("command 'ping' is already registered", bridge.wait_stderr_closed())

    def test_failing_startup_hook_exits_3(self):
        path = self.write_module("bad_startup.py", """
            from pyfleet_bridge import on_startup

            @on_startup
            def explode():
                raise OSError("no GPU here")
        """)
        bridge = self.start("--module", path, ready=False)
        self.assertEqual(bridge.wait_exit(), EXIT_STARTUP)
        self.assertIn("OSError: no GPU here", bridge.wait_stderr_closed())

    def test_a_user_file_named_like_a_standard_module_does_not_replace_it(self):
        path = self.write_module("json.py", """
            from pyfleet_bridge import command

            @command
            def json_is_stdlib(args, ctx):
                import json
                return hasattr(json, "dumps")
        """)
        bridge = self.start("--module", path)
        self.assertIs(bridge.call(1, "json_is_stdlib")["result"], True)


if __name__ == "__main__":
    unittest.main()
