"""Invariant soak: every accepted request gets exactly one terminal answer.

20 000 requests (PYFLEET_SOAK_REQUESTS to change it) mixing plain calls,
sessions, raising handlers, handlers sleeping past their deadline and
bridges killing themselves, 128 in flight over 2 agents x 2 bridges."""

import collections
import os
import random
import time
import unittest

from tests.integration.fleet import FIXTURES, Fleet

MODULES = [os.path.join(FIXTURES, "faults.py"), os.path.join(FIXTURES, "broker_cmds.py")]
TERMINAL = {"OK", "PYTHON_ERROR", "TIMEOUT", "BRIDGE_CRASHED", "SESSION_LOST", "WORKER_LOST",
            "BUSY"}


class Soak(unittest.TestCase):
    def test_every_request_gets_exactly_one_terminal_answer(self):
        total = int(os.environ.get("PYFLEET_SOAK_REQUESTS", "20000"))
        window = 128
        rng = random.Random(7)
        fleet = Fleet()
        try:
            fleet.start_broker()
            for _ in range(2):
                fleet.start_worker(bridges=2, modules=MODULES)
            client = fleet.client()
            expected = {}
            answers = collections.Counter()
            codes = collections.Counter()
            sent = 0
            start = time.monotonic()
            deadline = start + 240
            while (sent < total or len(answers) < sent) and time.monotonic() < deadline:
                while sent < total and sent - len(answers) < window:
                    roll = rng.random()
                    if roll < 0.003:
                        kind, args = ("kill_self", {}), {}
                    elif roll < 0.006:
                        kind, args = ("sleep_pid", {"seconds": 0.5}), {"timeout_ms": 150}
                    elif roll < 0.08:
                        kind, args = ("raise_error", {}), {}
                    elif roll < 0.33:
                        kind, args = ("counter", {}), {"session": "s%d" % rng.randrange(100)}
                    else:
                        kind, args = ("echo", {"i": sent}), {}
                    request_id = client.send_request("test", kind[0], kind[1],
                                                     timeout_ms=args.get("timeout_ms", 10000),
                                                     session=args.get("session", ""))
                    expected[request_id] = kind[0]
                    sent += 1
                reply = client.recv(timeout=15)
                self.assertIn(reply["id"], expected, "an answer for a request never sent")
                answers[reply["id"]] += 1
                codes["OK" if reply["ok"] else reply["code"]] += 1
            elapsed = time.monotonic() - start
            client.close()
        finally:
            statuses = fleet.stop()
        duplicated = [i for i, n in answers.items() if n > 1]
        missing = [i for i in expected if i not in answers]
        print("\nsoak: %d requests in %.1f s; answers by code: %s"
              % (total, elapsed, dict(sorted(codes.items()))))
        self.assertEqual(duplicated, [])
        self.assertEqual(missing, [])
        self.assertEqual(sum(codes.values()), total)
        self.assertLessEqual(set(codes), TERMINAL)
        self.assertGreater(codes["OK"], total * 0.8)
        self.assertEqual(statuses, [0, 0, 0])


if __name__ == "__main__":
    unittest.main()
