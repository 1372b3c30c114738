"""Training loop: fit / evaluate with history records, best checkpoint, seeded end to end.

    history = fit(model, train_loader, optimizer, epochs, val_loader=val_loader, checkpoint_dir="runs/x")

Each epoch appends a record {epoch, lr, train_loss, train_accuracy, val_loss,
val_accuracy}; the model with the best val_accuracy is saved as best.npz (and
the last one as last.npz). `run()` is what `tinyq train` calls: it builds the
data, the model and the optimizer from a seed, so the same seed gives the same
numbers. Progress bars (tqdm) switch themselves off when stderr is not a TTY.
"""
from __future__ import annotations

import math
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
from tinyq.run_folder import MANIFEST, RunFolder
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


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: training stops (the numbers after that mean nothing)."""

    def __init__(self, epoch: int, loss: float):
        super().__init__(f"training diverged in epoch {epoch}: the training loss is {loss} "
                         "(try a smaller --lr / lr)")
        self.epoch, self.loss = epoch, loss


def train_epoch(model: nn.Module, loader: DataLoader, optimizer: optim.Optimizer, *,
                scheduler: optim.LRScheduler | None = None, progress: bool | None = None,
                description: str = "", epoch: int = 1) -> dict:
    """One pass over loader: loss = cross_entropy(model(x), y); backward; optimizer.step() (scheduler per step).

    Raises TrainingDiverged (naming `epoch`) as soon as a batch's loss is NaN or infinite.
    """
    model.train()
    total_loss, correct, count = 0.0, 0, 0
    bar = tqdm(loader, desc=description, leave=False, disable=None if progress is None else not progress)
    for x, y in bar:
        logits = model(tq.tensor(x))
        loss = F.cross_entropy(logits, y)
        batch_loss = float(loss.data)
        if not math.isfinite(batch_loss):
            bar.close()
            raise TrainingDiverged(epoch, batch_loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total_loss += batch_loss * len(y)
        correct += int(np.sum(np.argmax(logits.data, axis=1) == y))
        count += len(y)
        bar.set_postfix(loss=f"{total_loss / count:.4f}", refresh=False)
    if count == 0:
        raise ValueError("train_epoch got an empty loader")
    return {"loss": total_loss / count, "accuracy": correct / count}


def fit(model: nn.Module, train_loader: DataLoader, optimizer: optim.Optimizer, epochs: int, *,
        val_loader: DataLoader | None = None, scheduler: optim.LRScheduler | None = None,
        checkpoint_dir=None, progress: bool | None = None,
        on_epoch: Callable[[dict], None] | None = None) -> list[dict]:
    """history = one record per epoch; best val_accuracy model -> checkpoint_dir/best.npz, last -> last.npz.

    Stops with TrainingDiverged when the loss becomes NaN or infinite. (`tinyq train` goes through
    `run`, whose run folder also keeps the history and can be resumed.)
    """
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"fit expects epochs a positive int, got {epochs!r}")
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    history, best = [], -math.inf
    for epoch in range(1, epochs + 1):
        record = _epoch(model, train_loader, optimizer, scheduler, val_loader, epoch, epochs, progress)
        history.append(record)
        if checkpoint_dir is not None:
            tq.save(model.state_dict(), checkpoint_dir / "last.npz")
            if _score(record) >= best:  # ties go to the later (longer-trained) epoch
                best = _score(record)
                tq.save(model.state_dict(), checkpoint_dir / "best.npz")
        if on_epoch is not None:
            on_epoch(record)
    return history


def _epoch(model, train_loader, optimizer, scheduler, val_loader, epoch: int, epochs: int, progress) -> dict:
    lr = optimizer.lr
    train = train_epoch(model, train_loader, optimizer, scheduler=scheduler, progress=progress,
                        description=f"epoch {epoch}/{epochs}", epoch=epoch)
    record = {"epoch": epoch, "lr": lr, "train_loss": train["loss"], "train_accuracy": train["accuracy"]}
    if val_loader is not None:
        val = evaluate(model, val_loader)
        record.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
    return record


def _score(record: dict) -> float:
    """What "best" means: validation accuracy, or minus the training loss without a validation split."""
    return record.get("val_accuracy", -record["train_loss"])


def build_model(name: str, image_shape: tuple[int, int, int], num_classes: int = 10,
                rng: np.random.Generator | None = None) -> nn.Module:
    """The named model (mlp 512 hidden | lenet | convnet width 32) sized for images of image_shape (C, H, W)."""
    return models.for_images(name, image_shape, num_classes, rng=rng)


def split_validation(x: np.ndarray, y: np.ndarray, fraction: float, rng: np.random.Generator):
    """(x_train, y_train, x_val, y_val): a random fraction of the samples held out for validation."""
    if not isinstance(fraction, (int, float)) or not 0.0 <= fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {fraction!r}")
    order = rng.permutation(len(x))
    n_val = int(round(fraction * len(x)))
    if n_val >= len(x):
        raise ValueError(f"val_fraction={fraction} holds out {n_val} of {len(x)} samples and leaves none "
                         "to train on")
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    return x[train], y[train], x[val], y[val]


RUN_FILES = ("best.npz", "last.npz", "history.json", "train_state.npz")


def _check_settings(settings: dict, val_fraction: float) -> None:
    for name in ("epochs", "batch_size"):
        value = settings[name]
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not isinstance(settings["lr"], (int, float)) or not math.isfinite(settings["lr"]) or settings["lr"] <= 0:
        raise ValueError(f"lr must be a finite number > 0, got {settings['lr']!r}")
    if not isinstance(val_fraction, (int, float)) or not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")


def _optimizer_arrays(optimizer: optim.Optimizer) -> dict:
    """{"<parameter index>.<name>": array} of the optimizer's per-parameter state (momentum, ...)."""
    return {f"{i}.{name}": value for i, state in enumerate(optimizer.state) for name, value in state.items()
            if isinstance(value, np.ndarray)}


