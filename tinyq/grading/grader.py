"""Grade the code at PATH with trusted checks: per exercise passed / failed / blocked, with points.

    seed      = os.urandom (secret, per run) unless given
    inputs    = check.draw(rng(seed, check, case))               in this process (numpy only)
    expected  = check.probe(**inputs) in a child on the reference  (the installed tinyq, or --reference)
    got       = check.probe(**inputs) in a child on PATH
    passed    = every case of every check of the exercise: got == expected within the check's tolerance

This process never imports the graded code: it only reads the numbers the child writes (.npz files,
allow_pickle=False) and compares them here, so whatever the graded code does to itself, to pytest, to
NumPy or to files, it can only hand back numbers. The children (runner.py, run by sandbox.py) are
isolated Pythons with resource limits and their own session, killed when their work ends; inside
bubblewrap when available, so the graded code cannot read the reference solution either.

Every exercise gets a verdict in bounded time: a timeout per exercise (and for `import tinyq`), a hard
stop when the code ignores it, and a restart of the child for the exercises left after a crash.
Status: passed; blocked = not passed while a prerequisite did not pass either; failed = otherwise.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

from tinyq import atomic

import tinyq.grading.checks as machinery
from .exercises import all_prerequisites, load_exercises
from .sandbox import Child, child_command, choose_sandbox, site_folders
from .transcript import Side, abbreviate, clean, read_outputs, read_side

RUNNER = Path(__file__).with_name("runner.py")
NO_SANDBOX_WARNING = ("no sandbox (bubblewrap missing or --sandbox none): the graded code could read the "
                      "reference solution from the installed tinyq; install bubblewrap to close this risk")


class GradingError(RuntimeError):
    """Grading could not run at all (no code at PATH, a broken reference, a bad option)."""


def reference_root() -> Path:
    """The repository this tinyq was installed from: it holds tinyq/ and tests/."""
    return Path(__file__).resolve().parents[2]


def check_timeout(timeout) -> float:
    """timeout as a float > 0 (ValueError for <= 0, NaN, infinity or a non-number)."""
    try:
        value = float(timeout)
    except (TypeError, ValueError):
        raise ValueError(f"--timeout must be a number of seconds > 0, got {timeout!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"--timeout must be a finite number of seconds > 0, got {timeout!r}")
    return value


def load_checks(reference: Path) -> tuple[list, dict]:
    """(checks, {module name: module}) registered by the modules of reference/tinyq/grading/checks
    (the installed ones when reference is the installed tinyq; else loaded aside, sys.modules restored)."""
    folder = reference / "tinyq" / "grading" / "checks"
    installed = Path(machinery.__file__).resolve().parent
    if folder.resolve() == installed:
        return machinery.all_checks(), {}
    if not folder.is_dir():
        raise GradingError(f"the reference {reference} has no trusted checks (tinyq/grading/checks/)")
    saved_path, saved_registry = list(machinery.__path__), dict(machinery._registry)
    prefix = machinery.__name__ + "."
    saved_modules = {name: module for name, module in sys.modules.items() if name.startswith(prefix)}
    for name in saved_modules:
        del sys.modules[name]
    machinery.__path__[:] = [str(folder)]
    machinery._registry.clear()
    try:
        found = machinery.all_checks()
        modules = {name: sys.modules[name] for name in sys.modules if name.startswith(prefix)}
        return found, modules
    finally:
        for name in [n for n in sys.modules if n.startswith(prefix)]:
            del sys.modules[name]
        sys.modules.update(saved_modules)
        machinery.__path__[:] = saved_path
        machinery._registry.clear()
        machinery._registry.update(saved_registry)


def draw_tasks(checks, seed: int, wanted, modules=None, rounds: int = 1) -> tuple[list[dict], dict]:
    """(tasks, {task id: inputs}): every case of every check of the wanted exercises, drawn here
    (rounds times as many cases as each check asks for)."""
    tasks, inputs = [], {}
    for check in checks:
        if check.exercise not in wanted:
            continue
        draw = machinery.resolve(check.draw, modules)
        for case in range(check.cases * rounds):
            rng = np.random.default_rng([seed, zlib.crc32(check.key.encode()), case])
            try:
                values = draw(rng)
                arrays, scalars = machinery.split_values(values, f"{check.draw}")
            except Exception as error:
                raise GradingError(f"the draw of check {check.key} failed: {type(error).__name__}: {error}") from error
            task_id = f"t{len(tasks):04d}"
            tasks.append({"id": task_id, "exercise": check.exercise, "check": check.key, "case": case,
                          "probe": check.probe, "scalars": scalars, "arrays": None})
            inputs[task_id] = {**arrays, **scalars}
            tasks[-1]["_arrays"] = arrays
    return tasks, inputs


def prepare_shared(folder: Path, tasks, reference: Path) -> None:
    """folder = runner.py + the trusted checks + one inputs .npz per task (read-only to the child)."""
    (folder / "checks").mkdir(parents=True)
    (folder / "inputs").mkdir()
    shutil.copy(RUNNER, folder / "runner.py")
    shutil.copy(machinery.__file__, folder / "checks" / "__init__.py")
    for module in sorted((reference / "tinyq" / "grading" / "checks").glob("*.py")):
        if module.name != "__init__.py":
            shutil.copy(module, folder / "checks" / module.name)
    for task in tasks:
        if task["_arrays"]:
            task["arrays"] = f"inputs/{task['id']}.npz"
            np.savez(folder / task["arrays"], **task["_arrays"])


def run_side(label: str, code_root: Path, tasks, exercises, *, work: Path, reference: Path, sandbox: str,
             timeout: float, hide=()) -> dict[str, Side]:
    """{exercise id: Side} for one copy of tinyq: the runner in a child, restarted after a crash."""
    shared = work / f"shared-{label}"
    prepare_shared(shared, tasks, reference)
    grace = max(1.0, 0.25 * timeout)
    results: dict[str, Side] = {}
    remaining = [e for e in exercises if any(t["exercise"] == e for t in tasks)]
    for attempt in range(len(remaining) + 1):
        if not remaining:
            break
        out = work / f"out-{label}-{attempt}"
        out.mkdir()
        plan = {"code_root": str(code_root), "out": str(out), "site": site_folders(), "timeout": timeout,
                "grace": grace, "exercises": remaining,
                "tasks": [{k: v for k, v in t.items() if k != "_arrays"} for t in tasks if t["exercise"] in remaining]}
        plan_path = shared / f"plan-{attempt}.json"
        plan_path.write_text(json.dumps(plan), encoding="utf-8")
        command, env = child_command(sandbox, shared / "runner.py", plan_path, code_root=code_root, shared=shared,
                                     out=out, hide=hide)
        log = work / f"log-{label}-{attempt}.txt"
        cpu = int(timeout * (len(remaining) + 1) + 30)
        child = Child(command, env, log, cpu, sandbox)
        attempt_results = read_side(child, out, log, remaining, timeout, grace, str(code_root))
        results.update(attempt_results)
        remaining = [e for e in remaining if e not in results]
    for ex_id in remaining:  # pragma: no cover - every attempt settles at least one exercise
        results[ex_id] = Side(failure={"message": "not run", "where": "unknown"})
    for side in results.values():
        side.outputs = {task_id: read_outputs(out_file) for task_id, out_file in side.output_files.items()}
    return results


def fingerprint(reference: Path) -> dict[str, str]:
    """{relative path: sha256} of the reference's code and checks, to notice a run that changed them."""
    found = {}
    for path in sorted((reference / "tinyq").rglob("*")):
        if path.is_file() and path.suffix in (".py", ".toml") and "__pycache__" not in path.parts:
            found[path.relative_to(reference).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def grade(path=".", exercise: str | None = None, *, reference=None, timeout: float = 20.0, seed: int | None = None,
          sandbox: str = "auto", rounds: int = 1, json_path=None) -> dict:
    """report = the trusted checks of every exercise (or of `exercise` and its prerequisites) run against
    the tinyq at path and compared with the reference's outputs on the same secret inputs."""
    timeout = check_timeout(timeout)
    code = Path(path).resolve()
    if not (code / "tinyq").is_dir():
        raise GradingError(f"{code} has no tinyq/ folder: give the root of a (student) copy of tinyq")
    reference = Path(reference).resolve() if reference is not None else reference_root()
    exercises = load_exercises(reference / "tinyq" / "grading" / "exercises.toml")
    if exercise is not None and exercise not in exercises:
        raise ValueError(f"unknown exercise {exercise!r}; choose one of {', '.join(exercises)}")
    try:
        chosen = choose_sandbox(sandbox)
    except RuntimeError as error:
        raise GradingError(str(error)) from None
    if seed is None:
        seed = int.from_bytes(os.urandom(8), "little")
    elif isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"--seed must be an int >= 0, got {seed!r}")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"--rounds must be an int >= 1, got {rounds!r}")
    wanted = list(exercises) if exercise is None else [e for e in exercises
                                                        if e == exercise or e in all_prerequisites(exercises, exercise)]
    started = time.monotonic()
    checks, modules = load_checks(reference)
    tasks, inputs = draw_tasks(checks, seed, set(wanted), modules, rounds)
    before = fingerprint(reference)
    with tempfile.TemporaryDirectory(prefix="tinyq-grade-") as work_name:
        work = Path(work_name)
        expected = run_side("reference", reference, tasks, wanted, work=work, reference=reference,
                            sandbox=chosen, timeout=timeout)
        broken = {e: side.describe_failure() for e, side in expected.items() if side.failed_tasks()}
        broken.update({e: f"property {name} does not hold for the reference"
                       for e, side in expected.items() for outputs in side.outputs.values()
                       for name, value in outputs.items() if value.dtype == bool and not value.all()})
        if broken:
            raise GradingError(f"the reference {reference} fails its own checks (seed {seed}): {broken}")
        for leftover in work.iterdir():      # the expected outputs: in memory now, and nowhere on disk
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        installed = Path(machinery.__file__).resolve().parents[2]          # the installed tinyq package
        hide = {str(reference / "tinyq"), str(reference / "chapters"), str(installed),
                str(installed.parent / "chapters")}                          # where solutions are written
        got = run_side("submission", code, tasks, wanted, work=work, reference=reference, sandbox=chosen,
                       timeout=timeout, hide=hide)
    after = fingerprint(reference)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    rows = _rows(exercises, wanted, checks, tasks, inputs, expected, got)
    warnings = [] if chosen == "bwrap" else [NO_SANDBOX_WARNING]
    if changed:
        warnings.append(f"the reference's files changed during this run ({', '.join(changed[:5])}): later grades "
                        "against it cannot be trusted; restore it (git checkout) before grading again")
    report = clean({
        "path": str(code), "reference": str(reference), "exercise": exercise, "timeout": timeout, "seed": seed,
        "sandbox": chosen, "rounds": rounds, "seconds": round(time.monotonic() - started, 2),
        "earned": sum(r["earned"] for r in rows), "points": sum(r["points"] for r in rows),
        "passed": sum(r["status"] == "passed" for r in rows), "total": len(rows),
        "ok": bool(rows) and all(r["status"] == "passed" for r in rows) and not changed,
        "reference_changed": changed, "warnings": warnings, "exercises": rows,
    })
    if json_path is not None:
        atomic.write_json(json_path, report)
    return report


