"""pyfleet_bridge — the Python side of a pyfleet bridge process.

Run as `python3 -m pyfleet_bridge [--module M ...]` by the pyfleet agent.
User modules register commands with the decorators exported here:

    from pyfleet_bridge import command, on_session_end

    @command
    def add(args, ctx):
        return args["a"] + args["b"]

    @command("count")
    def count_requests(args, ctx):
        ctx.state["n"] = ctx.state.get("n", 0) + 1
        return ctx.state["n"]

    @on_session_end
    def forget(session_id, state):
        ...

A handler takes (args, ctx): args is the decoded msgpack value the caller
sent, ctx a Context (request_id, session_id, command, state, log).  Its
return value, which must be encodable as msgpack, is the result.  Raising
BadRequest answers BAD_REQUEST; any other exception answers PYTHON_ERROR
with the exception's type, message and traceback.
"""

from .builtins import register as _register_builtins
from .runtime import (
    VERSION,
    BadRequest,
    Context,
    command,
    on_session_end,
    on_startup,
    registry as _registry,
)

_register_builtins(_registry)

__version__ = VERSION

__all__ = [
    "BadRequest",
    "Context",
    "command",
    "on_session_end",
    "on_startup",
    "__version__",
]
