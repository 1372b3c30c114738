"""`tinyq student` and `tinyq grade`: hand out a student copy, grade a submission."""
from __future__ import annotations

import os

from tinyq.cli import arg, command


@command("student", help="write a student copy: solution regions replaced by NotImplementedError",
         args=[arg("out", help="folder to create (must be new or empty)"),
               arg("--src", default=None, help="repository to copy (default: the one tinyq is installed from)")])
def student_command(args) -> int:
    """Copy the repository to OUT with every solution region replaced by a NotImplementedError naming
    the exercise and its chapter. Notebooks are copied with their outputs stripped."""
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


@command("grade", help="grade the exercises of a (student) copy with the reference tests",
         args=[arg("path", nargs="?", default=".", help="root of the copy to grade"),
               arg("--exercise", default=None, help="grade only this exercise id (and its prerequisites)"),
               arg("--json", default="grade-report.json", dest="json_path", metavar="FILE", help="where to write the JSON report"),
               arg("--timeout", type=float, default=60.0, help="seconds allowed per test"),
               arg("--reference", default=None, metavar="REPO",
                   help="repository whose tests and exercises.toml to use (default: the installed tinyq's)")])
def grade_command(args) -> int:
    """Run the reference tests of every exercise against the tinyq at PATH; print passed / failed /
    blocked (by a failed prerequisite) with points, write a JSON report, exit 1 unless all passed."""
    from tinyq.grading import format_report, grade

    report = grade(args.path, args.exercise, reference=args.reference, timeout=args.timeout,
                   json_path=args.json_path)
    print(format_report(report))
    print(f"report written to {args.json_path}")
    return 0 if report["ok"] else 1


