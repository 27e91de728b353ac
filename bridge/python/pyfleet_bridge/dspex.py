"""DSPy programs on pyfleet bridges: the DSPex command set (DESIGN §9).

Load it on a worker with `--module pyfleet_bridge.dspex`. It registers:

  configure_lm      {model, api_key?, temperature?, max_tokens?, provider?, test?}
  create_program    {program_id (or id), signature, program_type?, replace?}
  execute_program   {program_id, inputs}
  list_programs     {}
  delete_program    {program_id}
  get_program_info  {program_id}
  cleanup_session   {}
  get_stats         {}
  reset_state       {}

What it does differently from the DSPex pool it replaces
(background/dspex-v2-pool.md), each for a failure seen there:

- Programs live in the request's session: pyfleet sends every request of a
  session to the bridge that holds it, so create_program and
  execute_program meet (a session's end frees its programs). Requests in no
  session share one namespace per bridge: use sessions with several bridges.
- The LM is per session when configure_lm runs in one, else the bridge's
  default. Broadcast configure_lm (`pyfleet call --broadcast`) or give it as
  a worker `--setup` call to reach every bridge, new ones included.
- Every failure is an error reply (BAD_REQUEST for bad arguments, a Python
  error otherwise), never an {"error": ...} inside a success.
- Names are consistent (program_id everywhere; `id` is accepted by
  create_program for DSPex callers); execution_ms is a duration.
- Without dspy the module still loads: the commands that need it answer
  the error type DspyUnavailable saying which interpreter lacks it.
"""

import functools
import os
import sys
import time

from .runtime import BadRequest, command, current_runtime, read_rss_kb

__all__ = ["DspyUnavailable"]

PROGRAM_TYPES = ("predict", "chain_of_thought")
FIELD_TYPES = {"str": str, "string": str, "int": int, "integer": int, "float": float,
               "number": float, "bool": bool, "boolean": bool, "list": list, "dict": dict}
MAX_NAME = 255

_anonymous = {"programs": {}, "lm": None}  # the namespace of requests in no session
_default_lm = None  # this bridge's LM for sessions that configured none
_counts = {"commands": 0, "errors": 0}
_started = time.monotonic()


class DspyUnavailable(Exception):
    """dspy cannot be imported by this bridge's interpreter."""


def _dspy():
    try:
        import dspy  # noqa: PLC0415 - optional, imported on first use
    except Exception as exc:  # noqa: BLE001 - any import failure means unavailable
        raise DspyUnavailable(
            "dspy is not importable by %s (%s: %s): install it for that interpreter "
            "(pip install dspy) or run the worker with --python an interpreter that has it"
            % (sys.executable, type(exc).__name__, exc)) from None
    return dspy


def _dspy_version():
    try:
        return getattr(_dspy(), "__version__", "unknown")
    except DspyUnavailable:
        return None


class _Program:
    def __init__(self, program_id, program_type, spec, inputs, outputs, module):
        self.program_id = program_id
        self.program_type = program_type
        self.spec = spec
        self.inputs = inputs
        self.outputs = outputs
        self.module = module
        self.created_at = time.time()
        self.execution_count = 0
        self.last_executed = None

    def info(self):
        return {"program_id": self.program_id, "program_type": self.program_type,
                "signature": self.spec, "inputs": self.inputs, "outputs": self.outputs,
                "created_at": self.created_at, "execution_count": self.execution_count,
                "last_executed": self.last_executed}


def _space(ctx):
    """The request's namespace: its session's state, or the bridge's shared one."""
    if ctx.session_id is None:
        return _anonymous
    space = ctx.state.get("dspex")
    if space is None:
        space = ctx.state["dspex"] = {"programs": {}, "lm": None}
    return space


def _where(ctx):
    return "session %r" % ctx.session_id if ctx.session_id is not None else "no session"


def _args(args, *required):
    if not isinstance(args, dict):
        raise BadRequest("arguments must be a map, not %s" % type(args).__name__)
    for key in required:
        if key not in args:
            raise BadRequest("%s is required" % key)
    return args


def _name(value, what):
    if not isinstance(value, str) or not value or len(value) > MAX_NAME:
        raise BadRequest("%s must be a string of 1 to %d characters, got %r"
                         % (what, MAX_NAME, value))
    return value


def _program(ctx, args):
    program_id = _name(_args(args, "program_id")["program_id"], "program_id")
    program = _space(ctx)["programs"].get(program_id)
    if program is None:
        raise BadRequest("no program %r in %s" % (program_id, _where(ctx)))
    return program


