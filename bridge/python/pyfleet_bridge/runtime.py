"""The bridge runtime: command registry, request dispatch, the loop, beats.

One bridge process serves one request at a time on its main thread, in the
order they arrive; the agent keeps a few more waiting in the pipe so the
next one is at hand. A request read after its deadline is answered TIMEOUT
without starting, and on SIGUSR2 the requests marked releasable that still
wait are answered BUSY ("released") at once, while the running one goes on,
so the agent can run them elsewhere. A daemon thread writes a beat frame every beat interval saying whether the
bridge is busy, on which request and for how long, so the agent can tell a
busy bridge from a wedged one (beats stop while C code holds the GIL) and a
dead one (no beats, pipe closed).

The protocol streams are private duplicates of fd 0 and fd 1 taken at
startup (see take_protocol_fds): fd 1 is then pointed at stderr and fd 0 at
/dev/null, so neither a stray print() nor a child process that inherits
the standard fds can corrupt or steal protocol bytes.

Every request gets exactly one reply; whatever goes wrong in the handler
or in encoding its result becomes an error reply, never silence and never a
crash.  Only a fault in the framing of the request stream itself (a length
above the limit, a frame cut by end of file) ends the process: framing
cannot be resynchronised.
"""

import collections
import logging
import os
import signal
import sys
import threading
import time
import traceback

from . import protocol

__all__ = [
    "BadRequest",
    "Context",
    "Registry",
    "Runtime",
    "registry",
    "command",
    "on_session_end",
    "on_startup",
    "protocol_fd",
    "current_runtime",
    "read_rss_kb",
    "take_protocol_fds",
    "EXIT_OK",
    "EXIT_INTERNAL",
    "EXIT_USAGE",
    "EXIT_STARTUP",
    "EXIT_PROTOCOL",
    "EXIT_REPLY_PIPE",
]

VERSION = "0.1.0"

# Exit statuses, so the agent's log says why a bridge went away.
EXIT_OK = 0  # end of file on the request stream
EXIT_INTERNAL = 1  # unexpected error in the runtime itself
EXIT_USAGE = 2  # bad command line or environment configuration
EXIT_STARTUP = 3  # a --module failed to import, or an on_startup hook raised
EXIT_PROTOCOL = 4  # the request stream lost its framing
EXIT_REPLY_PIPE = 5  # the reply stream is closed (the agent is gone)

# Error codes, as named by pf_error on the C side.
PYTHON_ERROR = "PYTHON_ERROR"
UNKNOWN_COMMAND = "UNKNOWN_COMMAND"
BAD_REQUEST = "BAD_REQUEST"
TOO_LARGE = "TOO_LARGE"
TIMEOUT = "TIMEOUT"
BUSY = "BUSY"

_MAX_REPR = 80

log = logging.getLogger("pyfleet_bridge")


class BadRequest(Exception):
    """Raise from a handler when its arguments are wrong.

    The reply carries code BAD_REQUEST and type "BadRequest" instead of
    PYTHON_ERROR, telling the caller the fault is in the request.
    """


class Context:
    """What a handler knows about the request it is serving.

    request_id  the agent's id for this request (an int > 0)
    session_id  the session the request belongs to, or None
    command     the name the handler was called under
    state       a dict that persists across the requests of one session in
                this process; a fresh empty dict for a request without one
    log         a logging.Logger writing to stderr
    """

    __slots__ = ("request_id", "session_id", "command", "state", "log")

    def __init__(self, request_id, session_id, command, state, log):
        self.request_id = request_id
        self.session_id = session_id
        self.command = command
        self.state = state
        self.log = log

    def __repr__(self):
        return "Context(request_id=%r, session_id=%r, command=%r)" % (
            self.request_id,
            self.session_id,
            self.command,
        )


