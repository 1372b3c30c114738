"""Shared benchmark plumbing: thread pinning, machine description, robust timing, atomic JSON.

Import this module BEFORE numpy (or anything that loads a BLAS): `pin_threads` only
works if the thread-count environment variables are set before the libraries start.
This module itself imports no numpy at top level for that reason.
"""
from __future__ import annotations

import os
import platform
import re
import resource
import statistics
import sys
import time

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")

# ISA extensions worth knowing about for dense float/int kernels (names as in /proc/cpuinfo)
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
             "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def available_cpus() -> int:
    """CPUs this process may run on (respects taskset / cgroup affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def pin_threads(threads: int) -> int:
    """Set every BLAS/OpenMP/numba thread-count variable to `threads` (call before importing numpy)."""
    if "numpy" in sys.modules:
        raise RuntimeError("pin_threads must run before numpy is imported, or the BLAS ignores it")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    return threads


def pin_torch_threads(torch, threads: int) -> None:
    """Give PyTorch the same intra-op thread count (and one inter-op thread: we run one op at a time)."""
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set once in this process
        pass


def cpu_info() -> dict:
    """The CPU model and the ISA flags from /proc/cpuinfo (empty values where not available)."""
    model, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("unknown", "", platform.processor()):
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return {"cpu_model": model, "isa_flags": [f for f in ISA_FLAGS if f in flags]}


def library_versions() -> dict:
    """Versions of the libraries that decide the speed (None when not installed)."""
    versions = {"python": platform.python_version()}
    for name in ("numpy", "numba", "torch"):
        try:
            module = __import__(name)
            versions[name] = getattr(module, "__version__", "unknown")
        except ImportError:
            versions[name] = None
    try:
        import numpy as np
        config = np.show_config(mode="dicts")
        blas = config.get("Build Dependencies", {}).get("blas", {})
        versions["numpy_blas"] = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # noqa: BLE001 - purely informative
        versions["numpy_blas"] = None
    return versions


def machine_info(threads: int) -> dict:
    """Everything needed to read a timing later: CPU, ISA, threads, OS, library versions."""
    info = cpu_info()
    info.update({
        "logical_cpus": os.cpu_count(),
        "available_cpus": available_cpus(),
        "threads": threads,
        "thread_env": {name: os.environ.get(name) for name in THREAD_VARIABLES},
        "platform": platform.platform(),
        "numba_jit_disabled": os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0"),
        "load_average_1_5_15min": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    })
    info.update(library_versions())
    return info


def memory_kib() -> dict:
    """{"rss": resident set now, "peak": its high-water mark since start or the last reset_peak()} in KiB (Linux)."""
    try:
        with open("/proc/self/status") as f:
            status = f.read()
    except OSError:  # pragma: no cover - not Linux
        return {"rss": None, "peak": None}
    found = {key: re.search(rf"{key}:\s+(\d+) kB", status) for key in ("VmRSS", "VmHWM")}
    return {"rss": int(found["VmRSS"].group(1)) if found["VmRSS"] else None,
            "peak": int(found["VmHWM"].group(1)) if found["VmHWM"] else None}


def reset_peak() -> bool:
    """Reset the resident-set high-water mark (Linux >= 4.0: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def minor_faults() -> int:
    """Minor page faults of this process so far (a page the kernel had to map in, no disk read)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}   # cpu: this process's CPU time (all threads)


def time_per_call(fn, number: int, clock=time.perf_counter) -> float:
    """Seconds per call of fn(), averaged over `number` back-to-back calls."""
    start = clock()
    for _ in range(number):
        fn()
    return (clock() - start) / number


def compare(candidates: dict, number: int, repeat: int, warmup: int = 3, clock=time.perf_counter) -> dict:
    """Median seconds per call for each named function, measured interleaved.

    Every candidate is warmed up first (JIT compilation, caches, allocator), then the
    repeats alternate between candidates, so a burst of machine load hits all of them
    alike instead of biasing one. clock=time.process_time counts only this process's CPU time: on a
    shared machine it leaves out the time spent waiting for a core (use it with one thread).
    Returns {name: {"median_s", "min_s", "samples"}}.
    """
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    samples = {name: [] for name in candidates}
    for _ in range(repeat):
        for name, fn in candidates.items():
            samples[name].append(time_per_call(fn, number, clock))
    return {name: {"median_s": statistics.median(s), "min_s": min(s), "samples": len(s)}
            for name, s in samples.items()}


def benchmark_parser(description: str, result_name: str, *, quick_help: str = "few repeats (smoke run)",
                     threads_help: str = "threads for BLAS/numba (default 1)", threads_default: int = 1):
    """The options every benchmark takes: --quick, --threads, --out (results/<result_name>), --seed.

    Parse them, then call pin_threads(args.threads) before importing numpy.
    """
    import argparse
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--threads", type=int, default=threads_default, help=threads_help)
    parser.add_argument("--out", default=os.path.join(RESULTS_DIR, result_name))
    parser.add_argument("--seed", type=int, default=0)
    return parser


def write_json_atomic(path: str, payload: dict) -> str:
    """Write JSON so that the file appears whole or not at all (temp file + fsync + rename)."""
    from tinyq import atomic   # imported here: this module must not import numpy at load time
    atomic.write_json(path, payload)
    return path


def format_table(rows: list, columns: list) -> str:
    """A plain text table: rows are dicts, columns are (key, header) pairs."""
    cells = [[header for _, header in columns]]
    for row in rows:
        cells.append([str(row.get(key, "")) for key, _ in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
