"""DSPy programs through the fleet (pyfleet_bridge.dspex, DESIGN §9), on
tests/fixtures/fake_dspy (dspy is not packaged for Debian): the failures of
the DSPex pool this replaces, end to end. A session's programs stay on its
bridge; an LM configured by broadcast reaches every bridge, also one that
replaces a crashed bridge. Real processes on 127.0.0.1; every wait bounded,
every process stopped by its pid.
"""

import os
import signal
import unittest

from tests.integration.fleet import FIXTURES, Fleet, RawClient

BROADCAST = 0x04


class DspexOnAFleet(unittest.TestCase):
    def setUp(self):
        self.fleet = Fleet()
        self.fleet.start_broker()
        self.worker = self.fleet.start_worker(
            bridges=2, modules=["pyfleet_bridge.dspex"],
            env={"PYTHONPATH": os.path.join(FIXTURES, "fake_dspy")})
        self.client = RawClient(self.fleet.endpoint)

    def tearDown(self):
        self.client.close()
        statuses = self.fleet.stop()
        self.assertTrue(all(status == 0 for status in statuses), statuses)

    def ok(self, command, args=None, session="", flags=0):
        reply = self.client.call("test", command, args, session=session, flags=flags)
        self.assertTrue(reply["ok"], reply)
        return reply["result"]

    def run_program(self, session):
        self.ok("create_program", {"program_id": "qa", "signature": "question -> answer"},
                session=session)
        result = self.ok("execute_program", {"program_id": "qa", "inputs": {"question": session}},
                         session=session)
        return result["outputs"]["answer"]

    def test_a_broadcast_lm_serves_every_session_on_every_bridge_and_a_replacement(self):
        configured = self.ok("configure_lm", {"model": "openai/fleet"}, flags=BROADCAST)
        self.assertEqual([r["result"]["scope"] for r in configured], ["bridge", "bridge"])
        sessions = ["s%d" % n for n in range(6)]
        for session in sessions:
            self.assertEqual(self.run_program(session),
                             "openai/fleet: answer for question=%s" % session)
        stats = self.ok("get_stats", flags=BROADCAST)
        self.assertEqual(sorted(r["result"]["sessions_with_programs"] for r in stats), [3, 3],
                         "idle bridges first: the sessions spread over both")
        # A bridge dies: its sessions are lost (and say so), its replacement
        # gets the broadcast again and serves new sessions with that LM.
        victim = stats[0]["result"]["pid"]
        os.kill(victim, signal.SIGKILL)
        self.worker.wait_for(r"-> ready after", count=3, timeout=15)
        self.fleet.broker.wait_for(r"2 of \d+ bridges serving", count=2, timeout=10)
        lost = 0
        for session in sessions:
            reply = self.client.call("test", "list_programs", session=session)
            if reply["ok"]:
                self.assertEqual(reply["result"]["total_count"], 1)
            else:
                self.assertEqual(reply["code"], "SESSION_LOST")
                lost += 1
        self.assertEqual(lost, 3)
        pids = {r["result"]["pid"] for r in self.ok("get_stats", flags=BROADCAST)}
        self.assertNotIn(victim, pids)
        for session in ("new1", "new2", "new3", "new4"):
            self.assertTrue(self.run_program(session).startswith("openai/fleet:"))


if __name__ == "__main__":
    unittest.main()