def _rows(exercises, wanted, checks, tasks, inputs, expected, got) -> list[dict]:
    tolerance = {c.key: (c.rtol, c.atol) for c in checks}
    status, details = {}, {}
    for ex_id in wanted:
        ex_tasks = [t for t in tasks if t["exercise"] == ex_id]
        failures, passed = [], 0
        side = got.get(ex_id)
        for task in ex_tasks:
            problem = side.problem(task["id"]) if side is not None else {"message": "not run", "where": ""}
            if problem is None:
                reason = machinery.compare(expected[ex_id].outputs[task["id"]], side.outputs[task["id"]],
                                           *tolerance[task["check"]])
                if reason is None:
                    passed += 1
                    continue
                problem = {"message": reason, "where": "",
                           "expected": abbreviate(expected[ex_id].outputs[task["id"]]),
                           "got": abbreviate(side.outputs[task["id"]])}
            failures.append({"check": task["check"], "case": task["case"], "input": abbreviate(inputs[task["id"]]),
                             **problem})
        if not ex_tasks:
            failures.append({"check": "", "case": 0, "input": {}, "where": "",
                             "message": "no trusted check is registered for this exercise (a reference bug)"})
        status[ex_id] = "passed" if not failures else "failed"
        details[ex_id] = (failures, passed, len(ex_tasks))
    rows = []
    for ex_id in wanted:
        info = exercises[ex_id]
        blockers = [p for p in all_prerequisites(exercises, ex_id) if status.get(p) != "passed"]
        final = "blocked" if status[ex_id] == "failed" and blockers else status[ex_id]
        failures, passed, total = details[ex_id]
        rows.append({"id": ex_id, "title": info.title, "chapter": info.chapter, "status": final,
                     "points": info.points, "earned": info.points if final == "passed" else 0,
                     "blocked_by": blockers if final == "blocked" else [], "cases_passed": passed,
                     "cases": total, "failures": failures[:3], "failed_cases": len(failures)})
    return rows


