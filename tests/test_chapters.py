"""Every chapter notebook runs top to bottom (TINYQ_FAST=1) and is committed without outputs."""
import json
import os
import sys
from pathlib import Path

import pytest

CHAPTERS = Path(__file__).resolve().parents[1] / "chapters"
NOTEBOOKS = sorted(CHAPTERS.glob("*.ipynb"))
PARAMS = [pytest.param(p, id=p.name) for p in NOTEBOOKS] or [
    pytest.param(None, marks=pytest.mark.skip(reason="no chapters/*.ipynb yet"), id="no-chapters")]
KERNEL = "tinyq-test-python"


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


@pytest.mark.timeout(600)
@pytest.mark.parametrize("path", PARAMS)
def test_notebook_runs_top_to_bottom(path, kernel_dir, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("TINYQ_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_dir))
    # the kernel imports this checkout's tinyq
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(CHAPTERS.parent), os.environ.get("PYTHONPATH")])))
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name=KERNEL,
                                     resources={"metadata": {"path": str(CHAPTERS)}})
    client.execute()  # raises CellExecutionError naming the failing cell
