"""`tinyq student` and `tinyq grade`: hand out a student copy, grade a submission with trusted checks."""
from __future__ import annotations

import argparse
import math
import os

from tinyq.cli import arg, command
from tinyq.commands.parallel_options import parallel_args


def _seconds(text: str) -> float:
    """argparse type: a finite number of seconds > 0 (rejects 0, negatives, NaN and infinity)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds > 0, got {text!r}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer seed >= 0, got {text!r}")
    return value


@command("student", help="write a student copy: solution regions replaced by NotImplementedError",
         args=[arg("out", help="folder to create (must be new or empty)"),
               arg("--src", default=None, help="repository to copy (default: the one tinyq is installed from)")])
def student_command(args) -> int:
    """Copy the repository to OUT (the files git tracks, in a git checkout) with every solution region
    replaced by a NotImplementedError naming the exercise and its chapter. Notebooks lose their outputs.
    The copy is built beside OUT and renamed, so an interrupted run leaves no partial OUT."""
    from tinyq.grading import load_exercises, make_student_copy, reference_root

    src = args.src or reference_root()
    counts = make_student_copy(src, args.out)
    exercises = load_exercises(os.path.join(src, "tinyq", "grading", "exercises.toml"))
    print(f"wrote the student copy of {src} to {args.out}")
    print(f"{sum(counts.values())} solution regions removed for {sum(1 for c in counts.values() if c)} "
          f"of {len(exercises)} exercises")
    missing = [ex_id for ex_id, count in counts.items() if count == 0]
    if missing:
        print(f"warning: no solution region found for exercises {', '.join(missing)}")
    print(f"hand it out; grade a submission with: tinyq grade {args.out}")
    return 0


@command("grade", help="grade a (student) copy, or a whole class into a gradebook: trusted checks decide",
         args=[arg("paths", nargs="*", default=["."], metavar="PATH",
                   help="root of the copy to grade; or a folder of student folders, or several copies: "
                        "then a gradebook is written to --out"),
               arg("--exercise", default=None, help="grade only this exercise id (and its prerequisites)"),
               arg("--json", default="grade-report.json", dest="json_path", metavar="FILE",
                   help="where to write the JSON report (one submission)"),
               arg("--out", default="gradebook", metavar="DIR",
                   help="gradebook folder (a class): gradebook.csv, gradebook.json, reports/<student>.json"),
               arg("--timeout", type=_seconds, default=20.0,
                   help="seconds allowed per exercise (and for importing tinyq)"),
               arg("--seed", type=_seed, default=None,
                   help="seed of the drawn inputs (default: a secret random one; the report records it)"),
               arg("--rounds", type=int, default=1,
                   help="draw this many times the cases each check asks for (a stricter, slower grade)"),
               arg("--sandbox", choices=["auto", "bwrap", "none"], default="auto",
                   help="run the graded code inside bubblewrap (auto: when bwrap works here)"),
               arg("--reference", default=None, metavar="REPO",
                   help="repository whose code, checks and exercises.toml are the reference "
                        "(default: the installed tinyq's)"),
               *parallel_args(default_jobs=None),
               arg("--no-progress", action="store_true", help="no progress bar")])
def grade_command(args) -> int:
    """Draw inputs from a secret seed, run each exercise's trusted checks on the reference and on PATH
    in isolated child processes, and compare the outputs here; print passed / failed / blocked (by a
    failed prerequisite) with points and the first failure's input, expected and got; write a JSON
    report; exit 1 unless all passed. Several submissions (a folder of folders, or a list): grade each
    as a task on --jobs processes or a --scheduler, print and write the gradebook."""
    import sys

    from tinyq.grading import format_report, grade

    single = len(args.paths) == 1 and (os.path.isdir(os.path.join(args.paths[0], "tinyq"))
                                       or not os.path.isdir(args.paths[0]))      # grade() names what is missing
    if not single:
        from tinyq.grading.gradebook import format_gradebook, grade_class
        book = grade_class(args.paths, args.out, exercise=args.exercise, reference=args.reference,
                           timeout=args.timeout, seed=args.seed, sandbox=args.sandbox, rounds=args.rounds,
                           jobs=args.jobs, scheduler=args.scheduler,
                           progress=not args.no_progress and sys.stderr.isatty())
        print(format_gradebook(book))
        print(f"graded {book['graded']}, reused {book['reused']} unchanged; gradebook written to "
              f"{os.path.join(args.out, 'gradebook.csv')} and .json, reports in {os.path.join(args.out, 'reports')}")
        return 0
    report = grade(args.paths[0], args.exercise, reference=args.reference, timeout=args.timeout, seed=args.seed,
                   sandbox=args.sandbox, rounds=args.rounds, json_path=args.json_path)
    print(format_report(report))
    print(f"report written to {args.json_path}")
    return 0 if report["ok"] else 1
