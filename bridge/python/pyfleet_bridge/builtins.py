"""Commands every bridge has, whatever modules it loads.

ping, echo, sleep, stats, commands, and session_end (which the agent sends
when a session expires or is ended, so the bridge frees its state).
"""

import math
import os
import time

from .runtime import BadRequest, current_runtime

MAX_SLEEP_SECONDS = 3600


def _runtime():
    runtime = current_runtime()
    if runtime is None:
        raise RuntimeError("no bridge runtime is serving requests")
    return runtime


def ping(args, ctx):
    """Answer {"pong": true, "pid": pid}: the bridge is alive and serving."""
    return {"pong": True, "pid": os.getpid()}


def echo(args, ctx):
    """Return the arguments unchanged."""
    return args


def sleep(args, ctx):
    """Sleep {"seconds": S} (0 <= S <= 3600) and return {"slept": S}."""
    if not isinstance(args, dict):
        raise BadRequest("sleep takes a map {\"seconds\": S}")
    seconds = args.get("seconds")
    if type(seconds) not in (int, float) or not math.isfinite(seconds):
        raise BadRequest("sleep needs a number of seconds, got %r" % (seconds,))
    if not 0 <= seconds <= MAX_SLEEP_SECONDS:
        raise BadRequest("sleep seconds must be between 0 and %d, got %r"
                         % (MAX_SLEEP_SECONDS, seconds))
    time.sleep(seconds)
    return {"slept": seconds}


def stats(args, ctx):
    """Return {pid, rss_kb, requests, errors, uptime_s, sessions, version}."""
    return _runtime().stats()


def commands(args, ctx):
    """Return the sorted names of every registered command."""
    return _runtime().registry.names()


def session_end(args, ctx):
    """End {"session": S} (default: the request's own session; sent in a
    session, only that one).

    Drops the session's state and calls the on_session_end hooks; returns
    {"ended": false} if this bridge did not know the session.
    """
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise BadRequest("session_end takes a map {\"session\": S}")
    session_id = args.get("session", ctx.session_id)
    # A client's request ends only the session it is sent in (sessions
    # belong to a client); the agent's own, sent in no session, names one.
    if ctx.session_id is not None and session_id != ctx.session_id:
        raise BadRequest("session_end in session %r cannot end session %r"
                         % (ctx.session_id, session_id))
    if session_id is None:
        raise BadRequest("session_end needs a session: {\"session\": S} or the request's own")
    if not isinstance(session_id, str):
        raise BadRequest("session must be a string, got %r" % (session_id,))
    return {"ended": _runtime().end_session(session_id)}


def register(registry):
    """Add the built-in commands to registry (the package does it on import)."""
    registry.add("ping", ping)
    registry.add("echo", echo)
    registry.add("sleep", sleep)
    registry.add("stats", stats)
    registry.add("commands", commands)
    registry.add("session_end", session_end, keeps_session=False)
