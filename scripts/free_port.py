"""Free TCP ports on 127.0.0.1 for tests, benchmarks and the demo.

A port the kernel hands out for bind(0) is one it may also give any
outgoing connection before our daemon binds it ("Address already in use",
seen in CI), so ports come from below the kernel's ephemeral range, and a
process never gets the same port twice.

As a program: prints COUNT (default 1) free ports, one per line.
"""

import os
import random
import socket
import sys
import time

_handed_out = set()
_rng = random.Random(os.getpid() ^ time.monotonic_ns())


def free_port():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(1000):
        port = _rng.randrange(10000, max(low, 10001))
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port below %d" % low)


if __name__ == "__main__":
    for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 1):
        print(free_port())
