"""Watch a grading child and read what it wrote: events, outputs, stack dumps; nothing of it is trusted.

The child's events.jsonl says which phase ("import", then one exercise at a time) runs; this module
enforces the time limits from outside (the child's own watchdog may have been disabled), and turns
every way a child can end (finished, timed out, exited, killed by a limit, flooded) into a verdict per
exercise with a reason and, when one is known, the file and line where the code was.
"""
from __future__ import annotations

import json
import os
import re
import signal
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

EVENTS_LIMIT = 4 << 20         # bytes of events read from one child; more is a flood
OUTPUT_LIMIT = 32 << 20        # bytes of one outputs .npz
STARTUP_LIMIT = 60.0           # seconds for the child to load Python and numpy
FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+) in (?P<function>\S+)')


@dataclass
class Side:
    """What one child produced for one exercise."""

    output_files: dict = field(default_factory=dict)   # task id -> Path of its outputs .npz
    errors: dict = field(default_factory=dict)         # task id -> {"message", "where"}
    failure: dict | None = None                        # the whole exercise failed (timeout, crash, import)
    outputs: dict = field(default_factory=dict)        # task id -> {name: array} or an error string

    def problem(self, task_id: str) -> dict | None:
        """None when task_id produced outputs; else {"message", "where"}."""
        if self.failure is not None:
            return self.failure
        if task_id in self.errors:
            return self.errors[task_id]
        outputs = self.outputs.get(task_id)
        if isinstance(outputs, dict):
            return None
        return {"message": outputs or "the probe produced no output", "where": ""}

    def failed_tasks(self) -> bool:
        return self.failure is not None or bool(self.errors) or \
            any(not isinstance(v, dict) for v in self.outputs.values())

    def describe_failure(self) -> str:
        first = self.failure or next(iter(self.errors.values()), None) or \
            {"message": next((v for v in self.outputs.values() if not isinstance(v, dict)), ""), "where": ""}
        return f"{first['message']} ({first.get('where') or 'no location'})"


def read_outputs(path: Path):
    """{name: array} from an outputs .npz the child wrote, or a string saying why it cannot be used.
    The file is opened without following links and must be a regular file of bounded size."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        return f"the probe's output file cannot be opened ({error.strerror})"
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > OUTPUT_LIMIT:
            return "the probe's output file is not a regular file of at most 32 MB"
        try:
            with np.load(handle, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
        except Exception as error:  # noqa: BLE001 - anything malformed is the child's failure
            return f"the probe's output file is unreadable ({type(error).__name__})"
    if any(a.dtype.kind not in "biufcU" for a in arrays.values()):
        return "the probe's outputs hold a non-numeric array"
    return arrays


def abbreviate(values: dict, limit: int = 160) -> dict:
    """{name: short text} of an inputs or outputs dict, for the report."""
    short = {}
    for name, value in values.items():
        if isinstance(value, np.ndarray):
            text = np.array2string(value, threshold=12, edgeitems=2, precision=6, max_line_width=10_000)
            text = " ".join(text.split())
            if value.ndim:
                text += f" {value.dtype}{list(value.shape)}"
        else:
            text = repr(value)
        short[name] = text if len(text) <= limit else text[:limit] + "…"
    return short


def _tail(path: Path, size: int = 600) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, os.fstat(handle.fileno()).st_size - size))
            return handle.read().decode("utf-8", errors="replace").strip()
    except OSError:
        return ""


def _trace_location(path: Path, code_root: str) -> str:
    """The innermost frame of the main thread inside code_root (else innermost) from a faulthandler dump."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    blocks = [[m.groupdict() for m in FRAME.finditer(block)]            # per thread, most recent call first
              for block in re.split(r"\n(?=(?:Current thread|Thread) 0x)", text)]
    inside = [f for frames in blocks for f in frames if f["file"].startswith(code_root + os.sep)]
    frame = (inside or [f for frames in blocks for f in frames] or [None])[0]
    if frame is None:
        return ""
    filename = os.path.relpath(frame["file"], code_root) if frame["file"].startswith(code_root + os.sep) \
        else frame["file"]
    return f"{filename}:{frame['line']} in {frame['function']}"