def _restore_optimizer(optimizer: optim.Optimizer, arrays: dict) -> None:
    for key, value in arrays.items():
        index, name = key.split(".", 1)
        optimizer.state[int(index)][name] = np.array(value)


def run(model: str = "mlp", dataset: str = "digits", *, epochs: int | None = None, batch_size: int | None = None,
        lr: float | None = None, momentum: float = 0.9, weight_decay: float = 5e-4, val_fraction: float = 0.1,
        augment: bool = True, seed: int = 0, out=None, resume: bool = False, overwrite: bool = False,
        progress: bool | None = None, echo: Callable[[str], None] | None = print) -> dict:
    """Train model on dataset from seed (SGD + momentum, cosine schedule, random 1-pixel shifts when augment);
    returns {"summary": ..., "history": [...]}; prints the epoch table and the wall time through echo.

    With `out`, the run folder (tinyq.run_folder) gets best.npz, last.npz, history.json and train_state.npz
    after every epoch, committed together; a folder holding a run is refused unless resume (continue
    it: the history goes on, bit for bit as without the interruption) or overwrite.
    """
    if model not in DEFAULTS:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(DEFAULTS)}")
    if dataset not in LOADERS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(LOADERS)}")
    settings = dict(DEFAULTS[model])
    settings.update({k: v for k, v in dict(epochs=epochs, batch_size=batch_size, lr=lr).items() if v is not None})
    if fast_mode():
        settings["epochs"] = min(settings["epochs"], 2)
    _check_settings(settings, val_fraction)
    echo = echo or (lambda line: None)
    started = time.perf_counter()
    init_rng, split_rng, shuffle_rng, augment_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))
    tq.manual_seed(seed)

    x_all, y_all = LOADERS[dataset]("train")
    x_test, y_test = LOADERS[dataset]("test")
    x_train, y_train, x_val, y_val = split_validation(x_all, y_all, val_fraction, split_rng)
    net = build_model(model, x_train.shape[1:], int(y_all.max()) + 1, rng=init_rng)
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
    optimizer = optim.SGD(net.parameters(), lr=settings["lr"], momentum=momentum, weight_decay=weight_decay)
    scheduler = optim.CosineLR(optimizer, total_steps=settings["epochs"] * len(train_loader))
    summary = {"model": model, "dataset": dataset, "seed": seed, **settings, "momentum": momentum,
               "weight_decay": weight_decay, "val_fraction": val_fraction, "augment": augment,
               "parameters": net.num_parameters()}

    folder, history, best = None, [], {"epoch": None, "score": -math.inf, "state": None}
    if out is not None:
        settings_key = {k: summary[k] for k in ("model", "dataset", "seed", "epochs", "batch_size", "lr", "momentum",
                                                "weight_decay", "val_fraction", "augment")}
        folder = RunFolder(out, "train", settings_key, outputs=RUN_FILES + (MANIFEST,))
        previous = folder.open(resume=resume, overwrite=overwrite)
        if previous is not None:
            history = _resume(folder, previous, net, optimizer, scheduler, best,
                              {"shuffle": shuffle_rng, "augment": augment_rng, "global": tq.random.default_rng()})
            if previous["status"] == "finished":
                echo(f"{out} holds a finished run ({len(history)} epochs); nothing to resume")
                return {"summary": previous["info"].get("summary", summary), "history": history}
            echo(f"resuming {out} after epoch {len(history)} of {settings['epochs']}")

    echo(f"tinyq train: {model} on {dataset} ({len(x_train)} train / {len(x_val)} val / {len(x_test)} test), "
         f"{net.num_parameters()} parameters, epochs={settings['epochs']} batch_size={settings['batch_size']} "
         f"lr={settings['lr']} augment={augment} seed={seed}")
    echo(f"{'epoch':>5} {'lr':>8} {'train_loss':>10} {'train_acc':>9} {'val_loss':>8} {'val_acc':>7}")

    def show(record):
        echo(f"{record['epoch']:>5} {record['lr']:>8.5f} {record['train_loss']:>10.4f} "
             f"{record['train_accuracy']:>9.4f} {record.get('val_loss', float('nan')):>8.4f} "
             f"{record.get('val_accuracy', float('nan')):>7.4f}")

    for record in history:
        show(record)
    for epoch in range(len(history) + 1, settings["epochs"] + 1):
        try:
            record = _epoch(net, train_loader, optimizer, scheduler, val_loader, epoch, settings["epochs"], progress)
        except TrainingDiverged as error:
            if folder is not None:
                folder.commit(status="failed", info=dict(folder.manifest["info"], error=str(error)))
            raise
        history.append(record)
        state = net.state_dict()
        improved = _score(record) >= best["score"]   # ties go to the later (longer-trained) epoch
        if improved:
            best.update(epoch=epoch, score=_score(record), state={k: np.array(v) for k, v in state.items()})
        if folder is not None:
            _commit_epoch(folder, state, improved, history, summary, optimizer, scheduler, best, settings["epochs"],
                          {"shuffle": shuffle_rng, "augment": augment_rng, "global": tq.random.default_rng()})
        show(record)   # after the commit: what is printed is on disk

    final = evaluate(net, test_loader)
    summary.update(test_loss=final["loss"], test_accuracy=final["accuracy"])
    if val_loader is not None and best["state"] is not None:
        net.load_state_dict(best["state"])
        summary.update(best_epoch=best["epoch"], best_test_accuracy=evaluate(net, test_loader)["accuracy"])
    summary["seconds"] = time.perf_counter() - started
    echo(f"test accuracy (last epoch): {final['accuracy']:.4f}   test loss: {final['loss']:.4f}")
    if "best_epoch" in summary:
        echo(f"test accuracy (best val checkpoint, epoch {summary['best_epoch']}): "
             f"{summary['best_test_accuracy']:.4f}")
    if folder is not None:
        folder.commit({"history.json": lambda tmp: save_json(history, tmp, metadata=summary)}, status="finished",
                      info=dict(folder.manifest["info"], summary=summary))
        echo(f"checkpoints and history in {out}")
    echo(f"wall time: {summary['seconds']:.1f} s")
    return {"summary": summary, "history": history}


