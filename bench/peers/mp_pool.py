"""multiprocessing.Pool(2) load driver: N tasks, C in flight via apply_async.

Usage: mp_pool.py --count N --concurrency C --cmd echo|burn [--size B] [--ms MS]
[--workers 2].  Each task ships the msgpack-encoded arguments and gets the
msgpack-encoded result back, so the worker does the codec work a bridge
does (on top of the pickling Pool itself does).  Prints one JSON object
with the fields of `pyfleet call --json`.
"""

import argparse
import json
import multiprocessing
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import msgpack  # noqa: E402

import workload  # noqa: E402


def run(cmd, data):
    """The task: decode, run the workload function, encode (in a pool process)."""
    result = workload.HANDLERS[cmd](msgpack.unpackb(data, raw=False))
    return msgpack.packb(result, use_bin_type=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workers", type=int, default=2)
    o, data = workload.driver_options(p)
    clock = time.perf_counter
    slots = threading.Semaphore(o.concurrency)
    lock = threading.Lock()
    finished = threading.Event()
    latencies = []
    errors = [0]
    done = [0]

    def complete(t0, failed):
        with lock:
            if failed:
                errors[0] += 1
            else:
                latencies.append((clock() - t0) * 1e6)
            done[0] += 1
            if done[0] == o.count:
                finished.set()
        slots.release()

    with multiprocessing.Pool(o.workers) as pool:
        pool.apply(os.getpid)  # the workers are up before the clock starts
        start = clock()
        for _ in range(o.count):
            if not slots.acquire(timeout=60):
                print("mp_pool: no task finished within 60 s", file=sys.stderr)
                return 1
            t0 = clock()
            pool.apply_async(run, (o.cmd, data),
                             callback=lambda r, t0=t0: complete(t0, False),
                             error_callback=lambda e, t0=t0: complete(t0, True))
        if not finished.wait(timeout=120):
            print("mp_pool: tasks still running after 120 s", file=sys.stderr)
            return 1
        elapsed = clock() - start
    print(json.dumps(workload.summarize(latencies, errors[0], elapsed)))
    return 1 if errors[0] else 0


if __name__ == "__main__":
    sys.exit(main())
