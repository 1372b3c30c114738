"""Class-scale grading and experiment grids: serial vs --jobs 2 vs a Dask LocalCluster(2), on this machine.

    python benchmarks/bench_parallel.py [--quick] [--students 12] [--out PATH]

1. Grading: a gradebook of 12 submissions (half copies of the reference's tinyq/, half of the student
   copy's), graded serially, on a local process pool of 2 workers, and on a LocalCluster of 2 worker
   processes (1 thread each); same run seed, so the three gradebooks must agree cell for cell.
   --quick grades copies of the small fixture repository (tests/fixtures/minirepo) instead.
2. A reduced sweep (not the default one: TINYQ_FAST settings, an MLP trained 2 epochs outside the timed
   region, bits 8 4 2, the default PTQ observers and QAT ste with 1 epoch) on the same three executors;
   the records must agree except their `seconds`.
3. Overhead per task: 200 trivial tasks (abs) on each executor, wall / 200.
4. Memory per worker: resident set size of each worker process (tinyq's grader imported; the Dask
   workers after grading, the pool a fresh one); the graded code runs in the grader's child processes.
5. A projection for 300 students on 64 cores from the measured per-submission time and overhead.

Speed is measured, never asserted. The machine is shared (other jobs run): the load average is recorded.
Writes benchmarks/results/bench_parallel.json atomically.
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import common

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fixture submissions and a 2-cell sweep")
    parser.add_argument("--students", type=int, default=12)
    parser.add_argument("--out", default=os.path.join(common.RESULTS_DIR, "bench_parallel.json"))
    return parser.parse_args(argv)


def rss_mb(pid: int) -> float:
    import psutil
    return psutil.Process(pid).memory_info().rss / 2**20


def worker_rss(_) -> tuple[int, float]:
    """(pid, resident MB) of the worker running this task, once tinyq's grader is imported."""
    import tinyq.grading.gradebook  # noqa: F401
    time.sleep(0.05)                 # spread the tasks over the workers
    return os.getpid(), rss_mb(os.getpid())


def build_class(folder: Path, students: int, quick: bool) -> tuple[Path, Path]:
    """(submissions folder, reference): half correct copies, half student copies (stubs)."""
    from tinyq.grading import make_student_copy
    if quick:
        reference = ROOT / "tests" / "fixtures" / "minirepo"
        stub_source = folder / "stub"
        make_student_copy(reference, stub_source)
    else:
        reference = ROOT
        stub_source = folder / "stub"
        make_student_copy(reference, stub_source)
    for index in range(students):
        source = reference if index % 2 == 0 else stub_source
        shutil.copytree(source / "tinyq", folder / "class" / f"student{index:02d}" / "tinyq",
                        ignore=shutil.ignore_patterns("__pycache__"))
    return folder / "class", reference


def executors(cluster):
    """The three executors; the order alternates between parts so that a drift in the machine's load
    does not always favour the same one (the load average is recorded around every run)."""
    return {"serial": {"jobs": 1}, "jobs2": {"jobs": 2}, "dask2": {"scheduler": cluster.scheduler_address}}


def summarize(result: dict, outputs: dict, same_key: str) -> dict:
    """Speed-ups serial / executor (wall) and whether the three executors' outputs agree."""
    result[same_key] = outputs["serial"] == outputs["jobs2"] == outputs["dask2"]
    for name in ("jobs2", "dask2"):
        result[f"speedup_{name}"] = round(result["serial"]["wall_s"] / result[name]["wall_s"], 2)
    print(f"speed-up: --jobs 2 {result['speedup_jobs2']}x, LocalCluster(2) {result['speedup_dask2']}x; "
          f"outputs equal: {result[same_key]}")
    return result


