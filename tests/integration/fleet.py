"""Start and stop a real pyfleet fleet (broker + worker agents) on loopback.

Every wait is on an event (a log line, a reply) with a bounded timeout, and
every process started here is stopped by its pid in stop(). The build tree
is taken from $PYFLEET_BUILD (default: build/ at the repository root).
"""

import json
import os
import re
import resource
import shlex
import shutil
import socket
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

import msgpack
import zmq

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from free_port import free_port  # noqa: E402,F401  (shared with the bench and the demo)
BUILD = os.path.abspath(os.environ.get("PYFLEET_BUILD", os.path.join(ROOT, "build")))
BIN = os.path.join(BUILD, "bin")
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
PYTHON = "/usr/bin/python3"

ERROR_CODES = ["OK", "BAD_REQUEST", "UNKNOWN_SERVICE", "UNKNOWN_COMMAND", "BUSY", "TIMEOUT",
               "CANCELLED", "SESSION_LOST", "WORKER_LOST", "BRIDGE_CRASHED", "PYTHON_ERROR",
               "TOO_LARGE", "UNAUTHORIZED", "SHUTTING_DOWN", "INTERNAL"]


class Process:
    """A daemon whose stderr is collected line by line, so tests can wait on log events."""

    def __init__(self, name, argv, env=None, nofile=None):
        self.name = name
        wrap = shlex.split(os.environ.get("PYFLEET_WRAP", ""))
        limit = (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))) \
            if nofile else None
        self.proc = subprocess.Popen(wrap + argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env=env, preexec_fn=limit)
        self.pid = self.proc.pid
        self.lines = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def count(self, pattern):
        regex = re.compile(pattern)
        with self.cond:
            return sum(1 for line in self.lines if regex.search(line))

    def wait_for(self, pattern, count=1, timeout=10.0):
        """Waits until `count` log lines match `pattern`; returns them."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = [line for line in self.lines if regex.search(line)]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("%s: %d/%d lines matching %r within %.1f s; log tail:\n%s"
                                         % (self.name, len(found), count, pattern, timeout,
                                            "\n".join(self.lines[-30:])))
                self.cond.wait(left)

    def log(self):
        with self.cond:
            return "\n".join(self.lines)

    def signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.pid, sig)

    def stop(self, timeout=10.0):
        """SIGTERM, then SIGKILL after timeout; returns the exit status."""
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.reader.join(5)
        self.proc.stderr.close()
        return self.proc.returncode


class Fleet:
    """unix=True: the broker also serves clients on a Unix stream socket
    (--unix), and clients (client_endpoint, cli, client) use it."""

    def __init__(self, unix=False):
        self.endpoint = "tcp://127.0.0.1:%d" % free_port()
        self.mgmt = "tcp://127.0.0.1:%d" % free_port()
        self.events = "tcp://127.0.0.1:%d" % free_port()
        self.unix_path = None
        if unix:
            self.unix_dir = tempfile.mkdtemp(prefix="pyfleet-test-")
            self.unix_path = os.path.join(self.unix_dir, "broker.sock")
        self.client_endpoint = "unix://" + self.unix_path if unix else self.endpoint
        self.broker = None
        self.workers = []

    def start_broker(self, *args):
        # Own management and event ports, so brokers of parallel tests never
        # contend for the defaults (arguments given later win).
        unix = ["--unix", self.unix_path] if self.unix_path else []
        self.broker = Process("broker", [os.path.join(BIN, "pyfleet-broker"),
                                         "--bind", self.endpoint, "--mgmt", self.mgmt,
                                         "--events", self.events] + unix + list(args))
        self.broker.wait_for("listening on")
        return self.broker

    def start_worker(self, service="test", bridges=2, modules=(), args=(), wait_ready=True,
                     env=None):
        argv = [os.path.join(BIN, "pyfleet-worker"), "--broker", self.endpoint,
                "--service", service, "--bridges", str(bridges), "--python", PYTHON]
        for module in modules:
            argv += ["--module", module]
        worker = Process("worker%d" % len(self.workers), argv + list(args),
                         env=dict(os.environ, **env) if env else None)
        self.workers.append(worker)
        if wait_ready:
            worker.wait_for(r"-> ready after", count=bridges, timeout=30)
            agent = re.search(r"agent (\S+) serving", worker.wait_for(r"agent \S+ serving")[0])
            # Ready once the broker knows every bridge serves, not just the agent.
            self.broker.wait_for(r"agent %s: %d of \d+ bridges serving"
                                 % (re.escape(agent.group(1)), bridges), timeout=10)
        return worker

    def cli(self, *args, stdin=None, timeout=60):
        """Runs `pyfleet` with --broker; returns (exit status, stdout, stderr)."""
        argv = [os.path.join(BIN, "pyfleet")] + list(args[:1]) \
            + ["--broker", self.client_endpoint] + list(args[1:])
        done = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout)
        return done.returncode, done.stdout.decode(), done.stderr.decode()

    def client(self):
        return StreamClient(self.unix_path) if self.unix_path else RawClient(self.endpoint)

    def manage(self, command, args=None, timeout=5.0):
        """One PFM1 request to the broker's management endpoint: (status, body)."""
        socket = zmq.Context.instance().socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.connect(self.mgmt)
        try:
            socket.send_multipart([b"", b"PFM1", command.encode(),
                                   json.dumps(args or {}).encode()])
            if not socket.poll(int(timeout * 1000)):
                raise AssertionError("management endpoint did not answer %s" % command)
            frames = socket.recv_multipart()
        finally:
            socket.close(0)
        body = frames[3].decode()
        return frames[2].decode(), (body if command == "METRICS" else json.loads(body))

    def stop(self):
        statuses = [w.stop() for w in self.workers]
        if self.broker:
            statuses.append(self.broker.stop())
        if self.unix_path:
            shutil.rmtree(self.unix_dir, ignore_errors=True)
        return statuses


