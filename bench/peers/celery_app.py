"""The Celery 5 application of the benchmark: one task, broker and results in redis.

The redis URL comes from $BENCH_REDIS_URL (bench/bench.py starts a private
redis-server on a free loopback port).  Like every other system, the task
takes the msgpack-encoded arguments and returns the msgpack-encoded result;
pickle carries those bytes (Celery's JSON serializer cannot carry bytes).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import msgpack  # noqa: E402
from celery import Celery  # noqa: E402

import workload  # noqa: E402

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

app = Celery("bench", broker=URL, backend=URL)
app.conf.update(
    task_serializer="pickle",
    result_serializer="pickle",
    accept_content=["pickle"],
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name="bench.run")
def run(cmd, data):
    result = workload.HANDLERS[cmd](msgpack.unpackb(data, raw=False))
    return msgpack.packb(result, use_bin_type=True)
