"""Which exercises' code a trusted check really runs: the prerequisites, derived by tracing.

    prerequisites(E) = { F != E : some line inside a solution region of F runs while a check of E probes }

The reference's probes are run in this process under sys.settrace, on inputs drawn from a few seeds;
every executed line is looked up in the solution regions (### BEGIN SOLUTION F ... ### END SOLUTION)
of the reference's source files. tests/test_grading_checks.py compares the result with the
prerequisites that exercises.toml declares, so "blocked by" in a report names real dependencies.
"""
from __future__ import annotations

import sys
import zlib
from pathlib import Path

import numpy as np

import tinyq.grading.checks as machinery
from .exercises import load_exercises
from .student import find_regions


def solution_regions(root: Path, exercises) -> dict[str, list[tuple[int, int, str]]]:
    """{absolute file name: [(begin line, end line, exercise id)]} of every region under root/tinyq."""
    regions = {}
    for path in sorted((root / "tinyq").rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        found = find_regions(lines, str(path), exercises)
        if found:
            regions[str(path.resolve())] = [(r.begin, r.end, r.exercise_id) for r in found]
    return regions


def exercises_run_by(probe, inputs: dict, regions) -> set[str]:
    """The exercise ids whose region lines run while probe(**inputs) runs."""
    hits: set[str] = set()

    def trace_lines(frame, event, arg):
        if event == "line":
            for begin, end, exercise in regions[frame.f_code.co_filename]:
                if begin < frame.f_lineno < end:
                    hits.add(exercise)
        return trace_lines

    def trace_calls(frame, event, arg):
        return trace_lines if frame.f_code.co_filename in regions else None

    previous = sys.gettrace()
    sys.settrace(trace_calls)
    try:
        probe(**inputs)
    finally:
        sys.settrace(previous)
    return hits


def derived_prerequisites(root: Path | None = None, seeds=range(3)) -> dict[str, list[str]]:
    """{exercise id: sorted ids of the exercises its checks run through, itself included (a check that does
    not run its own exercise's code is vacuous)} for the installed checks."""
    root = Path(machinery.__file__).resolve().parents[3] if root is None else Path(root)
    exercises = load_exercises(root / "tinyq" / "grading" / "exercises.toml")
    regions = solution_regions(root, exercises)
    found: dict[str, set[str]] = {}
    for check in machinery.all_checks():
        draw, probe = machinery.resolve(check.draw), machinery.resolve(check.probe)
        used = found.setdefault(check.exercise, set())
        for seed in seeds:
            for case in range(check.cases):
                inputs = draw(np.random.default_rng([seed, zlib.crc32(check.key.encode()), case]))
                used |= exercises_run_by(probe, inputs, regions)
    return {exercise: sorted(used, key=machinery.exercise_sort_key) for exercise, used in found.items()}
