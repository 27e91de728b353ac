"""A Gearman worker process for the benchmark: serves `echo` and `burn`.

Usage: gearman_worker.py HOST PORT.  The job data is the msgpack-encoded
arguments; the worker decodes them, runs the shared workload function
(bench/workload.py) and answers the msgpack-encoded result, as a pyfleet
bridge does.  Runs until gearmand closes the connection or it is killed.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import msgpack  # noqa: E402

import workload  # noqa: E402
from peers import gearman_proto as g  # noqa: E402


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    conn = g.Connection(host, port, timeout=None)
    for name in workload.HANDLERS:
        conn.send(g.packet(g.CAN_DO, name.encode()))
    conn.send(g.packet(g.GRAB_JOB))
    while True:
        try:
            packets = conn.packets()
        except g.GearmanError:
            return 0
        for ptype, body in packets:
            if ptype == g.JOB_ASSIGN:
                handle, function, data = body.split(b"\0", 2)
                try:
                    result = workload.HANDLERS[function.decode()](msgpack.unpackb(data, raw=False))
                    reply = g.packet(g.WORK_COMPLETE, handle, msgpack.packb(result, use_bin_type=True))
                except Exception:
                    reply = g.packet(g.WORK_FAIL, handle)
                conn.send(reply + g.packet(g.GRAB_JOB))
            elif ptype == g.NO_JOB:
                conn.send(g.packet(g.PRE_SLEEP))
            elif ptype == g.NOOP:
                conn.send(g.packet(g.GRAB_JOB))
            elif ptype == g.ERROR:
                print("gearman worker: server error %r" % body, file=sys.stderr)
                return 1


if __name__ == "__main__":
    sys.exit(main())