def bench_grading(cluster, work: Path, students: int, quick: bool) -> dict:
    from tinyq.grading.gradebook import grade_class
    from tinyq.parallel import make_executor
    submissions, reference = build_class(work, students, quick)
    result, books = {}, {}
    for name, options in reversed(executors(cluster).items()):
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        book = grade_class(submissions, work / f"book-{name}", reference=reference, seed=2026, echo=lambda *a: None,
                           **options)
        wall = time.perf_counter() - started
        memory = {}
        if name != "serial":     # the Dask workers have just graded; the pool is a fresh one of the same kind
            with make_executor(**options) as executor:
                memory = dict(executor.map(worker_rss, range(8)))
        books[name] = [{k: v for k, v in r.items() if k != "seconds"} for r in book["rows"]]
        per_task = [r["seconds"] for r in book["rows"]]
        result[name] = {"wall_s": round(wall, 2), "task_seconds_mean": round(sum(per_task) / len(per_task), 2),
                        "load_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                        "worker_rss_mb": [round(m, 1) for m in memory.values()]}
        print(f"grading {students} submissions, {name:6s}: {wall:7.1f} s wall, {result[name]['task_seconds_mean']:.1f} s "
              f"per submission inside its task, worker RSS {result[name]['worker_rss_mb']} MB")
    return summarize(result, books, "same_gradebook")


def bench_sweep(cluster, quick: bool) -> dict:
    os.environ["TINYQ_FAST"] = "1"
    from tinyq.experiments.bitwidth import (
        PTQ_OBSERVERS,
        build_model,
        generator,
        load_data,
        sweep,
        train_float,
    )
    from tinyq.parallel import make_executor
    train_set, test_set = load_data("digits")
    model = build_model("mlp", train_set.x.shape[1:], 10, rng=generator(0, 0))
    train_float(model, train_set, 0, epochs=1 if quick else 2)
    bits, observers = ((4, 2), ("minmax",)) if quick else ((8, 4, 2), PTQ_OBSERVERS)
    result, records = {"bits": list(bits), "observers": list(observers), "qat": ["ste"], "qat_epochs": 1}, {}
    sweep(model, train_set, test_set, bits[-1:], observers[:1], ("ste",), 1, seed=0)   # warm-up here (JIT, imports)
    for name, options in executors(cluster).items():
        load_before = os.getloadavg()[0]
        with make_executor(**options) as executor:
            started = time.perf_counter()
            found = sweep(model, train_set, test_set, bits, observers, ("ste",), 1, seed=0, executor=executor)
            wall = time.perf_counter() - started
        records[name] = [{k: v for k, v in r.items() if k != "seconds"} for r in found]
        result[name] = {"wall_s": round(wall, 2), "cells": len(found) - 1,
                        "load_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
        print(f"sweep of {len(found) - 1} cells, {name:6s}: {wall:7.1f} s wall")
    return summarize(result, records, "same_records")


def bench_overhead(cluster, tasks: int = 200) -> dict:
    from tinyq.parallel import make_executor
    result, startup = {}, {}
    for name, options in executors(cluster).items():
        started = time.perf_counter()
        with make_executor(**options) as executor:
            executor.map(abs, range(8))             # a fresh pool starts its workers; Dask's are already up
            startup[name] = round(time.perf_counter() - started, 3)
            started = time.perf_counter()
            executor.map(abs, range(tasks))
            result[name] = round((time.perf_counter() - started) / tasks * 1e3, 3)
    print(f"overhead per trivial task (ms): {result}; start-up (connect or start the workers, 8 tasks): {startup} s")
    return {"ms_per_task": result, "tasks": tasks, "startup_s": startup}


def projection(grading: dict, overhead: dict, students: int = 300, cores: int = 64) -> dict:
    """T(300 students, 64 single-threaded workers) = ceil(300 / 64) waves x (t_submission + overhead)."""
    t_sub = grading["serial"]["wall_s"] / grading["students"]
    overhead_s = overhead["ms_per_task"]["dask2"] / 1e3
    waves = math.ceil(students / cores)
    total = waves * (t_sub + overhead_s)
    arithmetic = (f"t_submission = serial wall / {grading['students']} = {t_sub:.2f} s; overhead = "
                  f"{overhead_s * 1e3:.1f} ms; waves = ceil({students} / {cores}) = {waves}; "
                  f"T = {waves} x ({t_sub:.2f} + {overhead_s:.3f}) = {total:.0f} s "
                  f"(vs {students} x {t_sub:.2f} = {students * t_sub:.0f} s serially)")
    print("projection:", arithmetic)
    return {"students": students, "cores": cores, "t_submission_s": round(t_sub, 2), "waves": waves,
            "projected_s": round(total, 1), "serial_s": round(students * t_sub, 1), "arithmetic": arithmetic}


def main():
    args = parse_args()
    from dask.distributed import LocalCluster
    info = common.machine_info(threads=1)
    print(f"CPU {info['cpu_model']} ({', '.join(info['isa_flags'])}) | {info['logical_cpus']} logical CPUs | load average {info['load_average_1_5_15min']}"
          " (the machine is shared with other jobs: timings are noisy)")
    with tempfile.TemporaryDirectory(prefix="bench-parallel-") as work_name, \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        grading = bench_grading(cluster, Path(work_name), args.students, args.quick)
        grading["students"] = args.students
        grading["submissions"] = "fixture minirepo copies" if args.quick else "reference tinyq/ and student-copy tinyq/, half each"
        sweep_result = bench_sweep(cluster, args.quick)
        overhead = bench_overhead(cluster)
    result = {"machine": info, "quick": args.quick, "grading": grading, "sweep": sweep_result, "overhead": overhead,
              "projection": projection(grading, overhead),
              "load_average_at_end": list(os.getloadavg())}
    common.write_json_atomic(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
