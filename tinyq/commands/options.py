"""The options every experiment command shares, and validated argparse types.

    from tinyq.commands.options import data_options, seed_option, out_option, no_progress_option, positive_int

    @command("mything", help="...", args=[*data_options(), seed_option(), out_option("runs/mything"),
                                          no_progress_option(), arg("--epochs", type=positive_int, default=3)])

A type below raises argparse.ArgumentTypeError, so a bad value stops the command at parse
time, before any work: `tinyq mything: error: argument --epochs: expected a positive integer,
got '0'` (exit code 2; argparse names the option). Checks that need several options or the
file system (`check_output_dir`, `check_output_file`) raise `OptionError`, a ValueError whose
message starts with the option; the CLI prints it as one line with exit code 2.
"""
from __future__ import annotations

import argparse
import math
import os
import tempfile
from pathlib import Path

from tinyq.cli import arg

DATASETS = ("digits", "mnist", "fashion")   # tinyq.data.LOADERS (not imported: `tinyq --help` stays light)


class OptionError(ValueError):
    """A bad command-line value found after parsing; str() starts with the option's name."""

    def __init__(self, option: str, message: str):
        super().__init__(f"{option}: {message}")
        self.option = option


# ---------------------------------------------------------------------------- value types

def _parse(text: str, kind, expected: str, ok=lambda value: True):
    """kind(text) if it parses, is finite and ok(value); else ArgumentTypeError "expected <expected>, got '<text>'"."""
    try:
        value = kind(text)
    except (TypeError, ValueError):
        value = None
    if value is None or (kind is float and not math.isfinite(value)) or not ok(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def finite_float(text: str) -> float:
    """Any finite number (no nan, inf)."""
    return _parse(text, float, "a finite number")


def positive_float(text: str) -> float:
    """x > 0, finite."""
    return _parse(text, float, "a finite number > 0", lambda x: x > 0)


def nonnegative_float(text: str) -> float:
    """x >= 0, finite."""
    return _parse(text, float, "a finite number >= 0", lambda x: x >= 0)


def fraction(text: str) -> float:
    """0 <= x < 1 (a share of something that must keep at least part of it)."""
    return _parse(text, float, "a fraction in [0, 1)", lambda x: 0.0 <= x < 1.0)


def positive_int(text: str) -> int:
    """n >= 1."""
    return _parse(text, int, "a positive integer", lambda n: n >= 1)


def nonnegative_int(text: str) -> int:
    """n >= 0."""
    return _parse(text, int, "a non-negative integer", lambda n: n >= 0)


def int_in(low: int, high: int):
    """A type for integers in low..high (inclusive)."""
    def parse(text: str) -> int:
        return _parse(text, int, f"an integer in {low}..{high}", lambda n: low <= n <= high)
    parse.__name__ = f"int_in_{low}_{high}"
    return parse


def seed_int(text: str) -> int:
    """0 <= seed < 2^63 (np.random.SeedSequence takes non-negative integers)."""
    return _parse(text, int, "a non-negative integer seed below 2^63", lambda n: 0 <= n < 2 ** 63)


# ---------------------------------------------------------------------------- shared options

def data_options() -> list:
    """--dataset digits|mnist|fashion (what `tinyq train` takes; every experiment command takes it)."""
    return [arg("--dataset", choices=DATASETS, default="digits",
                help="digits ships with tinyq; mnist/fashion are downloaded once into $TINYQ_DATA")]


def seed_option() -> tuple:
    return arg("--seed", type=seed_int, default=0, help="seeds every random choice: same seed, same numbers")


def out_option(default: str | None, help: str = "folder for the results") -> tuple:
    return arg("--out", default=default, metavar="DIR", help=help)


def no_progress_option() -> tuple:
    return arg("--no-progress", action="store_true", help="no progress bars (they are off without a TTY)")


def run_folder_options(resume: bool = True) -> list:
    """--overwrite (and --resume): what to do when --out already holds a run (see tinyq.run_folder)."""
    options = [arg("--overwrite", action="store_true",
                   help="replace the run already in --out (its tinyq files are deleted first)")]
    if resume:
        options.append(arg("--resume", action="store_true",
                           help="continue the unfinished run in --out from its last epoch (same options)"))
    return options


# ---------------------------------------------------------------------------- file-system checks

def _existing_ancestor(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists():
        path = path.parent
    return path


def _probe_writable(folder: Path, option: str, target: Path) -> None:
    """Create (and at once delete) an anonymous file in folder: the only honest test, root included."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise OptionError(option, f"cannot write {target}: {folder} is not writable "
                                  f"({error.strerror or error})") from None


def check_output_dir(path, option: str = "--out") -> Path:
    """Raise OptionError unless `path` is, or can be created as, a writable folder. Creates nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OptionError(option, f"{path} exists and is not a folder")
    ancestor = _existing_ancestor(path)
    if not ancestor.is_dir():
        raise OptionError(option, f"cannot create folder {path}: {ancestor} is a file, not a folder")
    _probe_writable(ancestor, option, path)
    return path


def check_output_file(path, option: str = "--json") -> Path:
    """Raise OptionError unless a file can be written at `path` (folders created as needed). Creates nothing."""
    path = Path(path)
    if path.is_dir():
        raise OptionError(option, f"{path} is a folder, expected a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise OptionError(option, f"{path} exists and is not writable")
    check_output_dir(path.parent, option)
    return path
