"""tinyq.parallel: the same results in task order whatever the executor; seeds per task; bad options refused.

The gradebook on a Dask cluster (and a killed worker) is tested in test_gradebook.py.
"""
import json
import os
import sys
import time

import numpy as np
import pytest

from tinyq.cli import main
from tinyq.parallel import (
    INSTALL_HINT,
    check_jobs,
    make_executor,
    serial_map,
    task_seed,
)


def draw(task):
    """A task: its seed's first draws, after a sleep that makes later tasks finish first."""
    index, seed = task
    time.sleep(0.02 * (4 - index % 5))
    return index, np.random.default_rng(seed).integers(0, 2**31, size=3).tolist(), os.getpid()


def tasks(run_seed=7, count=10):
    return [(i, task_seed(run_seed, i)) for i in range(count)]


def values(results):
    return [(index, numbers) for index, numbers, _ in results]


# ---------------------------------------------------------------- seeds

def test_task_seeds_are_independent_of_order_and_distinct():
    seeds = [task_seed(7, i) for i in range(100)]
    assert len(set(seeds)) == 100
    assert [task_seed(7, i) for i in reversed(range(100))] == seeds[::-1]
    assert task_seed(7, "alice") == task_seed(7, "alice") != task_seed(7, "bob")
    assert task_seed(7, 3) != task_seed(8, 3)
    # the documented derivation: the first word of SeedSequence(run_seed, spawn_key=(key,))
    children = np.random.SeedSequence(7).spawn(4)           # spawn() gives spawn_key (0,), (1,), ...
    assert [task_seed(7, i) for i in range(4)] == [int(c.generate_state(1, np.uint64)[0]) for c in children]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_jobs_are_refused(bad):
    with pytest.raises(ValueError, match="--jobs must be an integer >= 1"):
        check_jobs(bad)
    with pytest.raises(ValueError, match="--jobs must be an integer >= 1"):
        make_executor(bad)


def test_cli_rejects_jobs_zero(capsys):
    with pytest.raises(SystemExit):
        main(["sweep", "--jobs", "0"])
    assert "expected a number of worker processes >= 1, got '0'" in capsys.readouterr().err


# ---------------------------------------------------------------- executors

def test_serial_and_local_pool_give_the_same_results_in_task_order():
    expected = values(serial_map(draw, tasks()))
    assert [index for index, _ in expected] == list(range(10))
    finished = []
    with make_executor(2) as executor:
        assert executor.kind == "local" and executor.workers == 2
        results = executor.map(draw, tasks(), on_result=lambda index, result: finished.append(index))
    assert values(results) == expected
    assert sorted(finished) == list(range(10))                 # each task recorded once
    assert len({pid for _, _, pid in results} - {os.getpid()}) >= 1
    with make_executor(1) as executor:
        assert executor.kind == "serial"


def thread_setting(_):
    return os.environ.get("OPENBLAS_NUM_THREADS")


def test_pool_workers_use_one_blas_thread_and_this_process_keeps_its_setting(monkeypatch):
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    with make_executor(2) as executor:
        assert set(executor.map(thread_setting, range(4))) == {"1"}
    assert "OPENBLAS_NUM_THREADS" not in os.environ


def test_missing_dask_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask.distributed", None)     # import dask.distributed -> ImportError
    with pytest.raises(RuntimeError) as error:
        make_executor(scheduler="tcp://127.0.0.1:8786")
    assert INSTALL_HINT in str(error.value) and 'pip install -e ".[cluster]"' in str(error.value)


def test_unreachable_scheduler_fails_fast():
    pytest.importorskip("dask.distributed", reason="the cluster extra (dask[distributed]) is not installed")
    started = time.monotonic()
    with pytest.raises(ConnectionError, match="cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'"):
        make_executor(scheduler="tcp://127.0.0.1:9", connect_timeout=2)
    assert time.monotonic() - started < 20


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("dask.distributed", reason="the cluster extra (dask[distributed]) is not installed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as local:
        yield local


def test_dask_gives_the_serial_results_in_task_order(cluster):
    with make_executor(scheduler=cluster.scheduler_address) as executor:
        assert executor.kind == "dask" and executor.workers == 2
        results = executor.map(draw, tasks())
    assert values(results) == values(serial_map(draw, tasks()))


# ---------------------------------------------------------------- tinyq sweep: serial == --jobs 2 == Dask

SWEEP = ["sweep", "--bits", "4", "2", "--observers", "minmax", "--qat", "ste", "--no-progress"]


def sweep_records(out):
    records = json.loads((out / "sweep.json").read_text())["records"]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]     # all but the timings


@pytest.fixture(scope="module")
def fast_mode():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TINYQ_FAST", "1")
        yield


@pytest.fixture(scope="module")
def serial_sweep(fast_mode, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep-serial")
    main(SWEEP + ["--epochs", "1", "--out", str(out)])
    return out


def test_sweep_with_two_jobs_gives_the_serial_records(serial_sweep, tmp_path):
    main(SWEEP + ["--checkpoint", str(serial_sweep / "float.npz"), "--out", str(tmp_path), "--jobs", "2"])
    assert sweep_records(tmp_path) == sweep_records(serial_sweep)
    assert len(sweep_records(tmp_path)) == 5                      # fp32 + 2 methods x 2 bit-widths


def test_sweep_on_a_dask_cluster_gives_the_serial_records(serial_sweep, cluster, tmp_path):
    main(SWEEP + ["--checkpoint", str(serial_sweep / "float.npz"), "--out", str(tmp_path),
                  "--scheduler", cluster.scheduler_address])
    assert sweep_records(tmp_path) == sweep_records(serial_sweep)


def test_sensitivity_with_two_jobs_gives_the_serial_records(serial_sweep, tmp_path):
    argv = ["sensitivity", "--checkpoint", str(serial_sweep / "float.npz"), "--bits", "2", "--no-progress"]
    main(argv + ["--out", str(tmp_path / "serial")])
    main(argv + ["--out", str(tmp_path / "pool"), "--jobs", "2"])
    read = lambda out: json.loads((out / "sensitivity.json").read_text())["records"]
    assert read(tmp_path / "pool") == read(tmp_path / "serial") and len(read(tmp_path / "serial")) >= 2


def test_lowprec_with_two_jobs_gives_the_serial_records(fast_mode, tmp_path):
    argv = ["lowprec", "--word-bits", "8", "--frac-bits", "4", "--epochs", "1", "--no-progress"]
    main(argv + ["--out", str(tmp_path / "serial")])
    main(argv + ["--out", str(tmp_path / "pool"), "--jobs", "2"])
    read = lambda out: [{k: v for k, v in r.items() if k != "seconds"}
                        for r in json.loads((out / "lowprec.json").read_text())["records"]]
    assert read(tmp_path / "pool") == read(tmp_path / "serial") and len(read(tmp_path / "serial")) == 3
