"""The work every benchmarked system runs, shared so each one does exactly the same.

Plain functions of decoded msgpack arguments, with no dependency on pyfleet:
the pyfleet bridges register them through bench/commands.py, the Gearman,
multiprocessing and Celery workers call them directly.  Each system's worker
decodes the request's msgpack arguments and encodes the result, as a bridge
does, so the per-request codec work is the same everywhere.
"""

import time

MAX_BURN_MS = 10000


def echo(args):
    """Return the arguments unchanged (the throughput, latency and payload workloads)."""
    return args


def burn(args):
    """Spin until {"ms": M} milliseconds of this thread's CPU time are used.

    Thread CPU time, not wall time: a worker that is descheduled does not
    get credit for time it did not compute, so efficiency measures the
    system, not the scheduler's luck.
    """
    ms = args.get("ms", 1) if isinstance(args, dict) else 1
    if type(ms) not in (int, float) or not 0 <= ms <= MAX_BURN_MS:
        raise ValueError("burn needs 0 <= ms <= %d, got %r" % (MAX_BURN_MS, ms))
    end = time.thread_time() + ms / 1000.0
    n = 0
    while time.thread_time() < end:
        n += 1
    return {"spins": n}


HANDLERS = {"echo": echo, "burn": burn}


def payload(size):
    """The request arguments of the echo workloads: {"d": <size ASCII bytes>}."""
    return {"d": "x" * size}


def driver_options(parser):
    """Adds the load options every peer driver takes, parses the command line,
    and returns (options, the msgpack-encoded arguments of each request)."""
    import msgpack

    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--cmd", default="echo", choices=sorted(HANDLERS))
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--ms", type=float, default=1.0)
    options = parser.parse_args()
    args = payload(options.size) if options.cmd == "echo" else {"ms": options.ms}
    return options, msgpack.packb(args, use_bin_type=True)


def summarize(latencies_us, errors, elapsed_s):
    """The figures every driver prints, named like `pyfleet call --json`."""
    lat = sorted(latencies_us)
    n = len(lat)

    def pct(p):
        if not n:
            return 0
        return int(lat[min(n - 1, int(p * n))])

    return {
        "requests": n + errors,
        "errors": errors,
        "elapsed_s": elapsed_s,
        "req_per_s": (n / elapsed_s) if elapsed_s > 0 else 0.0,
        "p50_us": pct(0.50),
        "p99_us": pct(0.99),
        "max_us": int(lat[-1]) if n else 0,
    }
