"""Helpers for the bridge runtime tests: a bridge subprocess driven over pipes.

BridgeProcess starts `python3 -m pyfleet_bridge` the way the agent does
(fd 0 requests, fd 1 replies, fd 2 log) in its own session, and talks the
protocol to it.  Every wait is bounded: a test that would otherwise hang
fails with a timeout instead.  kill() SIGKILLs the whole process group and
reaps, so nothing outlives a test, not even a grandchild.
"""

import os
import select
import signal
import struct
import subprocess
import threading
import time
import unittest

import msgpack

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BRIDGE_PATH = os.path.join(REPO_ROOT, "bridge", "python")
FIXTURES = os.path.join(REPO_ROOT, "tests", "fixtures")
PYTHON = os.environ.get("PYFLEET_PYTHON", "/usr/bin/python3")

# Generous bounds: they only matter when something is broken.
TIMEOUT = 10.0


def fixture(name):
    return os.path.join(FIXTURES, name)


def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


def frame(payload):
    return struct.pack(">I", len(payload)) + payload


class BridgeTimeout(AssertionError):
    pass


class BridgeProcess:
    """One bridge subprocess and the protocol spoken to it."""

    def __init__(self, *args, env=None, beat_ms=None, python_path=None):
        command = [PYTHON, "-m", "pyfleet_bridge"]
        if beat_ms is not None:
            command += ["--beat-ms", str(beat_ms)]
        command += list(args)
        child_env = dict(os.environ)
        for key in ("PYFLEET_BEAT_MS", "PYFLEET_MAX_FRAME"):
            child_env.pop(key, None)
        child_env["PYTHONPATH"] = os.pathsep.join([BRIDGE_PATH] + list(python_path or []))
        child_env.update(env or {})
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=REPO_ROOT,
            env=child_env,
            start_new_session=True,
        )
        self.pid = self.process.pid
        self.beats = []
        self._buffer = bytearray()
        self._eof = False
        self._stderr = bytearray()
        self._stderr_cond = threading.Condition()
        self._stderr_done = False
        # stderr is drained on a thread: a chatty bridge must never block
        # on a full pipe because the test is busy elsewhere.
        self._stderr_thread = threading.Thread(target=self._drain_stderr, daemon=True)
        self._stderr_thread.start()

    # stderr

    def _drain_stderr(self):
        fd = self.process.stderr.fileno()
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            with self._stderr_cond:
                if not data:
                    self._stderr_done = True
                    self._stderr_cond.notify_all()
                    return
                self._stderr += data
                self._stderr_cond.notify_all()

    def stderr_text(self):
        with self._stderr_cond:
            return self._stderr.decode("utf-8", "replace")

    def wait_stderr(self, needle, timeout=TIMEOUT):
        """Wait until stderr contains needle (str); return all stderr text."""
        needle_bytes = needle.encode()
        deadline = time.monotonic() + timeout
        with self._stderr_cond:
            while needle_bytes not in self._stderr:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stderr_done:
                    raise BridgeTimeout("%r not on stderr; got:\n%s"
                                        % (needle, self._stderr[-4000:].decode("utf-8", "replace")))
                self._stderr_cond.wait(remaining)
            return self._stderr.decode("utf-8", "replace")

    def wait_stderr_closed(self, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        with self._stderr_cond:
            while not self._stderr_done:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BridgeTimeout("stderr still open")
                self._stderr_cond.wait(remaining)
            return self._stderr.decode("utf-8", "replace")

    # Requests

    def send_raw(self, data):
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def send(self, message):
        self.send_raw(frame(pack(message)))

    def request(self, request_id, cmd, args=None, session=None):
        message = {"id": request_id, "cmd": cmd, "session": session}
        if args is not None:
            message["args"] = args
        self.send(message)

    def close_stdin(self):
        self.process.stdin.close()

    # Replies

    def _fill(self, deadline):
        """Read more reply bytes; False at end of file."""
        if self._eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BridgeTimeout("no frame from the bridge in time; stderr:\n"
                                + self.stderr_text()[-4000:])
        fd = self.process.stdout.fileno()
        readable, _, _ = select.select([fd], [], [], remaining)
        if not readable:
            raise BridgeTimeout("no frame from the bridge in time; stderr:\n"
                                + self.stderr_text()[-4000:])
        data = os.read(fd, 1 << 20)
        if not data:
            self._eof = True
            return False
        self._buffer += data
        return True

    def read_raw(self, size, timeout=TIMEOUT):
        """Exactly size bytes of the reply stream, or fewer at end of file."""
        deadline = time.monotonic() + timeout
        while len(self._buffer) < size and self._fill(deadline):
            pass
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def recv_any(self, timeout=TIMEOUT):
        """The next frame of any kind, decoded; None at end of file."""
        deadline = time.monotonic() + timeout
        while len(self._buffer) < 4:
            if not self._fill(deadline):
                return None
        (length,) = struct.unpack(">I", self._buffer[:4])
        if length > 64 * 1024 * 1024:
            raise AssertionError("bridge sent a frame length of %d" % length)
        while len(self._buffer) < 4 + length:
            if not self._fill(deadline):
                raise AssertionError("reply stream ended inside a frame")
        payload = bytes(self._buffer[4:4 + length])
        del self._buffer[:4 + length]
        return msgpack.unpackb(payload, raw=False, strict_map_key=False)

    def recv(self, timeout=TIMEOUT):
        """The next frame that is not a beat (beats are kept in self.beats)."""
        deadline = time.monotonic() + timeout
        while True:
            message = self.recv_any(max(0.0, deadline - time.monotonic()))
            if isinstance(message, dict) and message.get("event") == "beat":
                self.beats.append(message)
                continue
            return message

    def recv_beat(self, timeout=TIMEOUT, predicate=None):
        """The next beat matching predicate; other frames are an error."""
        deadline = time.monotonic() + timeout
        while True:
            message = self.recv_any(max(0.0, deadline - time.monotonic()))
            if message is None:
                raise AssertionError("reply stream closed while waiting for a beat")
            if message.get("event") != "beat":
                raise AssertionError("expected a beat, got %r" % (message,))
            self.beats.append(message)
            if predicate is None or predicate(message):
                return message

    def wait_ready(self, timeout=TIMEOUT):
        message = self.recv(timeout)
        if message is None or message.get("event") != "ready":
            raise AssertionError("expected ready, got %r; stderr:\n%s"
                                 % (message, self.stderr_text()))
        return message

    def call(self, request_id, cmd, args=None, session=None, timeout=TIMEOUT):
        """Send a request and return its reply."""
        self.request(request_id, cmd, args, session)
        reply = self.recv(timeout)
        if reply is None:
            raise AssertionError("bridge closed the reply stream; stderr:\n" + self.stderr_text())
        return reply

    # Process

    def wait_exit(self, timeout=TIMEOUT):
        """The exit status (negative for a signal), within timeout."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise BridgeTimeout("bridge still running after %.1f s" % timeout) from None

    def signal(self, sig):
        os.kill(self.pid, sig)

    def kill(self):
        """SIGKILL the process group, reap, close every pipe."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except (OSError, ValueError):
                pass
        self._stderr_thread.join(TIMEOUT)
        try:
            self.process.stderr.close()
        except OSError:
            pass


class BridgeTestCase(unittest.TestCase):
    """A TestCase whose bridges are all killed and reaped after each test."""

    def setUp(self):
        self.bridges = []

    def tearDown(self):
        for bridge in self.bridges:
            bridge.kill()

    def start(self, *args, ready=True, **kwargs):
        """Start a bridge (beats off unless beat_ms is given) and wait for ready."""
        kwargs.setdefault("beat_ms", 0)
        bridge = BridgeProcess(*args, **kwargs)
        self.bridges.append(bridge)
        if ready:
            bridge.ready = bridge.wait_ready()
        return bridge

    def assertErrorReply(self, reply, request_id, code, error_type=None):
        self.assertEqual(reply["id"], request_id, reply)
        self.assertIs(reply["ok"], False, reply)
        error = reply["error"]
        self.assertEqual(error["code"], code, reply)
        if error_type is not None:
            self.assertEqual(error["type"], error_type, reply)
        self.assertIsInstance(error["message"], str)
        self.assertIsInstance(error["traceback"], str)
        return error