class RawClient:
    """A PFC1 client written from docs/PROTOCOL.md, independent of the C codec,
    that can also send deliberately malformed frames."""

    def __init__(self, endpoint):
        self.context = zmq.Context.instance()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(endpoint)
        self.next_id = 1

    def close(self):
        self.socket.close(0)

    def send_request(self, service, command, args=None, session="", timeout_ms=0, flags=0,
                     request_id=None, raw_body=None):
        if request_id is None:
            request_id = self.next_id
            self.next_id += 1
        body = raw_body if raw_body is not None else msgpack.packb(
            {} if args is None else args, use_bin_type=True)
        self.send_one(request_id, service.encode(), session.encode(), command.encode(),
                      timeout_ms, flags, body)
        return request_id

    def send_one(self, request_id, service, session, command, timeout_ms, flags, body):
        """A REQUEST (PROTOCOL.md 4.1) of these fields."""
        self.socket.send_multipart([
            b"", b"PFC1", b"\x01", struct.pack(">Q", request_id), service, session, command,
            struct.pack(">I", timeout_ms), struct.pack(">I", flags), body])

    def send_raw(self, frames):
        self.socket.send_multipart(frames)

    def recv(self, timeout=10.0):
        """The next answer as a dict, or raises AssertionError after timeout."""
        if not self.socket.poll(int(timeout * 1000)):
            raise AssertionError("no answer within %.1f s" % timeout)
        frames = self.socket.recv_multipart()
        assert frames[0] == b"" and frames[1] == b"PFC1", frames[:3]
        request_id = struct.unpack(">Q", frames[3])[0]
        if frames[2] == b"\x02":
            return {"id": request_id, "ok": True,
                    "flags": struct.unpack(">I", frames[4])[0],
                    "result": msgpack.unpackb(frames[5], raw=False) if frames[5] else None}
        assert frames[2] == b"\x03", frames[2]
        code = struct.unpack(">H", frames[4])[0]
        return {"id": request_id, "ok": False, "code": ERROR_CODES[code],
                "message": frames[5].decode(),
                "detail": msgpack.unpackb(frames[6], raw=False) if frames[6] else None}

    def call(self, service, command, args=None, **kw):
        request_id = self.send_request(service, command, args, **kw)
        reply = self.recv(timeout=kw.get("timeout_ms", 0) / 1000.0 + 10)
        assert reply["id"] == request_id, (reply, request_id)
        return reply


class StreamClient(RawClient):
    """The same PFC1 client over the broker's Unix stream socket
    (docs/PROTOCOL.md 2.1): entries of a u32 length and a packed message."""

    def __init__(self, path):
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.socket.settimeout(10)
        self.socket.connect(path)
        self.buffer = b""
        self.next_id = 1

    def close(self):
        self.socket.close()

    def send_one(self, request_id, service, session, command, timeout_ms, flags, body):
        """A REQUEST_PACKED (PROTOCOL.md 4.5) entry of these fields."""
        names = b"".join(bytes([len(name)]) + name for name in (service, session, command))
        entry = (b"\x05" + struct.pack(">QII", request_id, timeout_ms, flags) + names
                 + struct.pack(">I", len(body)) + body)
        self.send_raw(struct.pack(">I", len(entry)) + entry)

    def send_raw(self, data):
        self.socket.sendall(data)

    def _take(self, size, deadline):
        while len(self.buffer) < size:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no answer in time (%d of %d bytes)"
                                     % (len(self.buffer), size))
            self.socket.settimeout(left)
            try:
                chunk = self.socket.recv(1 << 20)
            except socket.timeout:
                continue
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def recv(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        entry = self._take(struct.unpack(">I", self._take(4, deadline))[0], deadline)
        request_id = struct.unpack(">Q", entry[1:9])[0]
        if entry[0] == 0x02:
            flags, size = struct.unpack(">II", entry[9:17])
            return {"id": request_id, "ok": True, "flags": flags,
                    "result": msgpack.unpackb(entry[17:17 + size], raw=False) if size else None}
        assert entry[0] == 0x03, entry[:1]
        code, size = struct.unpack(">HH", entry[9:13])
        message = entry[13:13 + size].decode()
        detail = entry[13 + size + 4:]
        return {"id": request_id, "ok": False, "code": ERROR_CODES[code], "message": message,
                "detail": msgpack.unpackb(detail, raw=False) if detail else None}


def pid_alive(pid):
    """True if pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def write_config(test, text):
    """A ZPL file holding text, removed when the test ends; returns its path."""
    handle = tempfile.NamedTemporaryFile("w", suffix=".zpl", delete=False)
    handle.write(text)
    handle.close()
    test.addCleanup(os.unlink, handle.name)
    return handle.name


def wait_until(predicate, timeout, interval=0.02):
    """Polls a cheap predicate until true or timeout (bounded); returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)
