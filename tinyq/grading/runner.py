"""The child side of `tinyq grade`: run the trusted probes against one copy of tinyq, write the outputs.

Run as a script, never imported by the grader:  python -I -S runner.py PLAN.json

Standalone on purpose (standard library and numpy only). The grader copies this file and the trusted
checks into a folder of its own, writes PLAN.json and one inputs .npz per task there, and reads back
what this script writes into the plan's `out` folder: `events.jsonl` (one JSON object per line) and
one outputs .npz per task. Nothing written here is trusted: the grader compares the outputs with the
reference's and ignores anything else.

Order of work: numpy and the trusted check modules are loaded first, then the code root goes first on
sys.path and `import tinyq` runs (the "import" phase), then each exercise's tasks run in turn. Each
phase has a soft timeout (SIGALRM raises ProbeTimeout, naming where the code was) and a hard one
(faulthandler dumps every thread's stack to `trace-<phase>.txt` and exits), so even code that catches
every exception or blocks the signal is stopped in bounded time, with a location.
"""
from __future__ import annotations

import faulthandler
import importlib
import importlib.util
import json
import os
import signal
import sys
import time
import traceback

np = None           # numpy, imported once the plan says where site-packages is (the child runs with -S)
EVENTS = None       # the open events file
CODE_ROOT = ""


class ProbeTimeout(BaseException):
    """The soft timeout of a phase (a BaseException, so `except Exception` in graded code lets it pass)."""


def emit(event: dict) -> None:
    event["time"] = time.time()
    EVENTS.write(json.dumps(event, ensure_ascii=True, default=str) + "\n")
    EVENTS.flush()


def where(frames) -> str:
    """'file:line in function' of the innermost frame inside the code root (else the innermost frame)."""
    frames = list(frames)
    if not frames:
        return "unknown"
    inside = [f for f in frames if os.path.abspath(f[0]).startswith(CODE_ROOT + os.sep)]
    filename, line, function = (inside or frames)[-1][:3]
    if filename.startswith(CODE_ROOT + os.sep):
        filename = os.path.relpath(filename, CODE_ROOT)
    return f"{filename}:{line} in {function}"


def frames_of(frame):
    stack = []
    while frame is not None:
        stack.append((frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name))
        frame = frame.f_back
    return stack[::-1]


def describe(error: BaseException) -> dict:
    """{'message': 'Type: text' (capped), 'where': location} of an exception."""
    if isinstance(error, ProbeTimeout):
        return {"message": str(error.args[0]), "where": error.args[1], "kind": "timeout"}
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, OSError) and error.errno == 27:       # EFBIG from RLIMIT_FSIZE
        text += " (past the 32 MB limit on the child's output and files)"
    if len(text) > 1500:
        text = text[:1500] + " …"
    frames = [(f.filename, f.lineno, f.name) for f in traceback.extract_tb(error.__traceback__)]
    return {"message": text, "where": where(frames), "kind": "error"}


class Phase:
    """A timed phase: soft timeout by SIGALRM, hard timeout by faulthandler (dump stacks, then exit)."""

    def __init__(self, name: str, timeout: float, trace_dir: str, grace: float):
        self.name, self.timeout = name, timeout
        self.trace_path = os.path.join(trace_dir, f"trace-{name}.txt")
        self.grace = grace

    def __enter__(self):
        def on_alarm(signum, frame):
            raise ProbeTimeout(f"stopped after the {self.timeout:g} s timeout", where(frames_of(frame)))
        signal.signal(signal.SIGALRM, on_alarm)
        self.trace = open(self.trace_path, "w")
        faulthandler.dump_traceback_later(self.timeout + self.grace, exit=True, file=self.trace)
        signal.setitimer(signal.ITIMER_REAL, self.timeout)
        return self

    def __exit__(self, *exc):
        signal.setitimer(signal.ITIMER_REAL, 0)
        faulthandler.cancel_dump_traceback_later()
        self.trace.close()
        return False