def _counted(function):
    @functools.wraps(function)
    def handler(args, ctx):
        _counts["commands"] += 1
        try:
            return function(args, ctx)
        except Exception:
            _counts["errors"] += 1
            raise
    return handler


def _fields(specs, what):
    """[{name, type?, description?}] -> [(name, python type, description)]."""
    if not isinstance(specs, list) or not specs:
        raise BadRequest("signature %s must be a non-empty list of fields" % what)
    fields = []
    for spec in specs:
        if isinstance(spec, str):
            spec = {"name": spec}
        if not isinstance(spec, dict):
            raise BadRequest("a signature field must be a name or a map, got %r" % (spec,))
        name = spec.get("name")
        if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
            raise BadRequest("field name %r is not a Python identifier (letters, digits, _; "
                             "not starting with _ or a digit)" % (name,))
        type_name = spec.get("type", "str")
        if type_name not in FIELD_TYPES:
            raise BadRequest("field %s: unknown type %r (one of %s)"
                             % (name, type_name, ", ".join(sorted(FIELD_TYPES))))
        description = spec.get("description", "")
        if not isinstance(description, str):
            raise BadRequest("field %s: description must be a string" % name)
        fields.append((name, FIELD_TYPES[type_name], description))
    return fields


def _signature(dspy, spec):
    """A DSPy signature from "a, b -> c" or {inputs, outputs, instructions?}."""
    if isinstance(spec, str):
        if "->" not in spec:
            raise BadRequest("signature string must look like 'question -> answer', got %r"
                             % spec)
        sides = [[name.strip().split(":")[0].strip() for name in side.split(",") if name.strip()]
                 for side in spec.split("->", 1)]
        inputs, outputs = (_fields(side, what) for side, what in zip(sides, ("inputs", "outputs")))
        instructions = None
    elif isinstance(spec, dict):
        inputs = _fields(spec.get("inputs"), "inputs")
        outputs = _fields(spec.get("outputs"), "outputs")
        instructions = spec.get("instructions")
        if instructions is not None and not isinstance(instructions, str):
            raise BadRequest("signature instructions must be a string")
    else:
        raise BadRequest("signature must be a string or a map {inputs, outputs}")
    names = [name for name, _, _ in inputs + outputs]
    if len(set(names)) != len(names):
        raise BadRequest("signature field names must be distinct, got %s" % ", ".join(names))
    fields = {}
    for name, type_, description in inputs:
        fields[name] = (type_, dspy.InputField(desc=description))
    for name, type_, description in outputs:
        fields[name] = (type_, dspy.OutputField(desc=description))
    signature = dspy.make_signature(fields, instructions) if instructions else \
        dspy.make_signature(fields)
    return signature, [n for n, _, _ in inputs], [n for n, _, _ in outputs]


