"""Celery load driver: N tasks, C in flight, results from the redis backend.

Usage (with $BENCH_REDIS_URL set): celery_client.py --count N --concurrency C
--cmd echo|burn [--size B] [--ms MS].  Results are collected oldest first;
a task's latency is from its send to the moment its result is read, so a
slow task ahead of it adds to it (Celery's result API is per task).
Prints one JSON object with the fields of `pyfleet call --json`.
"""

import argparse
import json
import os
import sys
import time
from collections import deque

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import msgpack  # noqa: E402

import workload  # noqa: E402
from celery_app import run  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    o, data = workload.driver_options(p)
    clock = time.perf_counter
    run.apply_async(("echo", msgpack.packb({}))).get(timeout=60)  # warm: workers are consuming
    pending = deque()
    latencies = []
    errors = 0
    sent = 0
    start = clock()
    while sent < o.count or pending:
        while sent < o.count and len(pending) < o.concurrency:
            pending.append((clock(), run.apply_async((o.cmd, data))))
            sent += 1
        t0, result = pending.popleft()
        try:
            msgpack.unpackb(result.get(timeout=60), raw=False)
            latencies.append((clock() - t0) * 1e6)
        except Exception as exc:  # a failed task or a timeout counts as an error
            print("celery client: %s: %s" % (type(exc).__name__, exc), file=sys.stderr)
            errors += 1
        result.forget()
    elapsed = clock() - start
    print(json.dumps(workload.summarize(latencies, errors, elapsed)))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
