"""Gearman load driver: N jobs, C in flight, on one pipelined connection.

Usage: gearman_client.py HOST PORT --count N --concurrency C --cmd echo|burn
[--size BYTES] [--ms MS].  Prints one JSON object with the fields of
`pyfleet call --json` (requests, errors, req_per_s, p50_us, p99_us, max_us).
"""

import argparse
import json
import os
import sys
import time
from collections import deque

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import msgpack  # noqa: E402

import workload  # noqa: E402
from peers import gearman_proto as g  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("host")
    p.add_argument("port", type=int)
    o, data = workload.driver_options(p)
    function = o.cmd.encode()
    conn = g.Connection(o.host, o.port)
    clock = time.perf_counter
    awaiting_handle = deque()   # send times, in submission order
    running = {}                # handle -> send time
    latencies = []
    errors = 0
    sent = done = 0
    start = clock()
    while done < o.count:
        batch = []
        while sent < o.count and sent - done < o.concurrency:
            sent += 1
            batch.append(g.packet(g.SUBMIT_JOB, function, b"%d" % sent, data))
            awaiting_handle.append(clock())
        if batch:
            conn.send(b"".join(batch))
        for ptype, body in conn.packets():
            if ptype == g.JOB_CREATED:
                running[body] = awaiting_handle.popleft()
            elif ptype == g.WORK_COMPLETE:
                handle, result = body.split(b"\0", 1)
                t0 = running.pop(handle)
                msgpack.unpackb(result, raw=False)
                latencies.append((clock() - t0) * 1e6)
                done += 1
            elif ptype == g.WORK_FAIL:
                running.pop(body, None)
                errors += 1
                done += 1
            elif ptype == g.ERROR:
                print("gearman client: server error %r" % body, file=sys.stderr)
                return 1
    elapsed = clock() - start
    print(json.dumps(workload.summarize(latencies, errors, elapsed)))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
