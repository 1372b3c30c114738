"""glibc malloc thresholds: keep a training step's freed arrays mapped, so the next step reuses them.

Why: every training step allocates and frees the same arrays (im2col matrices, activations,
gradients: 0.1-10 MB each). glibc serves a block above M_MMAP_THRESHOLD with its own mmap and
unmaps it on free, and gives the top of the heap back to the kernel once more than
M_TRIM_THRESHOLD is free. The next step then touches fresh pages again: thousands of minor page
faults per LeNet-5 step, ~40% of its time, and a ratio to PyTorch that swings from run to run
with the heap's state. Raising both thresholds keeps the freed pages in the process (at most
`TRIM_THRESHOLD` bytes of free memory stay mapped); a steady-state step then has no page faults.

Applied once, when tinyq is imported, on glibc only (elsewhere it does nothing). Turn it off
with the environment variable TINYQ_MALLOC_TUNING=0 (benchmarks/bench_engine.py shows the page
faults with and without). Imports only the standard library.
"""
from __future__ import annotations

import ctypes
import os
import platform
import sys

M_TRIM_THRESHOLD = -1        # mallopt parameter numbers from glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's maximum on 64-bit; larger blocks still get their own mmap
TRIM_THRESHOLD = 256 * 2**20

applied = False              # True once mallopt accepted both settings


def tuning_wanted() -> bool:
    """False when TINYQ_MALLOC_TUNING is set to 0 / off / false / no."""
    return os.environ.get("TINYQ_MALLOC_TUNING", "1").strip().lower() not in ("0", "off", "false", "no")


def tune_malloc() -> bool:
    """mallopt(M_MMAP_THRESHOLD, 32 MiB) and mallopt(M_TRIM_THRESHOLD, 256 MiB) on glibc; True if both took."""
    global applied
    if applied or not tuning_wanted() or not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return applied
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # pragma: no cover - a libc without mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return applied


tune_malloc()
