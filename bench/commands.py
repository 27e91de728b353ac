"""Bench command module for pyfleet bridges: `--module bench/commands.py`.

Registers the shared workload functions (bench/workload.py) as bridge
commands; `echo` is a built-in already, so only `burn` is added.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import workload  # noqa: E402

from pyfleet_bridge import command  # noqa: E402


@command
def burn(args, ctx):
    """Burn {"ms": M} milliseconds of thread CPU time."""
    return workload.burn(args)
