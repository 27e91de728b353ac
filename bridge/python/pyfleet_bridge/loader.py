"""Loading the user modules named by --module.

A name that ends in ".py" or contains a "/" is a file path, loaded with
importlib from that file (its directory is appended to sys.path so that it
can import its siblings; appended, not prepended, so a user file named like
a standard module cannot shadow what the runtime itself imports).  Anything
else is a dotted module name imported normally.  Either way, importing the
module runs its @command decorators, which is what registers its commands.
"""

import importlib
import importlib.machinery
import importlib.util
import os
import re
import sys

__all__ = ["is_path", "load_module"]

_loaded_paths = {}


def is_path(name):
    """True if --module name is a file path rather than a dotted name."""
    return name.endswith(".py") or "/" in name


def _name_is_taken(name, path):
    if name in sys.modules:
        return True
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    return spec is not None and os.path.abspath(spec.origin or "") != path


def _module_name_for(path):
    # A dotted name would make find_spec import a parent package.
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0]) or "module"
    name = stem
    serial = 1
    # Never take the name of another importable module: a user file called
    # json.py must not become the json module of everyone else.
    while _name_is_taken(name, path):
        name = "_pyfleet_module_%d_%s" % (serial, stem)
        serial += 1
    return name


def _load_path(path):
    path = os.path.abspath(path)
    module = _loaded_paths.get(path)
    if module is not None:
        return module
    if not os.path.isfile(path):
        raise FileNotFoundError("no such module file: %s" % path)
    name = _module_name_for(path)
    # An explicit loader, because a path without a .py suffix would
    # otherwise get no loader at all.
    loader = importlib.machinery.SourceFileLoader(name, path)
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    directory = os.path.dirname(path)
    if directory not in sys.path:
        sys.path.append(directory)
    sys.modules[name] = module
    try:
        loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    _loaded_paths[path] = module
    return module


def load_module(name):
    """Import a --module argument and return the module object.

    Raises whatever the import raises (ImportError, SyntaxError, or any
    exception the module's own code throws).
    """
    if is_path(name):
        return _load_path(name)
    return importlib.import_module(name)
