"""tinyq.train: fit/evaluate bookkeeping, checkpoints, determinism, RandomShift."""
import json

import numpy as np
import pytest

import tinyq as tq
from tinyq import nn, optim
from tinyq.data import ArrayDataset, DataLoader, RandomShift
from tinyq.train import accuracy, build_model, evaluate, fit, run, split_validation


def blobs(rng, n=120):
    """Two well separated Gaussian blobs in 2-D: any linear model learns them."""
    y = rng.integers(0, 2, size=n)
    x = rng.normal(size=(n, 2)).astype(np.float32) + np.where(y[:, None] == 1, 3.0, -3.0).astype(np.float32)
    return x, y


def test_accuracy_counts_argmax_matches():
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [5.0, -1.0], [0.1, 0.2]])
    assert accuracy(logits, np.array([0, 1, 1, 1])) == 0.75


def test_evaluate_weights_batches_by_size_and_restores_mode(rng):
    x, y = blobs(rng, n=10)
    model = nn.Linear(2, 2, rng=rng)
    model.train()
    small = evaluate(model, DataLoader(ArrayDataset(x, y), batch_size=3))
    whole = evaluate(model, DataLoader(ArrayDataset(x, y), batch_size=10))
    assert small["loss"] == pytest.approx(whole["loss"], rel=1e-5) and small["accuracy"] == whole["accuracy"]
    assert model.training


def test_fit_learns_records_history_and_saves_checkpoints(rng, tmp_path):
    x, y = blobs(rng)
    model = nn.Linear(2, 2, rng=rng)
    loader = DataLoader(ArrayDataset(x, y), 16, shuffle=True, rng=rng)
    seen = []
    history = fit(model, loader, optim.SGD(model.parameters(), lr=0.1), 3, val_loader=DataLoader(ArrayDataset(x, y), 64),
                  checkpoint_dir=tmp_path, progress=False, on_epoch=seen.append)
    assert [r["epoch"] for r in history] == [1, 2, 3] and seen == history
    assert set(history[0]) == {"epoch", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy"}
    assert history[-1]["val_accuracy"] > 0.95
    best = max(history, key=lambda r: (r["val_accuracy"], r["epoch"]))
    clone = nn.Linear(2, 2)
    clone.load_state_dict(tq.load(tmp_path / "best.npz"))
    assert evaluate(clone, DataLoader(ArrayDataset(x, y), 64))["accuracy"] == best["val_accuracy"]
    np.testing.assert_array_equal(tq.load(tmp_path / "last.npz")["weight"], model.weight.data)
    with pytest.raises(ValueError, match="positive int"):
        fit(model, loader, optim.SGD(model.parameters(), lr=0.1), 0)


def test_run_is_deterministic_and_writes_history(tmp_path):
    first = run("mlp", "digits", epochs=2, seed=5, out=tmp_path / "a", echo=None, progress=False)
    second = run("mlp", "digits", epochs=2, seed=5, out=tmp_path / "b", echo=None, progress=False)
    other = run("mlp", "digits", epochs=2, seed=6, echo=None, progress=False)
    strip = lambda r: {k: v for k, v in r["summary"].items() if k != "seconds"}  # noqa: E731
    assert strip(first) == strip(second) and first["history"] == second["history"]
    assert other["history"] != first["history"]
    saved = json.loads((tmp_path / "a" / "history.json").read_text())
    assert saved["records"] == first["history"] and saved["metadata"]["seed"] == 5
    assert first["summary"]["test_accuracy"] > 0.5  # two epochs already learn the digits


def test_build_model_and_run_reject_bad_names():
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        build_model("resnet", (1, 8, 8))
    with pytest.raises(ValueError, match="lenet expects 28x28"):
        build_model("lenet", (1, 8, 8))
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        run("mlp", "imagenet", echo=None)
    assert build_model("lenet", (1, 28, 28))(tq.tensor(np.zeros((2, 1, 28, 28), np.float32))).shape == (2, 10)


def test_split_validation_partitions(rng):
    x = np.arange(20)[:, None]
    x_train, y_train, x_val, y_val = split_validation(x, np.arange(20), 0.25, rng)
    assert len(x_val) == 5 and sorted(np.concatenate([y_train, y_val]).tolist()) == list(range(20))
    with pytest.raises(ValueError, match="val_fraction"):
        split_validation(x, np.arange(20), 1.0, rng)


def test_random_shift_moves_images_by_at_most_one_pixel(rng):
    x = np.zeros((200, 1, 5, 5), np.float32)
    x[:, 0, 2, 2] = 1.0  # one bright pixel in the centre
    out = RandomShift(1, rng)(x)
    rows, cols = np.nonzero(out[:, 0].reshape(200, 25))[1] // 5, np.nonzero(out[:, 0].reshape(200, 25))[1] % 5
    assert out.shape == x.shape and out.sum() == 200  # every image keeps its pixel
    assert set(rows.tolist()) == {1, 2, 3} and set(cols.tolist()) == {1, 2, 3}  # all 9 shifts occur
    np.testing.assert_array_equal(RandomShift(0, rng)(x), x)
    with pytest.raises(ValueError, match="\\(N, C, H, W\\)"):
        RandomShift(1, rng)(np.zeros((3, 5, 5)))
