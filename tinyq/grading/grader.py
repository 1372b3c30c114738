"""Grade the code at PATH with the reference tests: per exercise passed / failed / blocked, with points.

The tests come from the reference repository (the one this module belongs to),
copied to a temporary folder, so the graded code cannot weaken them. They run
in a subprocess, `python -m pytest`, with PATH first on PYTHONPATH; the plugin
(plugin.py, copied beside the tests) refuses to run if `tinyq` is imported from
anywhere else, and records every exercise test's outcome as it happens.

Robustness: each test has a timeout (pytest-timeout, signal method); a test
that ignores it, or crashes the interpreter, is marked failed by a watchdog
here, and pytest is restarted without the tests already done. A test file that
does not import (say, a syntax error in the module it tests) fails the
exercises it tests; the other files still run.

Status: passed = every test of the exercise passed; blocked = it did not pass
and a prerequisite did not pass either; failed = otherwise.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tinyq import atomic

from .exercises import all_prerequisites, load_exercises

PLUGIN_MODULE = "tinyq_grade_plugin"
EXERCISE_MARK = re.compile(r"""exercise\(\s*["']([^"']+)["']""")


class GradingError(RuntimeError):
    """Grading could not run at all (no code at PATH, a shadowing install, pytest broke)."""


def reference_root() -> Path:
    """The repository this tinyq was installed from: it holds tinyq/ and tests/."""
    return Path(__file__).resolve().parents[2]


def exercises_in_tests(tests_dir: Path) -> dict[str, set[str]]:
    """{test file relative to tests_dir's parent: exercise ids its markers name} by a plain text scan."""
    found = {}
    for path in sorted(tests_dir.rglob("test_*.py")):
        if "fixtures" in path.relative_to(tests_dir).parts:
            continue
        ids = set(EXERCISE_MARK.findall(path.read_text(encoding="utf-8", errors="replace")))
        if ids:
            found[path.relative_to(tests_dir.parent).as_posix()] = ids
    return found


def _pytest_command(tmp: Path, record: Path, code: Path, selected, timeout: float, done) -> list[str]:
    command = [sys.executable, "-m", "pytest", "tests", "-c", str(tmp / "pytest.ini"), "--rootdir", str(tmp),
               "-p", PLUGIN_MODULE, "-p", "no:cacheprovider", "-m", "exercise", "--strict-markers",
               "--continue-on-collection-errors", "-q", "--no-header", "-rN",
               "--tinyq-record", str(record), "--tinyq-code", str(code)]
    if importlib.util.find_spec("pytest_timeout") is not None:
        command += ["--timeout", str(timeout), "--timeout-method", "signal"]
    for ex_id in selected or ():
        command += ["--tinyq-exercise", ex_id]
    for nodeid in sorted(done):
        command += ["--deselect", nodeid]
    return command


def _kill(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


def _run_tests(code: Path, tests: Path, selected, timeout: float, stall_timeout: float):
    """(collected {nodeid: id}, results {nodeid: result}, collection errors [..], log text)."""
    collected: dict[str, str] = {}
    results: dict[str, dict] = {}
    collect_errors: dict[str, str] = {}
    log_parts: list[str] = []
    grace = max(2.0, 0.5 * timeout)
    with tempfile.TemporaryDirectory(prefix="tinyq-grade-") as tmp_name:
        tmp = Path(tmp_name)
        shutil.copytree(tests, tmp / "tests", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache"))
        shutil.copy(Path(__file__).with_name("plugin.py"), tmp / f"{PLUGIN_MODULE}.py")
        (tmp / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
        env.update(PYTHONPATH=os.pathsep.join([str(code), str(tmp)]), PYTHONDONTWRITEBYTECODE="1",
                   NUMBA_CACHE_DIR=str(tmp / "numba-cache"), MPLBACKEND="Agg")
        for attempt in range(1000):
            record = tmp / f"record-{attempt}.jsonl"
            record.touch()
            done = set(results)
            with open(tmp / f"pytest-{attempt}.log", "w+", encoding="utf-8") as log:
                process = subprocess.Popen(_pytest_command(tmp, record, code, selected, timeout, done), cwd=tmp,
                                           env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           start_new_session=True)
                running, last_event, offset, restart = None, time.monotonic(), 0, False
                while True:
                    exited = process.poll() is not None
                    with open(record, "rb") as handle:
                        handle.seek(offset)
                        chunk = handle.read()
                    complete = chunk[:chunk.rfind(b"\n") + 1]
                    offset += len(complete)
                    for line in complete.decode("utf-8").splitlines():
                        event = json.loads(line)
                        last_event = time.monotonic()
                        kind = event["event"]
                        if kind == "abort":
                            _kill(process)
                            raise GradingError(event["message"])
                        if kind == "collected":
                            collected[event["nodeid"]] = event["exercise"]
                        elif kind == "collect_error":
                            collect_errors.setdefault(event["nodeid"], event["message"])
                        elif kind == "start":
                            running = (event["nodeid"], time.monotonic())
                        elif kind == "result":
                            results[event["nodeid"]] = event
                            running = None
                    if exited:
                        break
                    now = time.monotonic()
                    if running is not None and now - running[1] > timeout + grace:
                        _kill(process)
                        results[running[0]] = {"nodeid": running[0], "exercise": collected.get(running[0]),
                                               "outcome": "failed", "message": f"hard timeout: still running "
                                               f"after {timeout + grace:.0f} s and deaf to the {timeout:.0f} s "
                                               "timeout signal; the test process was killed"}
                        restart = True
                        break
                    if running is None and now - last_event > stall_timeout:
                        _kill(process)
                        collect_errors.setdefault("", f"pytest made no progress for {stall_timeout:.0f} s outside "
                                                      "any test (an import that never returns?); killed")
                        break
                    time.sleep(0.05)
                log.seek(0)
                log_parts.append(log.read())
            returncode = process.returncode
            if running is not None and not restart and running[0] not in results:
                results[running[0]] = {"nodeid": running[0], "exercise": collected.get(running[0]),
                                       "outcome": "failed",
                                       "message": f"crashed: the test process died (exit code {returncode})"}
                restart = True
            if restart:
                continue
            if returncode in (2, 3, 4) and not collected and not collect_errors:
                raise GradingError(f"pytest could not run (exit code {returncode}):\n" + log_parts[-1][-4000:])
            break
    return collected, results, collect_errors, "".join(log_parts)


def grade(path=".", exercise: str | None = None, *, reference=None, timeout: float = 60.0,
          stall_timeout: float = 300.0, json_path=None) -> dict:
    """report = outcome of the reference's exercise tests run against the tinyq at path."""
    code = Path(path).resolve()
    if not (code / "tinyq").is_dir():
        raise GradingError(f"{code} has no tinyq/ folder: give the root of a (student) copy of tinyq")
    reference = Path(reference).resolve() if reference is not None else reference_root()
    tests = reference / "tests"
    if not tests.is_dir():
        raise GradingError(f"the reference tests {tests} are missing: grade from a clone of tinyq "
                           "(pip install -e .), not from a wheel")
    exercises = load_exercises(reference / "tinyq" / "grading" / "exercises.toml")
    if exercise is not None and exercise not in exercises:
        raise ValueError(f"unknown exercise {exercise!r}; choose one of {', '.join(exercises)}")
    selected = None if exercise is None else [exercise] + all_prerequisites(exercises, exercise)
    started = time.monotonic()
    collected, results, collect_errors, log = _run_tests(code, tests, selected, timeout, stall_timeout)
    files = exercises_in_tests(tests)
    per_exercise: dict[str, list[dict]] = {ex_id: [] for ex_id in exercises}
    for nodeid, result in results.items():
        ex_id = result.get("exercise") or collected.get(nodeid)
        per_exercise.setdefault(ex_id, []).append(
            {"nodeid": nodeid, "outcome": result["outcome"], "message": result.get("message", "")})
    for nodeid, message in collect_errors.items():
        for file, ids in files.items():
            if nodeid in ("", "tests") or file == nodeid or file.startswith(nodeid.rstrip("/") + "/"):
                for ex_id in ids:
                    per_exercise.setdefault(ex_id, []).append(
                        {"nodeid": nodeid or "(session)", "outcome": "failed", "message": "collection error: " + message})
    for nodeid, ex_id in collected.items():  # collected but never reported (e.g. the run was stopped)
        if nodeid not in results:
            per_exercise.setdefault(ex_id, []).append(
                {"nodeid": nodeid, "outcome": "failed", "message": "did not run to completion"})
    wanted = list(exercises) if selected is None else [e for e in exercises if e in selected]
    status: dict[str, str] = {}
    for ex_id in wanted:
        tests_of = per_exercise.get(ex_id, [])
        status[ex_id] = "passed" if tests_of and all(t["outcome"] == "passed" for t in tests_of) else "failed"
    rows = []
    for ex_id in wanted:
        info = exercises[ex_id]
        blockers = [p for p in all_prerequisites(exercises, ex_id) if status.get(p) != "passed"]
        final = "blocked" if status[ex_id] == "failed" and blockers else status[ex_id]
        tests_of = per_exercise.get(ex_id, [])
        if not tests_of:
            tests_of = [{"nodeid": "", "outcome": "failed", "message": "no test for this exercise was found"}]
        rows.append({"id": ex_id, "title": info.title, "chapter": info.chapter, "status": final,
                     "points": info.points, "earned": info.points if final == "passed" else 0,
                     "blocked_by": blockers if final == "blocked" else [],
                     "passed_tests": sum(t["outcome"] == "passed" for t in tests_of), "tests": tests_of})
    unknown = sorted(k for k in per_exercise if k not in exercises and per_exercise[k])
    report = {
        "path": str(code), "reference": str(reference), "exercise": exercise, "timeout": timeout,
        "seconds": round(time.monotonic() - started, 2),
        "earned": sum(r["earned"] for r in rows), "points": sum(r["points"] for r in rows),
        "passed": sum(r["status"] == "passed" for r in rows), "total": len(rows),
        "ok": bool(rows) and all(r["status"] == "passed" for r in rows) and not unknown,
        "unknown_exercise_ids": unknown, "exercises": rows, "collection_errors": collect_errors,
        "pytest_log_tail": log[-6000:],
    }
    if json_path is not None:
        write_json_atomic(json_path, report)
    return report


def write_json_atomic(path, data) -> Path:
    """path = json(data), written to a temporary file in the same folder and renamed over path."""
    return atomic.write_json(path, data)


def failure_line(test: dict) -> str:
    """The one line of a failure worth printing: pytest's first `E <Name>Error: ...` line, else its last
    `E ...` line, else the last line."""
    lines = [line.strip() for line in test["message"].strip().splitlines() if line.strip()]
    errors = [line[1:].strip() for line in lines if line.startswith("E ")]
    named = [line for line in errors if re.match(r"([\w.]+(Error|Exception)|Failed|assert)\b", line)]
    return (named[:1] or errors or lines or [test["outcome"]])[-1][:300]


def format_report(report: dict) -> str:
    """The per-exercise table `tinyq grade` prints."""
    header = f"{'id':<5} {'status':<8} {'tests':>7} {'points':>7}  title"
    lines = [f"grading {report['path']}", header, "-" * len(header)]
    for row in report["exercises"]:
        note = f"  (blocked by {', '.join(row['blocked_by'])})" if row["blocked_by"] else ""
        lines.append(f"{row['id']:<5} {row['status']:<8} {row['passed_tests']:>3}/{len(row['tests']):<3} "
                     f"{row['earned']:>3}/{row['points']:<3}  {row['title']}{note}")
    lines.append("-" * len(header))
    lines.append(f"{report['passed']}/{report['total']} exercises passed, {report['earned']}/{report['points']} "
                 f"points, {report['seconds']:.1f} s")
    for ex_id in report["unknown_exercise_ids"]:
        lines.append(f"warning: tests are marked with exercise id {ex_id!r}, which exercises.toml does not list")
    failing = [r for r in report["exercises"] if r["status"] != "passed"]
    for row in failing:
        for test in row["tests"]:
            if test["outcome"] != "passed":
                lines.append(f"  {row['id']} {test['nodeid']}: {failure_line(test)}")
                break
    return "\n".join(lines)