def _plain(value):
    """A msgpack-encodable copy of an LM output value."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    return str(value)


@command("configure_lm")
@_counted
def configure_lm(args, ctx):
    """Set the LM: this session's (in a session), else the bridge's default."""
    global _default_lm
    args = _args(args, "model")
    model = _name(args["model"], "model")
    provider = args.get("provider")
    if provider is not None:
        provider = _name(provider, "provider")
        if "/" not in model:
            model = provider + "/" + model
    options = {}
    for key, kind in (("api_key", str), ("temperature", (int, float)), ("max_tokens", int)):
        if args.get(key) is not None:
            if not isinstance(args[key], kind) or isinstance(args[key], bool):
                raise BadRequest("%s has the wrong type: %r" % (key, args[key]))
            options[key] = args[key]
    lm = _dspy().LM(model, **options)
    if args.get("test"):
        lm("Reply with the word OK.")  # one real call: a bad key fails here, not later
    if ctx.session_id is not None:
        _space(ctx)["lm"] = lm
    else:
        _default_lm = lm
    return {"status": "configured", "model": model,
            "scope": "session" if ctx.session_id is not None else "bridge",
            "temperature": options.get("temperature")}


@command("create_program")
@_counted
def create_program(args, ctx):
    """Build a Predict or ChainOfThought program from a signature."""
    args = _args(args, "signature")
    program_id = args.get("program_id", args.get("id"))
    if program_id is None:
        raise BadRequest("program_id is required")
    program_id = _name(program_id, "program_id")
    program_type = args.get("program_type", "predict")
    if program_type not in PROGRAM_TYPES:
        raise BadRequest("program_type must be one of %s, got %r"
                         % (", ".join(PROGRAM_TYPES), program_type))
    programs = _space(ctx)["programs"]
    if program_id in programs and not args.get("replace"):
        raise BadRequest("program %r exists in %s (delete_program it, or replace: true)"
                         % (program_id, _where(ctx)))
    dspy = _dspy()
    signature, inputs, outputs = _signature(dspy, args["signature"])
    module = (dspy.ChainOfThought if program_type == "chain_of_thought" else dspy.Predict)(
        signature)
    program = _Program(program_id, program_type, args["signature"], inputs, outputs, module)
    programs[program_id] = program
    return dict(program.info(), status="created")


@command("execute_program")
@_counted
def execute_program(args, ctx):
    """Run a program on {inputs}; returns its outputs and the time it took."""
    program = _program(ctx, args)
    inputs = args.get("inputs", {})
    if not isinstance(inputs, dict):
        raise BadRequest("inputs must be a map of the program's input fields")
    missing = [name for name in program.inputs if name not in inputs]
    unknown = [name for name in inputs if name not in program.inputs]
    if missing or unknown:
        raise BadRequest("program %r takes inputs %s; %s" % (
            program.program_id, ", ".join(program.inputs),
            "missing " + ", ".join(missing) if missing else "unknown " + ", ".join(map(str, unknown))))
    lm = _space(ctx)["lm"] or _default_lm
    if lm is None:
        raise BadRequest("no LM configured in %s or for this bridge: call configure_lm first "
                         "(broadcast it to reach every bridge)" % _where(ctx))
    dspy = _dspy()
    started = time.monotonic()
    with dspy.context(lm=lm):
        prediction = program.module(**inputs)
    elapsed_ms = round((time.monotonic() - started) * 1000.0, 3)
    program.execution_count += 1
    program.last_executed = time.time()
    outputs = {name: _plain(getattr(prediction, name, None)) for name in program.outputs}
    reasoning = getattr(prediction, "reasoning", None)
    result = {"program_id": program.program_id, "outputs": outputs, "execution_ms": elapsed_ms}
    if program.program_type == "chain_of_thought" and reasoning is not None:
        result["reasoning"] = _plain(reasoning)
    return result


@command("list_programs")
@_counted
def list_programs(args, ctx):
    """The programs of this session (or of the no-session namespace)."""
    programs = [program.info() for program in _space(ctx)["programs"].values()]
    return {"programs": programs, "total_count": len(programs), "session_id": ctx.session_id}


@command("delete_program")
@_counted
def delete_program(args, ctx):
    program = _program(ctx, args)
    del _space(ctx)["programs"][program.program_id]
    return {"program_id": program.program_id, "status": "deleted"}


@command("get_program_info")
@_counted
def get_program_info(args, ctx):
    return _program(ctx, args).info()


@command("cleanup_session")
@_counted
def cleanup_session(args, ctx):
    """Drop this session's programs and LM (the session itself goes on)."""
    if isinstance(args, dict) and args.get("session_id") not in (None, ctx.session_id):
        raise BadRequest("cleanup_session cleans the session it is sent in, not %r"
                         % args["session_id"])
    space = _space(ctx)
    removed = len(space["programs"])
    space["programs"].clear()
    space["lm"] = None
    return {"status": "cleaned", "session_id": ctx.session_id, "programs_removed": removed}


def _session_spaces():
    runtime = current_runtime()
    sessions = runtime.sessions.values() if runtime is not None else ()
    return [state["dspex"] for state in sessions if "dspex" in state]


@command("get_stats")
@_counted
def get_stats(args, ctx):
    """This bridge: programs (all namespaces), commands, errors, uptime, memory."""
    spaces = [_anonymous] + _session_spaces()
    version = _dspy_version()
    return {"programs_count": sum(len(space["programs"]) for space in spaces),
            "sessions_with_programs": len(spaces) - 1,
            "command_count": _counts["commands"], "error_count": _counts["errors"],
            "uptime_s": round(time.monotonic() - _started, 3), "rss_kb": read_rss_kb(),
            "pid": os.getpid(), "dspy_available": version is not None, "dspy_version": version,
            "default_lm": getattr(_default_lm, "model", None)}


@command("reset_state")
@_counted
def reset_state(args, ctx):
    """Forget every program and LM on this bridge and zero the counters."""
    global _default_lm
    spaces = [_anonymous] + _session_spaces()
    cleared = sum(len(space["programs"]) for space in spaces)
    for space in spaces:
        space["programs"].clear()
        space["lm"] = None
    _default_lm = None
    commands, errors = _counts["commands"], _counts["errors"]
    _counts.update(commands=0, errors=0)
    return {"status": "reset", "programs_cleared": cleared, "commands_reset": commands,
            "errors_reset": errors}