class Command:
    """One registered command: its name, handler and logger."""

    __slots__ = ("name", "function", "keeps_session", "log")

    def __init__(self, name, function, keeps_session):
        self.name = name
        self.function = function
        # False for session_end: a request that ends a session must not
        # first create the state it is about to drop.
        self.keeps_session = keeps_session
        # Looked up once: getLogger takes a lock on every call.
        self.log = logging.getLogger("pyfleet_bridge.command." + name)


def _describe(function):
    module = getattr(function, "__module__", None) or "?"
    name = getattr(function, "__qualname__", None) or repr(function)
    return "%s.%s" % (module, name)


class Registry:
    """Commands by name, plus the session-end and startup hooks."""

    def __init__(self):
        self.commands = {}
        self.session_end_hooks = []
        self.startup_hooks = []

    def add(self, name, function, keeps_session=True):
        """Register function under name; a name can be taken only once."""
        if not isinstance(name, str) or not name:
            raise ValueError("a command name must be a non-empty string, not %r" % (name,))
        if not callable(function):
            raise TypeError("the handler for command %r is not callable" % name)
        existing = self.commands.get(name)
        if existing is not None and existing.function is not function:
            raise ValueError(
                "command %r is already registered by %s; %s cannot take it"
                % (name, _describe(existing.function), _describe(function))
            )
        self.commands[name] = Command(name, function, keeps_session)
        return function

    def get(self, name):
        return self.commands.get(name)

    def names(self):
        return sorted(self.commands)


registry = Registry()


def command(name=None):
    """Register a handler `def handler(args, ctx)` as a bridge command.

    Use as @command (the function's name is the command's name) or as
    @command("name").
    """
    if callable(name):
        function = name
        return registry.add(function.__name__, function)

    def decorate(function):
        return registry.add(name if name is not None else function.__name__, function)

    return decorate


def on_session_end(function):
    """Register function(session_id, state), called when a session ends."""
    if not callable(function):
        raise TypeError("on_session_end needs a callable, not %r" % (function,))
    registry.session_end_hooks.append(function)
    return function


def on_startup(function):
    """Register function(), called once after --module imports, before ready."""
    if not callable(function):
        raise TypeError("on_startup needs a callable, not %r" % (function,))
    registry.startup_hooks.append(function)
    return function


