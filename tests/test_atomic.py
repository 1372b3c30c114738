"""Atomic writes: the old file survives any failure, no temporary file is left behind."""
import json
import os
import stat
import subprocess
import sys

import pytest

from tinyq import atomic


def test_write_replaces_whole_file_and_leaves_no_temporaries(tmp_path):
    path = tmp_path / "deep" / "f.json"
    atomic.write_json(path, {"a": 1})
    atomic.write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in path.parent.iterdir()] == ["f.json"]


def test_failure_inside_the_block_keeps_the_old_file(tmp_path):
    path = tmp_path / "f.bin"
    atomic.write_bytes(path, b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic.atomic_open(path, "wb") as handle:
            handle.write(b"half of the new")
            raise RuntimeError("boom")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_unserialisable_json_touches_nothing(tmp_path):
    path = tmp_path / "f.json"
    atomic.write_json(path, [1])
    with pytest.raises(TypeError):
        atomic.write_json(path, [object()])
    assert json.loads(path.read_text()) == [1]


def test_atomic_open_refuses_read_modes(tmp_path):
    with pytest.raises(ValueError, match="for writing"):
        with atomic.atomic_open(tmp_path / "f", "r"):
            pass


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    """Every writer goes through atomic_path: checkpoints, records, plots (mkstemp gave 0600 whatever the umask)."""
    import numpy as np

    import tinyq as tq
    from tinyq.experiments.plotting import line_plot, save_figure
    from tinyq.records import save_csv

    old = os.umask(umask)
    try:
        atomic.write_json(tmp_path / "a.json", {"a": 1})
        tq.save({"w": np.ones(2)}, tmp_path / "m.npz")
        save_csv([{"x": 1}], tmp_path / "r.csv")
        save_figure(line_plot([{"x": 1, "y": 2}], "x", "y"), tmp_path / "p.png")
    finally:
        os.umask(old)
    for name in ("a.json", "m.npz", "r.csv", "p.png"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


def test_a_killed_writers_temporary_is_removed_by_the_next_write(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".f.json.{int(dead.stdout)}-0123abcd.tmp"        # its process has exited
    alive = tmp_path / f".f.json.{os.getpid()}-4567cdef.tmp"             # a writer still at work: kept
    other = tmp_path / "notes.tmp"                                       # not ours: kept
    for path in (stale, alive, other):
        path.write_bytes(b"half a file")
    atomic.write_json(tmp_path / "f.json", [1])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, other.name, "f.json"])


def test_json_is_strict_nan_and_inf_become_null(tmp_path):
    import numpy as np

    path = tmp_path / "h.json"
    atomic.write_json(path, {"loss": float("nan"), "rows": [np.float32("inf"), np.float64(-np.inf), 1.5],
                             "array": np.array([np.nan, 2.0])})

    def refuse(constant):
        raise AssertionError(f"bare {constant}")
    assert json.loads(path.read_text(), parse_constant=refuse) == {"loss": None, "rows": [None, None, 1.5],
                                                                    "array": [None, 2.0]}
