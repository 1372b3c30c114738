"""Grade a whole class: one row per student, one column per exercise, written as CSV and JSON.

    row(student)  = grade(student's copy, seed = SeedSequence(run_seed, spawn_key=(crc32(name),)))
    key(student)  = sha256(files of student/tinyq, reference fingerprint, run seed, options)

Each submission is one task of tinyq.parallel (serial, a local process pool or a Dask cluster), graded
under the trusted grader's isolation, so a submission that crashes, hangs, floods or forks costs only
its own row. Per-student reports are written to OUT/reports/<student>.json by this process as each
task finishes; a rerun reuses every report whose key is unchanged and grades only the rest. The seed of
a student depends on the run seed and the student's name only, so the gradebook is the same whatever
the executor, the number of workers and the order in which tasks finish.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from tinyq import atomic
from tinyq.parallel import make_executor, task_seed
from tinyq.records import format_table, save_csv, save_json

from .exercises import load_exercises
from .grader import fingerprint, grade, reference_root

FIXED_COLUMNS = ["student", "status", "total", "points", "passed", "seconds", "note"]


def find_submissions(paths, exclude=None) -> dict[str, Path]:
    """{student name: folder}. Each path is a submission (it holds tinyq/) or a folder of submissions
    (every non-hidden subfolder but `exclude`, the gradebook's own folder, is one student). ValueError
    for a missing path, a folder with no submissions, or two students with the same folder name."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        raise ValueError("no submissions given: expected a folder of student folders or a list of paths")
    found: dict[str, list[Path]] = {}
    for given in map(Path, paths):
        if not given.is_dir():
            raise ValueError(f"submission path {given} is not a folder")
        if (given / "tinyq").is_dir():
            students = [given]
        else:
            skip = Path(exclude).resolve() if exclude is not None else None
            students = sorted(p for p in given.iterdir()
                              if p.is_dir() and not p.name.startswith((".", "_")) and p.resolve() != skip)
            if not students:
                raise ValueError(f"{given} holds no submissions: expected one folder per student "
                                 "(each the root of a copy of tinyq) or a submission itself")
        for folder in students:
            found.setdefault(folder.name, []).append(folder.resolve())
    clashes = {name: folders for name, folders in found.items() if len(folders) > 1}
    if clashes:
        listed = "; ".join(f"{name}: {', '.join(map(str, folders))}" for name, folders in sorted(clashes.items()))
        raise ValueError(f"two submissions share a student name (the folder name), rename one: {listed}")
    return {name: folders[0] for name, folders in sorted(found.items())}


def files_hash(folder: Path) -> str:
    """sha256 over (relative path, contents) of every file under folder/tinyq (no __pycache__)."""
    digest = hashlib.sha256()
    root = folder / "tinyq"
    if root.is_dir():
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
                digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def grade_task(spec: dict) -> dict:
    """One submission, run by an executor worker: {"report": ...} or {"error": ...}; never raises."""
    started = time.monotonic()
    try:
        report = grade(spec["path"], spec["exercise"], reference=spec["reference"], timeout=spec["timeout"],
                       seed=spec["seed"], sandbox=spec["sandbox"], rounds=spec["rounds"])
        return {"report": report, "seconds": round(time.monotonic() - started, 2)}
    except Exception as error:  # noqa: BLE001 - any failure costs this row only; the message says what
        return {"error": f"{type(error).__name__}: {error}", "seconds": round(time.monotonic() - started, 2)}


def _row(name: str, result: dict, exercise_ids: list[str]) -> dict:
    row = {"student": name}
    report = result.get("report")
    if report is None:
        row.update(status="error", total=0, points=0, passed=0, seconds=result["seconds"], note=result["error"][:200])
        row.update({ex_id: "" for ex_id in exercise_ids})
        return row
    earned = {r["id"]: r["earned"] for r in report["exercises"]}
    first = next((r for r in report["exercises"] if r["failures"]), None)
    note = f"{first['id']}: {first['failures'][0]['message']}" if first else ""
    status = "passed" if report["ok"] else ("partial" if report["earned"] else "zero")
    row.update(status=status, total=report["earned"], points=report["points"], passed=report["passed"],
               seconds=result["seconds"], note=" ".join(note.split())[:200])
    row.update({ex_id: earned.get(ex_id, "") for ex_id in exercise_ids})
    return row


def _previous_seed(out: Path) -> int | None:
    for candidate in [out / "gradebook.json", *sorted((out / "reports").glob("*.json"))]:
        try:
            data = json.loads(candidate.read_text())
            return int(data.get("metadata", data)["run_seed"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def grade_class(submissions, out, *, exercise=None, reference=None, timeout: float = 20.0, seed=None,
                sandbox: str = "auto", rounds: int = 1, jobs=None, scheduler=None, progress: bool = False,
                connect_timeout: float = 5.0, echo=print) -> dict:
    """Grade every submission (resuming from OUT/reports), write OUT/gradebook.{csv,json}; returns the
    gradebook {"run_seed", "exercises", "rows", "graded", "reused", "executor"}.
    Everything is checked (paths, names, options, the scheduler) before anything is written."""
    out = Path(out)
    students = find_submissions(submissions, exclude=out)
    reference = Path(reference).resolve() if reference is not None else reference_root()
    exercises = load_exercises(reference / "tinyq" / "grading" / "exercises.toml")
    if exercise is not None and exercise not in exercises:
        raise ValueError(f"unknown exercise {exercise!r}; choose one of {', '.join(exercises)}")
    if seed is None:
        seed = _previous_seed(out)
    if seed is None:
        seed = int.from_bytes(os.urandom(8), "little")
    reference_hash = hashlib.sha256(json.dumps(fingerprint(reference), sort_keys=True).encode()).hexdigest()
    options = {"exercise": exercise, "reference": str(reference), "timeout": timeout, "sandbox": sandbox,
               "rounds": rounds}
    specs, keys, reused = {}, {}, {}
    for name, folder in students.items():
        keys[name] = hashlib.sha256(json.dumps([files_hash(folder), reference_hash, seed, str(folder), options],
                                               sort_keys=True).encode()).hexdigest()
        try:
            saved = json.loads((out / "reports" / f"{name}.json").read_text())
        except (OSError, ValueError):
            saved = None
        if isinstance(saved, dict) and saved.get("key") == keys[name]:
            reused[name] = saved["result"]
        else:
            specs[name] = dict(options, path=str(folder), seed=task_seed(seed, name))
    with make_executor(jobs, scheduler, connect_timeout=connect_timeout) as executor:
        names = list(specs)
        echo(f"grading {len(names)} of {len(students)} submissions on {executor.describe()}"
             f" ({len(reused)} unchanged since the last run)")

        def save(index, result):
            name = names[index]
            atomic.write_json(out / "reports" / f"{name}.json",
                              {"student": name, "path": specs[name]["path"], "key": keys[name], "run_seed": seed,
                               "result": result})

        results = executor.map(grade_task, [specs[n] for n in names], desc="grading", progress=progress,
                               on_result=save)
        kind = executor.describe()
    fresh = dict(zip(names, results))
    ids = [e for e in exercises if any(e == r["id"] for res in [*fresh.values(), *reused.values()]
                                       for r in (res.get("report") or {}).get("exercises", []))] or list(exercises)
    rows = [_row(name, fresh[name] if name in fresh else reused[name], ids) for name in students]
    book = {"run_seed": seed, "reference": str(reference), "options": options, "exercises": ids,
            "executor": kind, "graded": len(names), "reused": len(reused), "rows": rows}
    save_json(rows, out / "gradebook.json", metadata={k: v for k, v in book.items() if k != "rows"})
    save_csv(rows, out / "gradebook.csv")
    return book


def format_gradebook(book: dict) -> str:
    """The gradebook as a table: student, status, total/points, one column per exercise, note."""
    columns = ["student", "status", "total", "points", *book["exercises"], "note"]
    rows = [{k: (v[:60] if isinstance(v, str) else v) for k, v in row.items()} for row in book["rows"]]
    return format_table(rows, columns, title=f"gradebook ({len(rows)} students, run seed {book['run_seed']})")


__all__ = ["files_hash", "find_submissions", "format_gradebook", "grade_class", "grade_task"]
