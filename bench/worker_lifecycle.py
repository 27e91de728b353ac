"""Worker lifecycle measurements: start to 16 ready bridges, crash to ready
replacement (median of 20). Run from the repo root:
    PYFLEET_BUILD=build /usr/bin/python3 bench/worker_lifecycle.py
"""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.integration.fleet import FIXTURES, Fleet  # noqa: E402
from tests.integration.test_worker_agent import timestamp  # noqa: E402

fleet = Fleet()
try:
    fleet.start_broker()
    start = time.monotonic()
    fleet.start_worker(bridges=16)
    print("start to 16 ready bridges: %.2f s" % (time.monotonic() - start))
finally:
    fleet.stop()

fleet = Fleet()
try:
    fleet.start_broker()
    worker = fleet.start_worker(bridges=2, modules=[os.path.join(FIXTURES, "faults.py")])
    client = fleet.client()
    delays = []
    for number in range(20):
        client.call("test", "crash_exit")
        ready = worker.wait_for(r"-> ready after", count=3 + number, timeout=15)[-1]
        dead = worker.wait_for(r"-> dead after .*status 7", count=1 + number)[-1]
        delays.append(timestamp(ready) - timestamp(dead))
    client.close()
    print("crash to replacement ready: median %.0f ms (min %.0f, max %.0f, n=20)" % (
        statistics.median(delays) * 1000, min(delays) * 1000, max(delays) * 1000))
finally:
    fleet.stop()
