"""Checkpoints: round trip, atomic write, no pickles, clear errors for bad files."""
import io
import os
import zipfile

import numpy as np
import pytest

import tinyq as tq
from tinyq import models, serialize


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


def test_an_npz_whose_header_declares_a_huge_array_is_refused_before_allocating(tmp_path):
    """10^10 float32 declared (40 GB) in a 200-byte file: the old loader tried to allocate 37 GiB."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10 ** 10,)})
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("weight.npy", header.getvalue() + bytes(64))
    with pytest.raises(ValueError, match=r"'weight.npy' declares shape \(10000000000,\) of float32 "
                                         r"\(40000000000 bytes\) but holds 64 bytes"):
        tq.load(path)


def test_a_zip_member_lying_about_its_size_is_refused(tmp_path):
    path = tmp_path / "m.npz"
    tq.save({"a": np.ones(4)}, path)
    blob = bytearray(path.read_bytes())
    central = blob.rfind(b"PK\x01\x02")            # central directory entry: uncompressed size at offset 24
    blob[central + 24:central + 28] = (2 ** 31).to_bytes(4, "little")
    path.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="claims 2147483648 bytes"):
        tq.load(path)


def test_load_into_names_the_differing_keys_and_the_model_the_checkpoint_holds(tmp_path):
    path = tmp_path / "m.npz"
    tq.save(models.mlp((4, 8, 3), rng=np.random.default_rng(0)).state_dict(), path)
    target = models.mlp((4, 5, 5, 3), rng=np.random.default_rng(0))
    with pytest.raises(ValueError) as error:
        serialize.load_into(target, path, {"the 4-8-3 MLP": models.mlp((4, 8, 3))})
    message = str(error.value)
    assert "missing keys ['5.weight', '5.bias']" in message                  # mlp: 0 is Flatten, 1 3 5 Linear
    assert "1.weight has shape (8, 4), the model needs (5, 4)" in message
    assert "it seems to hold the 4-8-3 MLP" in message
    with pytest.raises(ValueError, match="it holds Linear 4->8, Linear 8->3"):
        serialize.load_into(target, path)