def format_report(report: dict) -> str:
    """The per-exercise table `tinyq grade` prints, then the first failure of each exercise."""
    header = f"{'id':<5} {'status':<8} {'cases':>7} {'points':>7}  title"
    lines = [f"grading {report['path']} (sandbox: {report['sandbox']}, seed {report['seed']})", header,
             "-" * len(header)]
    for row in report["exercises"]:
        note = f"  (blocked by {', '.join(row['blocked_by'])})" if row["blocked_by"] else ""
        lines.append(f"{row['id']:<5} {row['status']:<8} {row['cases_passed']:>3}/{row['cases']:<3} "
                     f"{row['earned']:>3}/{row['points']:<3}  {row['title']}{note}")
    lines.append("-" * len(header))
    lines.append(f"{report['passed']}/{report['total']} exercises passed, {report['earned']}/{report['points']} "
                 f"points, {report['seconds']:.1f} s")
    for row in report["exercises"]:
        if row["failures"]:
            failure = row["failures"][0]
            where = f" at {failure['where']}" if failure.get("where") else ""
            lines.append(f"  {row['id']} {failure['check']} case {failure['case']}: {failure['message']}{where}")
            for key in ("input", "expected", "got"):
                if failure.get(key):
                    text = ", ".join(f"{name}={value}" for name, value in failure[key].items())
                    lines.append(f"      {key}: {text[:300]}")
    lines.extend(f"warning: {w}" for w in report["warnings"])
    return "\n".join(lines)


__all__ = ["GradingError", "check_timeout", "format_report", "grade", "load_checks", "reference_root"]
