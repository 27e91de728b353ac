"""Entry point: python3 -m pyfleet_bridge [--module M ...] [options].

Startup order matters.  The protocol fds are taken first, so that anything
a user module prints while it is imported goes to stderr; then fault
handlers, logging, the --module imports and the on_startup hooks; only
then is the ready frame sent.  A module that fails to import or a startup
hook that raises ends the process with status 3 and the traceback on
stderr, which the agent logs before applying its respawn backoff.
"""

import argparse
import faulthandler
import logging
import os
import signal
import sys
import traceback

from . import loader, protocol, runtime

DEFAULT_BEAT_MS = 1000


class _UsageError(Exception):
    pass


def _int_setting(text, what, minimum, maximum):
    try:
        value = int(text, 10)
    except (TypeError, ValueError):
        raise _UsageError("%s must be an integer, got %r" % (what, text)) from None
    if not minimum <= value <= maximum:
        raise _UsageError("%s must be between %d and %d, got %d" % (what, minimum, maximum, value))
    return value


def parse_args(argv, environ):
    """Return the settings; flags win over PYFLEET_BEAT_MS / PYFLEET_MAX_FRAME."""
    parser = argparse.ArgumentParser(
        prog="python3 -m pyfleet_bridge",
        description="Serve pyfleet bridge requests on fd 0, replying on fd 1.",
    )
    parser.add_argument("--module", action="append", default=[], metavar="M",
                        help="a .py file path or dotted module name to import (repeatable)")
    parser.add_argument("--beat-ms", metavar="MS",
                        help="beat interval in milliseconds, 0 for no beats "
                             "(default $PYFLEET_BEAT_MS or %d)" % DEFAULT_BEAT_MS)
    parser.add_argument("--max-frame", metavar="BYTES",
                        help="largest frame accepted or sent "
                             "(default $PYFLEET_MAX_FRAME or %d)" % protocol.DEFAULT_MAX_FRAME)
    parser.add_argument("--version", action="version", version=runtime.VERSION)
    options = parser.parse_args(argv)
    try:
        beat = options.beat_ms if options.beat_ms is not None else environ.get("PYFLEET_BEAT_MS")
        options.beat_ms = (DEFAULT_BEAT_MS if beat is None
                           else _int_setting(beat, "beat interval", 0, 3600 * 1000))
        limit = (options.max_frame if options.max_frame is not None
                 else environ.get("PYFLEET_MAX_FRAME"))
        options.max_frame = (protocol.DEFAULT_MAX_FRAME if limit is None
                             else _int_setting(limit, "max frame", 16, protocol.MAX_LENGTH))
    except _UsageError as exc:
        parser.error(str(exc))
    return options


def _install_signal_handlers():
    # Fatal signals (SIGSEGV in a C extension...) dump every thread's stack.
    # SIGUSR1 dumps the stack of the thread running handlers (the beat
    # thread blocks SIGUSR1, so the main thread takes it) without stopping,
    # for a handler that seems hung. Not all threads: walking another
    # thread's frames from a signal handler races with that thread, and we
    # saw it crash the bridge mid-dump while the beat thread was writing.
    faulthandler.enable(file=sys.stderr, all_threads=True)
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=False)
    # The kernel's default action for SIGTERM kills us at once, even while
    # C code holds the GIL, where a Python-level handler would never run.
    # Dispositions set to "ignore" survive exec, so reset explicitly.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _configure_logging():
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("pyfleet_bridge")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _start_user_code(module_names):
    """Import the modules and run the startup hooks; False on failure."""
    for name in module_names:
        try:
            loader.load_module(name)
        except BaseException:
            sys.stderr.write("pyfleet_bridge: cannot import module %r:\n" % name)
            traceback.print_exc(file=sys.stderr)
            return False
    for hook in runtime.registry.startup_hooks:
        try:
            hook()
        except BaseException:
            sys.stderr.write("pyfleet_bridge: on_startup hook %r failed:\n"
                             % getattr(hook, "__qualname__", hook))
            traceback.print_exc(file=sys.stderr)
            return False
    return True


def main(argv=None):
    options = parse_args(sys.argv[1:] if argv is None else argv, os.environ)
    try:
        request_fd, reply_fd = runtime.take_protocol_fds()
    except OSError as exc:
        sys.stderr.write("pyfleet_bridge: fd 0 and fd 1 must be open: %s\n" % exc)
        return runtime.EXIT_USAGE
    _install_signal_handlers()
    _configure_logging()
    if not _start_user_code(options.module):
        sys.stderr.flush()
        return runtime.EXIT_STARTUP
    bridge = runtime.Runtime(runtime.registry, request_fd, reply_fd,
                             max_frame=options.max_frame, beat_ms=options.beat_ms)
    return bridge.run()


if __name__ == "__main__":
    sys.exit(main())
