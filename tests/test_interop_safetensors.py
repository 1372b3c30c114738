"""Weights in and out: safetensors (numpy flavour) and PyTorch state dicts (torch as the optional oracle)."""
import json
import struct

import numpy as np
import pytest

pytest.importorskip("safetensors", reason="safetensors files need the interop extra: pip install 'tinyq[interop]'")

from tinyq import models, nn
from tinyq.interop.safetensors import load_safetensors, load_weights, save_safetensors
from tinyq.interop.torch_weights import load_torch_state_dict
from tinyq.tensor import Tensor


def _bn_convnet(rng):
    model = models.convnet8(width=4, rng=rng)
    for module in model.modules():                     # non-trivial BatchNorm state
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean = rng.normal(size=module.num_features).astype(np.float32)
            module.running_var = rng.uniform(0.5, 2, module.num_features).astype(np.float32)
            module.num_batches_tracked = np.array(7, np.int64)
    return model.eval()


def test_round_trip_keeps_every_array_bit_for_bit(rng, tmp_path):
    model = _bn_convnet(rng)
    path = tmp_path / "w.safetensors"
    save_safetensors(model, path, metadata={"source": "tinyq"})
    state = load_safetensors(path)
    assert sorted(state) == sorted(model.state_dict())          # the format orders tensors by dtype, then name
    for key, value in model.state_dict().items():
        assert state[key].dtype == np.asarray(value).dtype and np.array_equal(state[key], value), key
    fresh = load_weights(models.convnet8(width=4, rng=np.random.default_rng(9)).eval(), path)
    x = rng.uniform(0, 1, (3, 1, 8, 8)).astype(np.float32)
    assert np.array_equal(fresh(Tensor(x)).data, model(Tensor(x)).data)


def test_the_file_is_the_documented_format(rng, tmp_path):
    """Hand-parse the file: 8-byte little-endian header length, JSON header, raw little-endian data."""
    weight = rng.normal(size=(3, 2)).astype(np.float32)
    path = tmp_path / "w.safetensors"
    save_safetensors({"w": weight}, path)
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    assert header["w"]["dtype"] == "F32" and header["w"]["shape"] == [3, 2]
    begin, end = header["w"]["data_offsets"]
    assert np.array_equal(np.frombuffer(data[8 + length + begin:8 + length + end], "<f4").reshape(3, 2), weight)


def test_truncated_and_corrupt_files_give_clear_errors(rng, tmp_path):
    path = tmp_path / "w.safetensors"
    save_safetensors(models.mlp((64, 16, 10), rng=rng), path)
    data = path.read_bytes()
    cases = {"short": (data[:5], "shorter than the 8-byte"),
             "cut header": (data[:40], "header claims"),
             "cut data": (data[:-10], "truncated"),
             "garbage header": (data[:8] + b"{" * (len(data) - 8), "not JSON"),
             "not an object": (struct.pack("<Q", 2) + b"[]", "expected a JSON object")}
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    first = next(k for k in header if k != "__metadata__")
    header[first]["data_offsets"][1] += 4                       # offsets no longer match dtype × shape
    bad = json.dumps(header).encode()
    cases["bad offsets"] = (struct.pack("<Q", len(bad)) + bad + data[8 + length:], "do not fit")
    for name, (content, message) in cases.items():
        broken = tmp_path / f"{name}.safetensors"
        broken.write_bytes(content)
        with pytest.raises(ValueError, match=message):
            load_safetensors(broken)


def test_names_and_shapes_that_do_not_match_are_named(rng, tmp_path):
    path = tmp_path / "w.safetensors"
    save_safetensors(models.mlp((64, 16, 10), rng=rng), path)
    with pytest.raises(ValueError, match=r"shape mismatches \['1.weight: model \(32, 64\), file \(16, 64\)'"):
        load_weights(models.mlp((64, 32, 10), rng=rng), path)
    state = load_safetensors(path)
    state["extra.weight"] = np.zeros(3, np.float32)
    del state["3.bias"]
    with pytest.raises(ValueError, match=r"missing keys \['3.bias'\], unexpected keys \['extra.weight'\]"):
        load_weights(models.mlp((64, 16, 10), rng=rng), state)


def _torch_lenet(torch):
    tnn = torch.nn
    return tnn.Sequential(tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
                          tnn.Conv2d(6, 16, 5), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(),
                          tnn.Linear(400, 120), tnn.ReLU(), tnn.Linear(120, 84), tnn.ReLU(), tnn.Linear(84, 10)).eval()


def test_round_trip_through_a_torch_model(rng, tmp_path):
    """tinyq → safetensors → torch model → safetensors → tinyq: identical weights, identical outputs."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file, save_file
    model = models.lenet5(rng=rng).eval()
    save_safetensors(model, tmp_path / "a.safetensors")
    torch_model = _torch_lenet(torch)
    torch_model.load_state_dict(load_file(tmp_path / "a.safetensors"), strict=True)
    save_file(torch_model.state_dict(), tmp_path / "b.safetensors")
    back = load_weights(models.lenet5(rng=np.random.default_rng(5)).eval(), tmp_path / "b.safetensors")
    for key, value in model.state_dict().items():
        assert np.array_equal(back.state_dict()[key], value), key
    x = rng.uniform(0, 1, (4, 1, 28, 28)).astype(np.float32)
    ours = back(Tensor(x)).data
    assert np.array_equal(ours, model(Tensor(x)).data)
    with torch.no_grad():
        theirs = torch_model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5 * np.abs(theirs).max())


def test_torch_save_state_dict_reads_through_weights_only(rng, tmp_path):
    torch = pytest.importorskip("torch")
    torch_model = _torch_lenet(torch)
    torch.save({"state_dict": torch_model.state_dict(), "epoch": 3}, tmp_path / "ckpt.pt")
    state = load_torch_state_dict(tmp_path / "ckpt.pt")
    model = load_weights(models.lenet5(rng=rng).eval(), state)
    for key, value in torch_model.state_dict().items():
        assert np.array_equal(model.state_dict()[key], value.numpy()), key


def test_pickled_objects_and_damaged_torch_files_are_refused(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save(_torch_lenet(torch), tmp_path / "whole_model.pt")          # a pickled Module, not a state dict
    with pytest.raises(ValueError, match="weights_only"):
        load_torch_state_dict(tmp_path / "whole_model.pt")
    (tmp_path / "broken.pt").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="not a state dict"):
        load_torch_state_dict(tmp_path / "broken.pt")


def test_without_torch_the_message_says_what_to_do(monkeypatch, tmp_path):
    import builtins
    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError("No module named 'torch'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    with pytest.raises(RuntimeError, match="needs torch.*safetensors"):
        load_torch_state_dict(tmp_path / "x.pt")
