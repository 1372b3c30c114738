"""Checkpoints: round trip, atomic write, no pickles, clear errors for bad files."""
import os

import numpy as np
import pytest

import tinyq as tq
from tinyq import models


def test_round_trip_preserves_names_dtypes_and_values(tmp_path):
    state = models.convnet8(rng=np.random.default_rng(0)).state_dict()
    path = tmp_path / "m.npz"
    tq.save(state, path)
    loaded = tq.load(path)
    assert list(loaded) == list(state)
    for key in state:
        assert loaded[key].dtype == state[key].dtype
        np.testing.assert_array_equal(loaded[key], state[key])
    model = models.convnet8(rng=np.random.default_rng(9))
    model.load_state_dict(loaded)


def test_save_leaves_no_temporary_files_and_replaces_atomically(tmp_path):
    path = tmp_path / "sub" / "m.npz"
    tq.save({"a": np.ones(3)}, path)
    tq.save({"a": np.zeros(3)}, path)
    assert sorted(os.listdir(tmp_path / "sub")) == ["m.npz"]
    np.testing.assert_array_equal(tq.load(path)["a"], np.zeros(3))


def test_a_failed_save_keeps_the_old_file(tmp_path):
    path = tmp_path / "m.npz"
    tq.save({"a": np.ones(2)}, path)
    with pytest.raises(TypeError, match="numeric arrays"):
        tq.save({"a": np.array([object()], dtype=object)}, path)
    np.testing.assert_array_equal(tq.load(path)["a"], np.ones(2))
    assert sorted(os.listdir(tmp_path)) == ["m.npz"]


def test_truncated_and_corrupted_files_give_clear_errors(tmp_path):
    path = tmp_path / "m.npz"
    tq.save(models.mlp((4, 3)).state_dict(), path)
    data = path.read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupted"):
        tq.load(tmp_path / "truncated.npz")
    (tmp_path / "garbage.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="truncated or corrupted"):
        tq.load(tmp_path / "garbage.npz")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tq.load(tmp_path / "missing.npz")


def test_pickled_object_arrays_are_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError, match="truncated or corrupted|pickle"):
        tq.load(path)
