"""Mixed-precision training of the digits CNN: fp32, fp16 (no / static / dynamic loss scaling), bf16, fp8.

Every run starts from the same fp32 weights, sees the same batches, and updates
fp32 master weights with SGD + momentum and a cosine learning rate; only the precision of the forward and
backward GEMMs (`amp.autocast`) and the loss scaling differ.

The loss is small on purpose: L = loss_multiplier · cross_entropy with
loss_multiplier = 2^-14, as when a loss is averaged over many more elements
(pixels, tokens) than our 32 images, and the learning rate is lr / loss_multiplier.
In fp32 this is *the same training*, bit for bit (scaling by a power of two is
exact), but every gradient is 2^14 times smaller: in fp16 most of them fall below
the smallest subnormal 2^-24 and round to zero unless the loss is scaled up again.

The dynamic scaler starts at PyTorch's 2^16 but grows every 25 finite steps instead
of 2000: our runs are ~540 steps long, so with 2000 the rule would never act.

    runs = run(epochs=12, seed=0)                # list of records, one per precision
"""
from __future__ import annotations

import time

import numpy as np
from tqdm.auto import tqdm

import tinyq as tq
from tinyq import amp, models, optim
from tinyq import functional as F
from tinyq.data import LOADERS, ArrayDataset, DataLoader, normalize

# name -> (autocast dtype or None for fp32, scaling "none" | "static" | "dynamic")
RUNS = {
    "fp32": (None, "none"),
    "fp16": ("float16", "none"),
    "fp16+static": ("float16", "static"),
    "fp16+dynamic": ("float16", "dynamic"),
    "bf16": ("bf16", "none"),
    "fp8": ("fp8", "none"),
}
SUMMARY_COLUMNS = ["run", "precision", "scaling", "test_accuracy", "train_loss", "skipped_steps", "final_scale",
                   "zero_gradient_fraction", "seconds"]


def load_data(dataset: str = "digits", seed: int = 0, limit: int | None = None):
    """(x_train, y_train, x_test, y_test) standardized with the training mean and std (first `limit` samples)."""
    if dataset not in LOADERS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(LOADERS)}")
    x_train, y_train = LOADERS[dataset]("train")
    x_test, y_test = LOADERS[dataset]("test")
    if limit is not None:
        x_train, y_train, x_test, y_test = x_train[:limit], y_train[:limit], x_test[:limit], y_test[:limit]
    mean, std = x_train.mean(axis=(0, 2, 3)), x_train.std(axis=(0, 2, 3))
    return normalize(x_train, mean, std), y_train, normalize(x_test, mean, std), y_test


def make_scaler(scaling: str, static_scale: float, init_scale: float, growth_interval: int) -> amp.LossScaler:
    """none: a static scale of 1 (inf/NaN steps are still skipped); static: static_scale; dynamic: the rule."""
    if scaling == "none":
        return amp.LossScaler(init_scale=1.0, dynamic=False)
    if scaling == "static":
        return amp.LossScaler(init_scale=static_scale, dynamic=False)
    if scaling == "dynamic":
        return amp.LossScaler(init_scale=init_scale, growth_interval=growth_interval)
    raise ValueError(f"scaling must be one of none, static, dynamic; got {scaling!r}")


def test_accuracy(model, x, y, precision) -> float:
    """acc = mean(argmax(model(x)) == y), evaluated under the run's autocast (no gradient)."""
    model.eval()
    with tq.no_grad(), amp.autocast(precision or "float16", enabled=precision is not None):
        logits = model(tq.tensor(x)).data
    model.train()
    return float(np.mean(np.argmax(logits, axis=1) == y))


