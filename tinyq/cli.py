"""The `tinyq` command line: `tinyq <command> [options]`, one function per command.

Adding a command is one decorated function; it gets the parsed arguments and
returns an exit code (None means 0):

    @command("grade", help="grade the exercises of a (student) copy",
             args=[arg("path", nargs="?", default="."), arg("--exercise", help="...")])
    def grade_command(args):
        ...

A command may live in another module (e.g. tinyq/experiments/...): decorate it
there with `tinyq.cli.command` and add the module's name to COMMAND_MODULES, which
`main` imports before building the parser. Keep such modules' top-level imports
light (import heavy things inside the function) so `tinyq --help` stays fast.
Commands whose results involve randomness take `--seed`.

User errors (ValueError, OSError, RuntimeError — including a student copy's
NotImplementedError) print as one line `tinyq <command>: error: ...` with exit
code 2; set TINYQ_DEBUG=1 for the traceback.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from dataclasses import dataclass, field
from typing import Callable

# modules that register more commands when imported (see the module docstring)
COMMAND_MODULES: list[str] = [
    "tinyq.experiments.fixed_point_training",
    "tinyq.experiments.bitwidth",
]


@dataclass
class Command:
    name: str
    function: Callable[[argparse.Namespace], int | None]
    help: str
    description: str | None = None
    args: list = field(default_factory=list)


COMMANDS: dict[str, Command] = {}


def arg(*names: str, **options) -> tuple[tuple[str, ...], dict]:
    """One argparse argument: the same names and options as parser.add_argument."""
    return names, options


def command(name: str, *, help: str, args=(), description: str | None = None):
    """Decorator: register function(args) -> exit code as `tinyq <name>`."""
    def register(function):
        if name in COMMANDS and COMMANDS[name].function is not function:
            raise ValueError(f"tinyq command {name!r} is registered twice")
        COMMANDS[name] = Command(name, function, help, description or function.__doc__, list(args))
        return function
    return register


def build_parser() -> argparse.ArgumentParser:
    for module in COMMAND_MODULES:
        importlib.import_module(module)
    parser = argparse.ArgumentParser(
        prog="tinyq",
        description="tinyq: a from-scratch NumPy deep-learning engine for learning quantization, pruning "
                    "and number formats.",
        epilog="Run `tinyq <command> --help` for a command's options.")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>", title="commands")
    subparsers.required = True
    for cmd in COMMANDS.values():
        sub = subparsers.add_parser(cmd.name, help=cmd.help, description=cmd.description or cmd.help,
                                    formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        for names, options in cmd.args:
            sub.add_argument(*names, **options)
        sub.set_defaults(_command=cmd)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse argv, run the command, return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    cmd: Command = args._command
    try:
        code = cmd.function(args)
    except KeyboardInterrupt:
        print(f"tinyq {cmd.name}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError) as error:
        if os.environ.get("TINYQ_DEBUG"):
            raise
        print(f"tinyq {cmd.name}: error: {error}", file=sys.stderr)
        return 2
    return 0 if code is None else int(code)


# ---------------------------------------------------------------- grading commands

@command("student", help="write a student copy: solution regions replaced by NotImplementedError",
         args=[arg("out", help="folder to create (must be new or empty)"),
               arg("--src", default=None, help="repository to copy (default: the one tinyq is installed from)")])
def student_command(args) -> int:
    """Copy the repository to OUT with every solution region replaced by a NotImplementedError naming
    the exercise and its chapter. Notebooks are copied with their outputs stripped."""
    from .grading import load_exercises, make_student_copy, reference_root

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
    from .grading import format_report, grade

    report = grade(args.path, args.exercise, reference=args.reference, timeout=args.timeout,
                   json_path=args.json_path)
    print(format_report(report))
    print(f"report written to {args.json_path}")
    return 0 if report["ok"] else 1


# ---------------------------------------------------------------- training

@command("train", help="train a model on a dataset and print the results table and wall time",
         args=[arg("--model", choices=["mlp", "lenet", "convnet"], default="mlp", help="architecture"),
               arg("--dataset", choices=["digits", "mnist", "fashion"], default="digits",
                   help="digits ships with tinyq; mnist/fashion are downloaded once into $TINYQ_DATA"),
               arg("--epochs", type=int, default=None, help="epochs (default: per model, see tinyq.train.DEFAULTS)"),
               arg("--batch-size", type=int, default=None, help="batch size (default: per model)"),
               arg("--lr", type=float, default=None, help="peak learning rate of the cosine schedule"),
               arg("--val-fraction", type=float, default=0.1, help="share of the training split held out"),
               arg("--no-augment", action="store_true", help="no random 1-pixel shifts"),
               arg("--seed", type=int, default=0, help="seeds init, split, shuffling and augmentation"),
               arg("--out", default=None, metavar="DIR",
                   help="where best.npz, last.npz and history.json go (default: runs/<model>-<dataset>-seed<seed>)"),
               arg("--no-progress", action="store_true", help="no progress bars (they are off without a TTY)")])
def train_command(args) -> int:
    """Train with SGD + momentum and a cosine schedule; print one line per epoch, the test accuracy of
    the last epoch and of the best-validation checkpoint, and the wall time. Same seed, same numbers."""
    from .train import run

    out = args.out or os.path.join("runs", f"{args.model}-{args.dataset}-seed{args.seed}")
    run(args.model, args.dataset, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        val_fraction=args.val_fraction, augment=not args.no_augment, seed=args.seed, out=out,
        progress=False if args.no_progress else None)
    return 0
