"""--jobs N / --scheduler ADDRESS: the options of every command that runs its tasks through tinyq.parallel."""
from __future__ import annotations

import argparse

from tinyq.cli import arg


def jobs_count(text: str) -> int:
    """argparse type: a number of worker processes >= 1 (rejects 0, negatives and non-integers)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of worker processes >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of worker processes >= 1, got {text!r}")
    return value


def parallel_args(default_jobs: int | None = 1) -> list:
    """[--jobs, --scheduler]; default_jobs None means the number of cores."""
    default = "the number of cores" if default_jobs is None else str(default_jobs)
    return [arg("--jobs", type=jobs_count, default=default_jobs,
                help=f"run the tasks on N local worker processes (default: {default})"),
            arg("--scheduler", default=None, metavar="ADDRESS",
                help="run the tasks on the Dask scheduler at ADDRESS (tcp://host:8786) instead; "
                     'needs the cluster extra: pip install -e ".[cluster]"')]
