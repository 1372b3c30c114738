"""Atomic writes: the old file survives any failure, no temporary file is left behind."""
import json

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
