"""The `tinyq` command line: `tinyq <command> [options]`, one function per command.

Adding a command is one decorated function; it gets the parsed arguments and
returns an exit code (None means 0):

    @command("grade", help="grade the exercises of a (student) copy",
             args=[arg("path", nargs="?", default="."), arg("--exercise", help="...")])
    def grade_command(args):
        ...

Commands live in `tinyq/commands/`, one module per command (or pair of related
commands): decorate the function there with `tinyq.cli.command` and add the module's
name to COMMAND_MODULES, which `main` imports before building the parser. The
experiments never import the CLI: a command module imports the experiment, not the
other way round. Keep command modules' top-level imports light (import heavy things
inside the function) so `tinyq --help` stays fast.
Commands whose results involve randomness take `--seed`.

Shared options and validated value types live in `tinyq.commands.options`
(`data_options()`, `seed_option()`, `out_option(default)`, `no_progress_option()`,
`run_folder_options()`, types `positive_int`, `fraction`, `finite_float`, ...): use them,
so a bad value stops the command while parsing, with argparse naming the option.
Check everything else (files, combinations of options, `check_output_dir` for --out)
before any work starts and raise `options.OptionError(option, message)`; write outputs
through a `tinyq.run_folder.RunFolder`.

User errors (ValueError, OSError, RuntimeError — including a student copy's
NotImplementedError) print as one line `tinyq <command>: error: ...` with exit
code 2; set TINYQ_DEBUG=1 for the traceback. A KeyError, TypeError, ... escaping a
command is a bug in tinyq (convert bad input into a clear ValueError at the boundary).
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
    "tinyq.commands.train",
    "tinyq.commands.sweep",
    "tinyq.commands.lowprec",
    "tinyq.commands.grading",
    "tinyq.commands.integer",
    "tinyq.commands.prune",
    "tinyq.commands.amp",
    "tinyq.commands.distill",
    "tinyq.commands.report",
    "tinyq.commands.export",
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
