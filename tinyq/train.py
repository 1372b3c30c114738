"""Training loop: fit / evaluate with history records, best checkpoint, seeded end to end.

    history = fit(model, train_loader, optimizer, epochs, val_loader=val_loader, checkpoint_dir="runs/x")

Each epoch appends a record {epoch, lr, train_loss, train_accuracy, val_loss,
val_accuracy}; the model with the best val_accuracy is saved as best.npz (and
the last one as last.npz). `run()` is what `tinyq train` calls: it builds the
data, the model and the optimizer from a seed, so the same seed gives the same
numbers. Progress bars (tqdm) switch themselves off when stderr is not a TTY.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

import tinyq as tq
from tinyq import functional as F
from tinyq import nn, optim
from tinyq.data import LOADERS, ArrayDataset, DataLoader, RandomShift, normalize
from tinyq.records import save_json
from tinyq import models

# per-model defaults used by `tinyq train` (measured on the 8x8 digits; see README)
DEFAULTS = {
    "mlp": dict(epochs=60, batch_size=32, lr=0.05),
    "convnet": dict(epochs=12, batch_size=32, lr=0.05),
    "lenet": dict(epochs=6, batch_size=64, lr=0.05),
}


def fast_mode() -> bool:
    """True when TINYQ_FAST=1 (CI and notebook tests): callers shrink epochs and data."""
    return os.environ.get("TINYQ_FAST", "") not in ("", "0")


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """acc = mean(argmax(logits, axis=1) == labels)."""
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def evaluate(model: nn.Module, loader: DataLoader) -> dict:
    """{loss, accuracy} of model over every batch of loader, weighted by batch size.

    Evaluating changes nothing: the model runs in eval mode without gradients and with its observers
    paused (Module.evaluating), and every module gets back its own mode afterwards.
    """
    total_loss, correct, count = 0.0, 0, 0
    with tq.no_grad(), model.evaluating():
        for x, y in loader:
            logits = model(tq.tensor(x))
            total_loss += float(F.cross_entropy(logits, y).data) * len(y)
            correct += int(np.sum(np.argmax(logits.data, axis=1) == y))
            count += len(y)
    if count == 0:
        raise ValueError("evaluate got an empty loader")
    return {"loss": total_loss / count, "accuracy": correct / count}


def train_epoch(model: nn.Module, loader: DataLoader, optimizer: optim.Optimizer, *,
                scheduler: optim.LRScheduler | None = None, progress: bool | None = None,
                description: str = "") -> dict:
    """One pass over loader: loss = cross_entropy(model(x), y); backward; optimizer.step() (scheduler per step)."""
    model.train()
    total_loss, correct, count = 0.0, 0, 0
    bar = tqdm(loader, desc=description, leave=False, disable=None if progress is None else not progress)
    for x, y in bar:
        logits = model(tq.tensor(x))
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total_loss += float(loss.data) * len(y)
        correct += int(np.sum(np.argmax(logits.data, axis=1) == y))
        count += len(y)
        bar.set_postfix(loss=f"{total_loss / count:.4f}", refresh=False)
    return {"loss": total_loss / count, "accuracy": correct / count}


def fit(model: nn.Module, train_loader: DataLoader, optimizer: optim.Optimizer, epochs: int, *,
        val_loader: DataLoader | None = None, scheduler: optim.LRScheduler | None = None,
        checkpoint_dir=None, progress: bool | None = None,
        on_epoch: Callable[[dict], None] | None = None) -> list[dict]:
    """history = one record per epoch; best val_accuracy model -> checkpoint_dir/best.npz, last -> last.npz."""
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"fit expects epochs a positive int, got {epochs!r}")
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    history, best = [], -1.0
    for epoch in range(1, epochs + 1):
        lr = optimizer.lr
        train = train_epoch(model, train_loader, optimizer, scheduler=scheduler, progress=progress,
                            description=f"epoch {epoch}/{epochs}")
        record = {"epoch": epoch, "lr": lr, "train_loss": train["loss"], "train_accuracy": train["accuracy"]}
        if val_loader is not None:
            val = evaluate(model, val_loader)
            record.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
        history.append(record)
        if checkpoint_dir is not None:
            tq.save(model.state_dict(), checkpoint_dir / "last.npz")
            score = record.get("val_accuracy", -record["train_loss"])
            if score >= best:  # ties go to the later (longer-trained) epoch
                best = score
                tq.save(model.state_dict(), checkpoint_dir / "best.npz")
        if on_epoch is not None:
            on_epoch(record)
    return history


def build_model(name: str, image_shape: tuple[int, int, int], num_classes: int = 10,
                rng: np.random.Generator | None = None) -> nn.Module:
    """The named model (mlp 512 hidden | lenet | convnet width 32) sized for images of image_shape (C, H, W)."""
    return models.for_images(name, image_shape, num_classes, rng=rng)


def split_validation(x: np.ndarray, y: np.ndarray, fraction: float, rng: np.random.Generator):
    """(x_train, y_train, x_val, y_val): a random fraction of the samples held out for validation."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {fraction}")
    order = rng.permutation(len(x))
    n_val = int(round(fraction * len(x)))
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    return x[train], y[train], x[val], y[val]