def _commit_epoch(folder: RunFolder, state, improved, history, summary, optimizer, scheduler, best, epochs, rngs):
    """One commit per epoch: last.npz, best.npz (if improved), history.json, train_state.npz, manifest."""
    files = {"last.npz": lambda tmp: tq.save(state, tmp),
             "history.json": lambda tmp: save_json(history, tmp, metadata=summary),
             "train_state.npz": lambda tmp: tq.save(_optimizer_arrays(optimizer), tmp)}
    if improved:
        files["best.npz"] = lambda tmp: tq.save(state, tmp)
    info = {"progress": f"epoch {len(history)} of {epochs}", "epoch": len(history), "best_epoch": best["epoch"],
            "best_score": best["score"], "scheduler_step": scheduler.t, "lr": optimizer.lr,
            "rng": {name: rng.bit_generator.state for name, rng in rngs.items()}}
    folder.commit(files, info=info)


def _resume(folder: RunFolder, manifest: dict, net, optimizer, scheduler, best, rngs) -> list:
    """Load the run's last epoch (model, optimizer, schedule, generators) and return its history."""
    import json
    info = manifest["info"]
    history = json.loads((folder.path / "history.json").read_text())["records"] if info.get("epoch") else []
    if not history:
        return []
    net.load_state_dict(tq.load(folder.path / "last.npz"))
    _restore_optimizer(optimizer, tq.load(folder.path / "train_state.npz"))
    scheduler.t, optimizer.lr = info["scheduler_step"], info["lr"]
    for name, rng in rngs.items():
        rng.bit_generator.state = info["rng"][name]
    best.update(epoch=info["best_epoch"], score=info["best_score"], state=tq.load(folder.path / "best.npz"))
    return history