def read_rss_kb():
    """This process's resident set size in KiB (VmRSS), 0 if unknown."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


_protocol_fds = None  # (request fd, reply fd) once taken
_current_runtime = None


def take_protocol_fds():
    """Keep private copies of fd 0 and fd 1 for the protocol.

    Then fd 1 and sys.stdout point at stderr and fd 0 at /dev/null, so that
    user code (and any process it starts) printing to stdout or reading
    stdin cannot touch the protocol streams.  The copies are close-on-exec
    and blocking.  Returns (request_fd, reply_fd); idempotent.
    """
    global _protocol_fds
    if _protocol_fds is not None:
        return _protocol_fds
    for stream in (sys.stdout, sys.__stdout__):
        if stream is not None:
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
    request_fd = os.dup(0)
    reply_fd = os.dup(1)
    os.set_blocking(request_fd, True)
    os.set_blocking(reply_fd, True)
    try:
        os.dup2(2, 1)
    except OSError:
        _point_at_devnull(1, os.O_WRONLY)
    _point_at_devnull(0, os.O_RDONLY)
    sys.stdout = sys.stderr
    _protocol_fds = (request_fd, reply_fd)
    return _protocol_fds


def _point_at_devnull(fd, flags):
    devnull = os.open(os.devnull, flags)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def protocol_fd():
    """The private fd reply frames are written on (for tests and tooling)."""
    if _protocol_fds is None:
        raise RuntimeError("the bridge runtime has not taken the protocol fds")
    return _protocol_fds[1]


def current_runtime():
    """The Runtime serving requests in this process, or None."""
    return _current_runtime


def _text(value):
    """str(value), made safe to encode as UTF-8 (no lone surrogates)."""
    try:
        text = value if isinstance(value, str) else str(value)
    except Exception:
        text = "<unprintable %s>" % type(value).__name__
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _short_repr(value):
    try:
        text = repr(value)
    except Exception:
        text = "<%s>" % type(value).__name__
    if len(text) > _MAX_REPR:
        text = text[: _MAX_REPR - 3] + "..."
    return _text(text)


def _format_traceback(exc):
    # Start below the dispatch frame: the user wants their own frames.
    tb = exc.__traceback__
    if tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    try:
        return _text("".join(traceback.format_exception(type(exc), exc, tb)))
    except Exception:
        return _text("%s: %s\n" % (type(exc).__name__, _text(exc)))


class _Rejected(Exception):
    """A request the runtime refuses before any handler runs."""

    def __init__(self, request_id, code, error_type, message):
        super().__init__(message)
        self.request_id = request_id
        self.code = code
        self.error_type = error_type
        self.message = message


def _is_request_id(value):
    return type(value) is int and value > 0


class Runtime:
    """Serves requests from request_fd, replying on reply_fd."""

    def __init__(self, registry, request_fd, reply_fd, max_frame=protocol.DEFAULT_MAX_FRAME,
                 beat_ms=1000):
        self.registry = registry
        self.request_fd = request_fd
        self.reply_fd = reply_fd
        self.max_frame = max_frame
        self.beat_ms = beat_ms
        self.pid = os.getpid()
        self.started = time.monotonic()
        self.requests = 0
        self.errors = 0
        self.skipped = 0  # requests read after their deadline: never started
        self.released = 0  # requests given back unstarted (SIGUSR2)
        self._reader = None
        # True while a handler runs: the reader is idle then, so a release
        # (SIGUSR2) may use it at once; otherwise the main loop does it.
        self._in_handler = False
        self._release_asked = False
        self.sessions = {}
        # Results are packed in the main thread only (the beat thread and a
        # release use protocol.pack).
        self._pack_result = protocol.packer()
        # (request id, monotonic start) while a handler runs, else None.
        # Replaced as a whole so the beat thread reads it without a lock.
        self._current = None
        # Beats and replies share the reply fd: a frame is written whole
        # under this lock or the agent would see interleaved bytes.
        self._write_lock = threading.Lock()
        self._beat_stop = threading.Event()
        self._beat_thread = None

    # Output

    def send_payload(self, payload):
        with self._write_lock:
            protocol.write_frame(self.reply_fd, payload)

    def send(self, message):
        self.send_payload(protocol.pack(message))

    def ready_message(self):
        return {
            "id": 0,
            "event": "ready",
            "pid": self.pid,
            "commands": self.registry.names(),
            "version": VERSION,
        }

    def beat_message(self):
        current = self._current
        if current is None:
            busy, elapsed_ms = None, 0
        else:
            busy = current[0]
            elapsed_ms = int((time.monotonic() - current[1]) * 1000)
        return {"event": "beat", "busy": busy, "elapsed_ms": elapsed_ms, "rss_kb": read_rss_kb()}

    # Beats

    def start_beats(self):
        if self.beat_ms <= 0 or self._beat_thread is not None:
            return
        self._beat_thread = threading.Thread(
            target=self._beat_loop, name="pyfleet-beat", daemon=True
        )
        self._beat_thread.start()

    def stop_beats(self):
        self._beat_stop.set()
        if self._beat_thread is not None:
            self._beat_thread.join(timeout=1.0)
            self._beat_thread = None

    def _beat_loop(self):
        # SIGUSR1 (stack dump) must land on the main thread, which runs handlers.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGUSR2})
        interval = self.beat_ms / 1000.0
        while True:
            try:
                self.send(self.beat_message())
            except OSError:
                # The agent is gone; the main thread finds out on its own.
                return
            if self._beat_stop.wait(interval):
                return

    # Sessions

    def session_state(self, session_id):
        state = self.sessions.get(session_id)
        if state is None:
            state = self.sessions[session_id] = {}
        return state

    def end_session(self, session_id):
        """Drop a session's state and run the hooks; False if it was unknown.

        Every hook runs even if an earlier one raises; the first exception
        is then raised again so the caller hears about it.
        """
        state = self.sessions.pop(session_id, None)
        if state is None:
            return False
        failure = None
        for hook in list(self.registry.session_end_hooks):
            try:
                hook(session_id, state)
            except Exception as exc:
                log.error("session_end hook %s failed for session %r:\n%s",
                          _describe(hook), session_id, _format_traceback(exc))
                if failure is None:
                    failure = exc
        if failure is not None:
            raise failure
        return True

    def stats(self):
        return {
            "pid": self.pid,
            "rss_kb": read_rss_kb(),
            "requests": self.requests,
            "errors": self.errors,
            "skipped": self.skipped,
            "released": self.released,
            "uptime_s": round(time.monotonic() - self.started, 3),
            "sessions": len(self.sessions),
            "version": VERSION,
        }

    # Requests

    def _parse(self, payload):
        try:
            request = protocol.unpack(payload)
        except Exception as exc:
            raise _Rejected(0, BAD_REQUEST, "BadRequest",
                            "request is not one valid msgpack object: %s" % _text(exc))
        if not isinstance(request, dict):
            raise _Rejected(0, BAD_REQUEST, "BadRequest",
                            "request must be a map, not %s" % type(request).__name__)
        request_id = request.get("id")
        if not _is_request_id(request_id):
            raise _Rejected(0, BAD_REQUEST, "BadRequest",
                            "request id must be an integer > 0, got %s" % _short_repr(request_id))
        name = request.get("cmd")
        if not isinstance(name, str):
            raise _Rejected(request_id, BAD_REQUEST, "BadRequest",
                            "request cmd must be a string, got %s" % _short_repr(name))
        # A missing args and nil args are the same: the C encoder writes
        # nil when the caller gave no arguments.
        args = request.get("args")
        if args is None:
            args = {}
        session_id = request.get("session")
        if session_id == "":
            session_id = None
        if session_id is not None and not isinstance(session_id, str):
            raise _Rejected(request_id, BAD_REQUEST, "BadRequest",
                            "request session must be a string or nil, got %s"
                            % _short_repr(session_id))
        deadline = request.get("deadline")
        if deadline is not None and (not isinstance(deadline, int) or isinstance(deadline, bool)):
            raise _Rejected(request_id, BAD_REQUEST, "BadRequest",
                            "request deadline must be an integer (monotonic ms) or nil, got %s"
                            % _short_repr(deadline))
        return request_id, name, args, session_id, deadline

    def _error_reply(self, request_id, code, error_type, message, trace=""):
        self.errors += 1
        return protocol.pack({
            "id": request_id,
            "ok": False,
            "error": {
                "code": code,
                "type": _text(error_type),
                "message": _text(message),
                "traceback": trace,
            },
        })

    def _run_handler(self, request_id, name, args, session_id):
        entry = self.registry.get(name)
        if entry is None:
            return self._error_reply(request_id, UNKNOWN_COMMAND, "UnknownCommand",
                                     "unknown command %s" % _short_repr(name))
        if session_id is not None and entry.keeps_session:
            state = self.session_state(session_id)
        else:
            state = {}
        ctx = Context(request_id, session_id, name, state, entry.log)
        try:
            result = entry.function(args, ctx)
        except BadRequest as exc:
            return self._error_reply(request_id, BAD_REQUEST, "BadRequest", _text(exc),
                                     _format_traceback(exc))
        except Exception as exc:
            return self._error_reply(request_id, PYTHON_ERROR, type(exc).__name__,
                                     _text(exc) or type(exc).__name__, _format_traceback(exc))
        try:
            payload = self._pack_result({"id": request_id, "ok": True, "result": result})
        except Exception as exc:
            return self._error_reply(
                request_id, PYTHON_ERROR, type(exc).__name__,
                "the result of command %r cannot be encoded as msgpack: %s"
                % (name, _text(exc)))
        if len(payload) > self.max_frame:
            return self._error_reply(
                request_id, TOO_LARGE, "TooLarge",
                "the result of command %r encodes to %d bytes, above the frame limit of %d"
                % (name, len(payload), self.max_frame))
        return payload

    def handle(self, payload):
        """Serve one request frame; return the encoded reply (never raises
        for anything the request or its handler did)."""
        self.requests += 1
        try:
            request_id, name, args, session_id, deadline = self._parse(payload)
        except _Rejected as rejected:
            return self._error_reply(rejected.request_id, rejected.code,
                                     rejected.error_type, rejected.message)
        # A request may wait in the pipe behind another one; past its
        # deadline (the agent's clock: CLOCK_MONOTONIC, ms) it never starts.
        now = time.monotonic()
        if deadline is not None and now * 1000.0 >= deadline:
            self.skipped += 1
            return self._error_reply(request_id, TIMEOUT, "DeadlinePassed",
                                     "deadline passed before it started; not started")
        self._current = (request_id, now)
        self._in_handler = True
        try:
            return self._run_handler(request_id, name, args, session_id)
        finally:
            self._in_handler = False
            self._current = None

    # Release: requests that wait behind a long one go back to the agent

    def _on_release_signal(self, signum, frame):
        # The agent asks (SIGUSR2) while a request runs long. This runs in
        # the main thread between bytecodes: inside a handler the reader is
        # idle, so release at once; else the main loop does it before it
        # starts the next request. Never raises into the handler.
        self._release_asked = True
        if self._in_handler:
            try:
                self.release()
            except Exception as exc:  # noqa: BLE001 - must not break the handler
                log.error("release failed: %s", _text(exc))

    def release(self):
        """Answer every request that waits in the pipe (read, not started)
        and is marked releasable with a BUSY "released" reply, so the agent
        runs it elsewhere; keep the others in order."""
        self._release_asked = False
        reader = self._reader
        if reader is None:
            return
        reader.read_available()
        kept = collections.deque()
        replies = []
        for payload in reader.frames:
            try:
                request = protocol.unpack(payload)
            except Exception:  # noqa: BLE001 - answered as a bad request in its turn
                request = None
            if (isinstance(request, dict) and request.get("releasable") is True
                    and _is_request_id(request.get("id"))):
                self.released += 1
                replies.append(protocol.pack({"id": request["id"], "ok": False, "error": {
                    "code": BUSY, "type": "Released", "traceback": "",
                    "message": "waited behind a long request; released, not started"}}))
            else:
                kept.append(payload)
        reader.frames = kept
        for reply in replies:
            self.send_payload(reply)

    def run(self):
        """Announce ready, then serve until end of file; return an exit status."""
        global _current_runtime
        _current_runtime = self
        # Our own buffer: a read takes every frame the pipe holds, and a
        # release can see the frames that wait while a handler runs.
        self._reader = protocol.FrameReader(self.request_fd, self.max_frame)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGUSR2, self._on_release_signal)
            # SA_RESTART: a system call the handler's C code is blocked in
            # restarts instead of failing with EINTR (not every extension
            # retries); the release then waits until it returns.
            signal.siginterrupt(signal.SIGUSR2, False)
        try:
            self.send(self.ready_message())
            self.start_beats()
            while True:
                try:
                    if self._release_asked:
                        self.release()
                    payload = self._reader.next()
                except protocol.ProtocolError as exc:
                    log.error("request stream fault, exiting: %s", exc)
                    return EXIT_PROTOCOL
                if payload is None:
                    return EXIT_OK
                self.send_payload(self.handle(payload))
        except BrokenPipeError:
            log.error("the reply pipe is closed, exiting")
            return EXIT_REPLY_PIPE
        finally:
            self.stop_beats()
            self._reader = None
            _current_runtime = None
