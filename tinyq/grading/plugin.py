"""pytest plugin for `tinyq grade`: record each exercise test's outcome as JSON lines.

Standalone on purpose (imports neither tinyq nor anything outside the standard
library and pytest): the grader copies this file next to the reference tests
and loads it with `-p`, so the code being graded cannot replace it.

Options: --tinyq-record FILE (JSON lines written as tests run),
--tinyq-code DIR (abort unless `tinyq` is imported from DIR),
--tinyq-exercise ID (repeatable; keep only these exercises' tests).
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import pytest

_record_path = None
_outcomes: dict[str, dict] = {}
_exercise_of: dict[str, str] = {}


def _write(event: dict) -> None:
    if _record_path is None:
        return
    event["time"] = time.time()
    with open(_record_path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(event) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _locations_of_tinyq() -> list[str]:
    module = sys.modules.get("tinyq")
    if module is not None:
        return [str(p) for p in getattr(module, "__path__", [])] or [str(getattr(module, "__file__", ""))]
    spec = importlib.util.find_spec("tinyq")
    if spec is None:
        return []
    return [str(p) for p in (spec.submodule_search_locations or [])] or [str(spec.origin)]


def _check_code_location(config) -> None:
    code = config.getoption("tinyq_code")
    if not code:
        return
    root = Path(code).resolve()
    locations = _locations_of_tinyq()
    wrong = [loc for loc in locations if root not in Path(loc).resolve().parents]
    if not locations or wrong:
        message = (f"tinyq grade: the code under test must be imported from {root}, but `tinyq` resolves to "
                   f"{locations or 'nothing'}; another tinyq (an installed copy?) shadows the one being graded")
        _write({"event": "abort", "message": message})
        raise pytest.UsageError(message)


def pytest_addoption(parser):
    group = parser.getgroup("tinyq-grade")
    group.addoption("--tinyq-record", dest="tinyq_record", default=None, help="JSON-lines file of outcomes")
    group.addoption("--tinyq-code", dest="tinyq_code", default=None, help="folder tinyq must be imported from")
    group.addoption("--tinyq-exercise", dest="tinyq_exercise", action="append", default=[],
                    help="keep only the tests of this exercise id (repeatable)")


def pytest_configure(config):
    global _record_path
    config.addinivalue_line("markers", "exercise(id): an exercise test, graded by tinyq grade")
    _record_path = config.getoption("tinyq_record")
    _check_code_location(config)


def pytest_collectreport(report):
    if report.failed:
        _write({"event": "collect_error", "nodeid": report.nodeid,
                "message": _short(report.longreprtext)})


def pytest_collection_modifyitems(config, items):
    wanted = set(config.getoption("tinyq_exercise"))
    keep, drop = [], []
    for item in items:
        marker = item.get_closest_marker("exercise")
        ex_id = str(marker.args[0]) if marker is not None and marker.args else None
        if ex_id is None or (wanted and ex_id not in wanted):
            drop.append(item)
            continue
        _exercise_of[item.nodeid] = ex_id
        keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    for item in keep:
        _write({"event": "collected", "nodeid": item.nodeid, "exercise": _exercise_of[item.nodeid]})


def pytest_collection_finish(session):
    _check_code_location(session.config)  # a test module might have imported another tinyq


def pytest_runtest_logstart(nodeid, location):
    _write({"event": "start", "nodeid": nodeid})


def pytest_runtest_logreport(report):
    state = _outcomes.setdefault(report.nodeid, {"outcome": "passed", "message": ""})
    if report.failed and state["outcome"] != "failed":
        state["outcome"] = "failed"
        state["message"] = f"{report.when}: " + _short(report.longreprtext)
    elif report.skipped and state["outcome"] == "passed":
        state["outcome"] = "skipped"
        state["message"] = _short(str(report.longrepr[-1]) if isinstance(report.longrepr, tuple)
                                  else report.longreprtext)
    if report.when == "teardown":
        _write({"event": "result", "nodeid": report.nodeid, "exercise": _exercise_of.get(report.nodeid),
                "outcome": state["outcome"], "message": state["message"]})


def _short(text: str, limit: int = 2000) -> str:
    """The last lines of a failure, where the error message is."""
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]