def train_one(name: str, data, *, model: str = "convnet", width: int = 16, epochs: int = 12, batch_size: int = 32,
              lr: float = 0.05, momentum: float = 0.9, loss_multiplier: float = 2.0 ** -14,
              static_scale: float = 2.0 ** 14, init_scale: float = 2.0 ** 16, growth_interval: int = 25,
              seed: int = 0, statistics_steps: int = 5, progress: bool | None = None) -> dict:
    """Train one RUNS[name] configuration; a summary record with per-epoch `curve` and per-step `scales`."""
    if name not in RUNS:
        raise ValueError(f"unknown run {name!r}; choose from {', '.join(RUNS)}")
    precision, scaling = RUNS[name]
    x_train, y_train, x_test, y_test = data
    init_rng, shuffle_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    if model == "convnet":
        net = models.convnet8(x_train.shape[1], 10, width=width, rng=init_rng)
    elif model == "mlp":
        net = models.mlp((int(np.prod(x_train.shape[1:])), 128, 10), rng=init_rng)
    else:
        raise ValueError(f"model must be convnet or mlp, got {model!r}")
    optimizer = optim.SGD(net.parameters(), lr=lr / loss_multiplier, momentum=momentum)
    loader = DataLoader(ArrayDataset(x_train, y_train), batch_size, shuffle=True, rng=shuffle_rng)
    schedule = optim.CosineLR(optimizer, total_steps=epochs * len(loader))
    scaler = make_scaler(scaling, static_scale, init_scale, growth_interval)
    statistics = amp.GradientStatistics()
    started, curve, step = time.perf_counter(), [], 0
    bar = tqdm(range(1, epochs + 1), desc=name, leave=False, disable=None if progress is None else not progress)
    for epoch in bar:
        total, count = 0.0, 0
        for x, y in loader:
            recording = statistics if step < statistics_steps and precision is not None else None
            with amp.autocast(precision or "float16", statistics=recording, enabled=precision is not None):
                loss = F.cross_entropy(net(tq.tensor(x)), y) * loss_multiplier
            optimizer.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            schedule.step()
            total += float(loss.data) / loss_multiplier * len(y)
            count += len(y)
            step += 1
        curve.append({"run": name, "epoch": epoch, "train_loss": total / count,
                      "test_accuracy": test_accuracy(net, x_test, y_test, precision)})
    rows = statistics.table()
    output_rows = [r for r in rows if r["gradient"] == "output"]
    zero_fraction = (sum(r["underflow_to_zero"] * r["nonzero"] for r in output_rows)
                     / max(sum(r["nonzero"] for r in output_rows), 1)) if output_rows else 0.0
    return {"run": name, "precision": precision or "fp32", "scaling": scaling,
            "test_accuracy": curve[-1]["test_accuracy"], "train_loss": curve[-1]["train_loss"],
            "skipped_steps": sum(not stepped for _, stepped in scaler.history), "final_scale": scaler.get_scale(),
            "zero_gradient_fraction": zero_fraction, "seconds": time.perf_counter() - started,
            "curve": curve, "scales": [s for s, _ in scaler.history],
            "skipped_at": [i for i, (_, stepped) in enumerate(scaler.history) if not stepped],
            "underflow": rows}


def run(names=tuple(RUNS), dataset: str = "digits", *, seed: int = 0, limit: int | None = None,
        progress: bool | None = None, **settings) -> list[dict]:
    """One record per run name (see train_one for settings), all from the same seed and data."""
    data = load_data(dataset, seed, limit)
    return [train_one(name, data, seed=seed, progress=progress, **settings) for name in names]


def plot(results: list[dict]):
    """Three panels: test accuracy per epoch, training loss per epoch, loss scale per step (log2)."""
    from matplotlib.figure import Figure

    import tinyq.experiments.plotting  # selects a headless matplotlib backend
    fig = Figure(figsize=(13, 4), constrained_layout=True)
    acc_ax, loss_ax, scale_ax = fig.subplots(1, 3)
    for r in results:
        epochs = [c["epoch"] for c in r["curve"]]
        acc_ax.plot(epochs, [c["test_accuracy"] for c in r["curve"]], marker="o", markersize=3, label=r["run"])
        loss_ax.plot(epochs, [c["train_loss"] for c in r["curve"]], marker="o", markersize=3, label=r["run"])
        if r["scaling"] != "none":
            scale_ax.plot(np.log2(r["scales"]), label=r["run"])
            if r["skipped_at"]:
                scale_ax.plot(r["skipped_at"], np.log2(np.asarray(r["scales"])[r["skipped_at"]]), "x", color="red")
    acc_ax.set(xlabel="epoch", ylabel="test accuracy", title="test accuracy")
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy (before the multiplier)", title="training loss", yscale="log")
    scale_ax.set(xlabel="step", ylabel="log2 loss scale", title="loss scale (x: skipped step)")
    for ax in (acc_ax, loss_ax, scale_ax):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    return fig
