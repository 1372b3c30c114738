"""Every chapter notebook runs top to bottom (TINYQ_FAST=1) and is committed without outputs.

The chapters check their own prose: every claim is an `assert` in a cell, so a notebook whose text and
output disagree fails here (test_a_false_claim_fails_the_run shows it on a fixture). Each run's wall time
is printed and recorded in CHAPTER_TIMES_FILE (JSON, one entry per notebook) when that variable is set.
"""
import json
import os
import resource
import sys
import time
from pathlib import Path

import pytest

CHAPTERS = Path(__file__).resolve().parents[1] / "chapters"
NOTEBOOKS = sorted(CHAPTERS.glob("*.ipynb"))
PARAMS = [pytest.param(p, id=p.name) for p in NOTEBOOKS] or [
    pytest.param(None, marks=pytest.mark.skip(reason="no chapters/*.ipynb yet"), id="no-chapters")]
KERNEL = "tinyq-test-python"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "chapters"


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory):
    """A kernelspec that runs ipykernel with this very interpreter (not whatever `python` is on PATH)."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "tinyq tests", "language": "python"}))
    return root


@pytest.mark.parametrize("path", PARAMS)
def test_notebook_is_committed_without_outputs(path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    dirty = [i for i, cell in enumerate(notebook["cells"]) if cell["cell_type"] == "code"
             and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs or execution counts; clear them before committing"


def run_notebook(path, kernel_dir, monkeypatch, fast=True):
    """Execute a notebook top to bottom in a fresh kernel; returns (wall seconds, the kernel's CPU seconds).

    The CPU time (user + system of the finished kernel process) hardly depends on how loaded the machine is,
    so it is the fairer number on a shared machine; the wall time is what a student waits."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    if fast:
        monkeypatch.setenv("TINYQ_FAST", "1")
    else:
        monkeypatch.delenv("TINYQ_FAST", raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_dir))
    # the kernel imports this checkout's tinyq
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(CHAPTERS.parent), os.environ.get("PYTHONPATH")])))
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name=KERNEL,
                                     resources={"metadata": {"path": str(path.parent)}})
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError naming the failing cell; the kernel has exited afterwards
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def record_time(name, seconds, cpu_seconds, fast):
    """Print the run time (shown with -s or on failure) and add it to $CHAPTER_TIMES_FILE if set."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{name}: {seconds:.1f} s wall, {cpu_seconds:.1f} s CPU (TINYQ_FAST={int(fast)}, load average {load:.1f})")
    target = os.environ.get("CHAPTER_TIMES_FILE")
    if target:
        target = Path(target)
        times = json.loads(target.read_text()) if target.exists() else {}
        times[name] = {"seconds": round(seconds, 1), "cpu_seconds": round(cpu_seconds, 1), "fast": fast,
                       "load_average": round(load, 2)}
        target.write_text(json.dumps(times, indent=1, sort_keys=True))


@pytest.mark.timeout(600)
@pytest.mark.parametrize("path", PARAMS)
def test_notebook_runs_top_to_bottom(path, kernel_dir, monkeypatch):
    fast = os.environ.get("CHAPTERS_FULL") != "1"   # CHAPTERS_FULL=1: the full run a student gets
    seconds, cpu_seconds = run_notebook(path, kernel_dir, monkeypatch, fast=fast)
    record_time(path.name, seconds, cpu_seconds, fast)


@pytest.mark.timeout(120)
def test_a_false_claim_fails_the_run(kernel_dir, monkeypatch):
    """The fixture's prose says 0.1 + 0.2 == 0.3 in binary floating point and asserts it: the run must fail."""
    nbclient = pytest.importorskip("nbclient")
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="AssertionError"):
        run_notebook(FIXTURES / "false_claim.ipynb", kernel_dir, monkeypatch)


@pytest.mark.timeout(120)
def test_a_true_claim_passes(kernel_dir, monkeypatch):
    """The same fixture with the claim stated correctly runs: the failure above is the claim, not the set-up."""
    run_notebook(FIXTURES / "true_claim.ipynb", kernel_dir, monkeypatch)


def test_every_chapter_uses_the_same_import_fallback():
    """The first code cell of every chapter carries the sys.path fallback for a clone that is not installed."""
    for path in NOTEBOOKS:
        first = next(c for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code")
        source = "".join(first["source"])
        assert "except ImportError:" in source and "sys.path.insert(0, str(Path.cwd().parent))" in source, path.name