def run(model: str = "mlp", dataset: str = "digits", *, epochs: int | None = None, batch_size: int | None = None,
        lr: float | None = None, momentum: float = 0.9, weight_decay: float = 5e-4, val_fraction: float = 0.1,
        augment: bool = True, seed: int = 0, out=None, progress: bool | None = None,
        echo: Callable[[str], None] | None = print) -> dict:
    """Train model on dataset from seed (SGD + momentum, cosine schedule, random 1-pixel shifts when augment);
    returns {"summary": ..., "history": [...]}; prints the epoch table and the wall time through echo."""
    if model not in DEFAULTS:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(DEFAULTS)}")
    if dataset not in LOADERS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(LOADERS)}")
    settings = dict(DEFAULTS[model])
    settings.update({k: v for k, v in dict(epochs=epochs, batch_size=batch_size, lr=lr).items() if v is not None})
    if fast_mode():
        settings["epochs"] = min(settings["epochs"], 2)
    echo = echo or (lambda line: None)
    started = time.perf_counter()
    init_rng, split_rng, shuffle_rng, augment_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))
    tq.manual_seed(seed)

    x_all, y_all = LOADERS[dataset]("train")
    x_test, y_test = LOADERS[dataset]("test")
    x_train, y_train, x_val, y_val = split_validation(x_all, y_all, val_fraction, split_rng)
    mean, std = x_train.mean(axis=(0, 2, 3)), x_train.std(axis=(0, 2, 3))

    def standardize(x):
        return normalize(x, mean, std)

    shift = RandomShift(1, augment_rng)

    def augment_then_standardize(x):
        return normalize(shift(x), mean, std)

    train_loader = DataLoader(ArrayDataset(x_train, y_train), settings["batch_size"], shuffle=True, rng=shuffle_rng,
                              transform=augment_then_standardize if augment else standardize)
    val_loader = DataLoader(ArrayDataset(x_val, y_val), 256, transform=standardize) if len(x_val) else None
    test_loader = DataLoader(ArrayDataset(x_test, y_test), 256, transform=standardize)

    net = build_model(model, x_train.shape[1:], int(y_all.max()) + 1, rng=init_rng)
    optimizer = optim.SGD(net.parameters(), lr=settings["lr"], momentum=momentum, weight_decay=weight_decay)
    scheduler = optim.CosineLR(optimizer, total_steps=settings["epochs"] * len(train_loader))
    echo(f"tinyq train: {model} on {dataset} ({len(x_train)} train / {len(x_val)} val / {len(x_test)} test), "
         f"{net.num_parameters()} parameters, epochs={settings['epochs']} batch_size={settings['batch_size']} "
         f"lr={settings['lr']} augment={augment} seed={seed}")
    echo(f"{'epoch':>5} {'lr':>8} {'train_loss':>10} {'train_acc':>9} {'val_loss':>8} {'val_acc':>7}")

    def show(record):
        echo(f"{record['epoch']:>5} {record['lr']:>8.5f} {record['train_loss']:>10.4f} "
             f"{record['train_accuracy']:>9.4f} {record.get('val_loss', float('nan')):>8.4f} "
             f"{record.get('val_accuracy', float('nan')):>7.4f}")

    out = Path(out) if out is not None else None
    history = fit(net, train_loader, optimizer, settings["epochs"], val_loader=val_loader, scheduler=scheduler,
                  checkpoint_dir=out, progress=progress, on_epoch=show)
    final = evaluate(net, test_loader)
    summary = {"model": model, "dataset": dataset, "seed": seed, **settings, "momentum": momentum,
               "weight_decay": weight_decay, "val_fraction": val_fraction, "augment": augment, "parameters": net.num_parameters(),
               "test_loss": final["loss"], "test_accuracy": final["accuracy"]}
    if out is not None and val_loader is not None:
        best_epoch = max(history, key=lambda r: (r["val_accuracy"], r["epoch"]))["epoch"]
        net.load_state_dict(tq.load(out / "best.npz"))
        best = evaluate(net, test_loader)
        summary.update(best_epoch=best_epoch, best_test_accuracy=best["accuracy"])
    summary["seconds"] = time.perf_counter() - started
    echo(f"test accuracy (last epoch): {final['accuracy']:.4f}   test loss: {final['loss']:.4f}")
    if "best_epoch" in summary:
        echo(f"test accuracy (best val checkpoint, epoch {summary['best_epoch']}): "
             f"{summary['best_test_accuracy']:.4f}")
    if out is not None:
        save_json(history, out / "history.json", metadata=summary)
        echo(f"checkpoints and history in {out}")
    echo(f"wall time: {summary['seconds']:.1f} s")
    return {"summary": summary, "history": history}
