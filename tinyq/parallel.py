"""Run independent tasks one after another, on a local process pool, or on a Dask cluster.

    results[i] = fn(items[i])                      collected in task order, whatever finishes first
    seed of task i = SeedSequence(run_seed, spawn_key=(key_i,))   the same numbers wherever task i runs

One small layer used by `tinyq grade` (one task = one submission) and the experiment commands
(one task = one grid cell). Three executors:

    serial     --jobs 1                      in this process
    local      --jobs N (N > 1)              concurrent.futures process pool (forkserver/spawn workers,
                                             one BLAS thread each unless OMP_NUM_THREADS etc. are set)
    dask       --scheduler ADDRESS           dask.distributed.Client(ADDRESS): a LocalCluster, or a
                                             cluster started with `dask scheduler` / dask-jobqueue

A task must be a module-level function of picklable arguments, and must not write what the run
records: it returns its result, and only this process records it (once per task index), so a task
that Dask re-runs after losing its worker is never recorded twice. Dask is optional: the `cluster`
extra installs it (pip install -e ".[cluster]").
"""
from __future__ import annotations

import multiprocessing
import os
import sys
import uuid
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np

INSTALL_HINT = 'the Dask cluster needs the `cluster` extra: pip install -e ".[cluster]"'
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def check_jobs(jobs) -> int:
    """jobs as an int >= 1 (None: the number of cores). ValueError for 0, negatives or non-integers."""
    if jobs is None:
        return os.cpu_count() or 1
    if isinstance(jobs, bool) or not isinstance(jobs, (int, np.integer)) or jobs < 1:
        raise ValueError(f"--jobs must be an integer >= 1 (the number of worker processes), got {jobs!r}")
    return int(jobs)


def task_seed(run_seed: int, key) -> int:
    """seed = SeedSequence(run_seed, spawn_key=(key,)).generate_state(1, uint64): independent of the
    executor, the worker count and the task order (key: an int, or a str hashed with crc32)."""
    if isinstance(key, str):
        key = zlib.crc32(key.encode("utf-8"))
    sequence = np.random.SeedSequence(int(run_seed), spawn_key=(int(key),))
    return int(sequence.generate_state(1, np.uint64)[0])


class Executor:
    """map(fn, items) -> [fn(item) for item in items], run by one of the three executors."""

    def __init__(self, kind: str, workers: int, pool=None, client=None):
        self.kind, self.workers, self._pool, self._client = kind, workers, pool, client

    def describe(self) -> str:
        where = f" at {self._client.scheduler.address}" if self._client is not None else ""
        return f"{self.kind} ({self.workers} worker{'s' if self.workers != 1 else ''}{where})"

    def map(self, fn, items, *, desc: str = "tasks", progress: bool = False, on_result=None,
            retries: int = 2) -> list:
        """Results in task order; on_result(index, result) is called here once per task as it finishes.
        Dask re-runs a task whose worker died (and up to `retries` times one that raised)."""
        from tqdm.auto import tqdm

        items = list(items)
        results, done = [None] * len(items), [False] * len(items)
        bar = tqdm(total=len(items), desc=desc, disable=not progress, unit="task")

        def record(index, result):
            if done[index]:                  # a re-run's duplicate result is dropped
                return
            done[index], results[index] = True, result
            if on_result is not None:
                on_result(index, result)
            bar.update(1)

        try:
            if self.kind == "serial":
                for index, item in enumerate(items):
                    record(index, fn(item))
            elif self.kind == "local":
                futures = {self._pool.submit(fn, item): index for index, item in enumerate(items)}
                for future in as_completed(futures):
                    record(futures[future], future.result())
            else:
                from dask.distributed import as_completed as dask_completed
                run = uuid.uuid4().hex[:8]
                keys = [f"{desc}-{run}-{index}" for index in range(len(items))]
                futures = self._client.map(fn, items, key=keys, pure=False, retries=retries)
                position = {key: index for index, key in enumerate(keys)}
                for future in dask_completed(futures):
                    record(position[future.key], future.result())
        finally:
            bar.close()
        return results

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
        if self._client is not None:
            self._client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def connect(address, timeout: float = 5.0):
    """A dask.distributed.Client for ADDRESS (or a cluster object), failing within `timeout` seconds."""
    try:
        from dask.distributed import Client
    except ImportError:
        raise RuntimeError(f"--scheduler {address}: dask.distributed is not installed; {INSTALL_HINT}") from None
    try:
        return Client(address, timeout=f"{timeout}s")
    except (OSError, TimeoutError, ValueError) as error:
        raise ConnectionError(f"cannot reach the Dask scheduler at {address!r} within {timeout:g} s "
                              f"({type(error).__name__}: {error}); start one with `dask scheduler` "
                              "or check the address") from None


def make_executor(jobs=None, scheduler=None, *, connect_timeout: float = 5.0) -> Executor:
    """--scheduler wins over --jobs; --jobs 1 is serial; otherwise a process pool of `jobs` workers."""
    if scheduler is not None:
        if jobs is not None:
            check_jobs(jobs)
        client = connect(scheduler, connect_timeout)
        workers = sum(info.get("nthreads", 1) for info in client.scheduler_info()["workers"].values())
        return Executor("dask", workers, client=client)
    jobs = check_jobs(jobs)
    if jobs == 1:
        return Executor("serial", 1)
    method = "forkserver" if sys.platform.startswith("linux") else "spawn"
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context(method))
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    try:            # one BLAS/numba thread per worker (as Dask's workers), unless the user chose a number
        os.environ.update({name: "1" for name, value in saved.items() if value is None})
        pool.submit(abs, 0).result()                 # start the workers now, with these variables
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
    return Executor("local", jobs, pool=pool)


def serial_map(fn, items, **options) -> list:
    """The serial executor's map, for callers given no executor."""
    return Executor("serial", 1).map(fn, items, **options)


__all__ = ["INSTALL_HINT", "Executor", "check_jobs", "connect", "make_executor", "serial_map", "task_seed"]
