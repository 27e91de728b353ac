"""Example command module for pyfleet bridges: load with --module examples/commands.py."""

import os

from pyfleet_bridge import command


@command
def greet(args, ctx):
    """Returns a greeting from the bridge process that ran it."""
    return {"greeting": "hello, %s" % args.get("name", "world"), "pid": os.getpid()}


@command
def divide(args, ctx):
    """Divides a by b; b = 0 raises ZeroDivisionError, which the caller gets as PYTHON_ERROR."""
    return {"quotient": args["a"] / args["b"]}


@command
def count(args, ctx):
    """Counts calls within a session (state kept in the bridge that holds the session)."""
    ctx.state["n"] = ctx.state.get("n", 0) + 1
    return {"n": ctx.state["n"], "session": ctx.session_id}