def _death(code: int | None, killed_by_us: str | None) -> str:
    if killed_by_us:
        return killed_by_us
    if code is not None and code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        meaning = {"SIGXFSZ": "it wrote more than the 32 MB output limit",
                   "SIGXCPU": "it used up its CPU-time limit", "SIGKILL": "killed (memory or CPU limit?)"}
        return f"the child process was killed by {name}" + (f": {meaning[name]}" if name in meaning else "")
    return f"the child process exited with code {code}"


def read_side(child, out: Path, log: Path, exercises: list[str], timeout: float, grace: float,
              code_root: str) -> dict:
    """Watch child until it finishes or must be stopped; {exercise: Side} for every exercise settled."""
    events_path = out / "events.jsonl"
    sides: dict[str, Side] = {}
    current, phase_started, offset, finished, killed_by_us, exit_event = None, None, 0, False, None, None
    import_failure, last_event = None, None        # last_event: when the child last reported anything
    while True:
        exited = child.poll() is not None
        chunk, offset_before = b"", offset
        try:
            descriptor = os.open(events_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            with os.fdopen(descriptor, "rb") as handle:
                if stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                    handle.seek(offset)
                    chunk = handle.read(EVENTS_LIMIT - offset + 1)
        except OSError:
            pass
        complete = chunk[:chunk.rfind(b"\n") + 1]
        offset += len(complete)
        for line in complete.decode("utf-8", errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            last_event = time.monotonic()
            kind, phase = event.get("event"), event.get("phase")
            if kind == "start" and (phase == "import" or phase in exercises):
                current, phase_started = phase, time.monotonic()
                if phase != "import":
                    sides[phase] = Side()
            elif kind == "end" and phase == current:
                current = None
            elif kind in ("done", "error") and current in sides:
                task = str(event.get("task"))
                if kind == "done":
                    sides[current].output_files[task] = out / f"{task}.npz"
                else:
                    sides[current].errors[task] = _problem(event)
            elif kind == "timeout" and current in sides:
                sides[current].failure = _problem(event)
            elif kind == "import_failed":
                import_failure = _problem(event, prefix="import tinyq failed: ")
            elif kind == "exit":
                exit_event = event
            elif kind == "finished":
                finished = True
        if exited:
            break
        now = time.monotonic()
        if offset_before + len(chunk) > EVENTS_LIMIT:
            killed_by_us = "the child flooded its events file; stopped"
        elif current is not None and now - phase_started > timeout + grace + 5.0:
            killed_by_us = (f"still running {now - phase_started:.0f} s after its {timeout:g} s timeout, deaf to "
                            "the timeout and to its watchdog; killed")
        elif current is None and (now - child.started > STARTUP_LIMIT if last_event is None
                                  else now - last_event > timeout + grace + 5.0):
            killed_by_us = "the child made no progress outside any exercise's time; killed"
        if killed_by_us:
            break
        time.sleep(0.02)
    code = child.stop()
    if import_failure is not None:
        return {e: Side(failure=import_failure) for e in exercises}
    if current is not None or not finished:
        reason = _death(code, killed_by_us)
        location = ""
        if exit_event is not None:
            reason = f"the code called os._exit({exit_event.get('code')!s:.20})"
            location = str(exit_event.get("where", ""))[:300]
        elif current is not None and (out / f"trace-{current}.txt").exists() and not killed_by_us:
            location = _trace_location(out / f"trace-{current}.txt", code_root)
            if location:
                reason = f"stopped after the {timeout:g} s timeout + {grace:g} s grace (it ignored the timeout)"
        tail = _tail(log)
        failure = {"message": reason + (f"; last output: {tail[-300:]}" if tail else ""), "where": location}
        if current == "import" or (current is None and not sides):
            return {e: Side(failure=dict(failure, message="import tinyq: " + failure["message"]))
                    for e in exercises}
        if current is not None:
            sides[current].failure = failure
        else:      # died between exercises: the next one gets the blame, so that the run moves on
            later = [e for e in exercises if e not in sides]
            if later:
                sides[later[0]] = Side(failure=failure)
    return sides


def clean(value):
    """value with every string made printable UTF-8 (lone surrogates from undecodable bytes become \\udcXX),
    recursively through dicts and lists: what the child wrote must not break the report."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {clean(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


def _problem(event: dict, prefix: str = "") -> dict:
    return clean({"message": prefix + str(event.get("message", "failed"))[:1500],
                  "where": str(event.get("where", ""))[:300]})