def load_trusted_checks(checks_dir: str) -> None:
    """Load the trusted `tinyq.grading.checks` package from checks_dir under its own name, without
    importing any parent package (so no code of the graded copy runs here)."""
    name = "tinyq.grading.checks"
    spec = importlib.util.spec_from_file_location(name, os.path.join(checks_dir, "__init__.py"),
                                                  submodule_search_locations=[checks_dir])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


def save_outputs(path: str, outputs) -> None:
    if not isinstance(outputs, dict):
        raise TypeError(f"the probe returned {type(outputs).__name__}, not a dict")
    arrays = {}
    for key, value in outputs.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise TypeError(f"the probe returned a key {key!r}; keys must be identifiers")
        array = np.asarray(value)
        if array.dtype.kind not in "biufcU":
            raise TypeError(f"the probe returned {key} of type {type(value).__name__} (dtype {array.dtype})")
        arrays[key] = array
    partial = path + ".partial"
    with open(partial, "wb") as handle:
        np.savez(handle, **arrays)
    os.replace(partial, path)


def load_inputs(task: dict, shared: str) -> dict:
    inputs = dict(task["scalars"])
    if task["arrays"]:
        with np.load(os.path.join(shared, task["arrays"]), allow_pickle=False) as data:
            inputs.update({key: data[key] for key in data.files})
    return inputs


def hook_exit() -> None:
    """Record where os._exit was called before the process goes (a best effort: graded code can undo it)."""
    real_exit = os._exit

    def recorded_exit(code=0):
        try:
            emit({"event": "exit", "code": code, "where": where(frames_of(sys._getframe(1)))})
        finally:
            real_exit(code)
    os._exit = recorded_exit


def main(plan_path: str) -> int:
    global EVENTS, CODE_ROOT, np
    with open(plan_path, encoding="utf-8") as handle:
        plan = json.load(handle)
    sys.path.extend(plan["site"])      # after the standard library; the graded copy comes first, later
    import numpy
    np = numpy
    shared, out = os.path.dirname(os.path.abspath(plan_path)), plan["out"]
    CODE_ROOT = os.path.abspath(plan["code_root"])
    EVENTS = open(os.path.join(out, "events.jsonl"), "a", encoding="utf-8")  # noqa: SIM115 - open until exit
    timeout, grace = float(plan["timeout"]), float(plan["grace"])
    emit({"event": "started", "pid": os.getpid()})

    load_trusted_checks(os.path.join(shared, "checks"))
    probes = {}
    for task in plan["tasks"]:
        module_name, function_name = task["probe"].split(":")
        probes[task["probe"]] = getattr(importlib.import_module(module_name), function_name)

    sys.path.insert(0, CODE_ROOT)       # the graded copy's package root, and nothing else of its tree
    hook_exit()
    emit({"event": "start", "phase": "import"})
    try:
        with Phase("import", timeout, out, grace):
            importlib.import_module("tinyq")
    except BaseException as error:  # noqa: BLE001 - whatever the graded code raises is a result
        emit({"event": "import_failed", **describe(error)})
        return 0
    emit({"event": "end", "phase": "import"})

    for exercise in plan["exercises"]:
        tasks = [t for t in plan["tasks"] if t["exercise"] == exercise]
        emit({"event": "start", "phase": exercise})
        try:
            with Phase(exercise, timeout, out, grace):
                for task in tasks:
                    try:
                        outputs = probes[task["probe"]](**load_inputs(task, shared))
                        save_outputs(os.path.join(out, task["id"] + ".npz"), outputs)
                        emit({"event": "done", "task": task["id"]})
                    except ProbeTimeout:
                        raise
                    except BaseException as error:  # noqa: BLE001
                        emit({"event": "error", "task": task["id"], **describe(error)})
        except ProbeTimeout as error:
            emit({"event": "timeout", "phase": exercise, **describe(error)})
        emit({"event": "end", "phase": exercise})
    emit({"event": "finished"})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
