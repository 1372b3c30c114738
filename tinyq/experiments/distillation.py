"""Distilling the digits CNN into a narrow MLP: temperature, α, the T² factor, and the noise.

One teacher (models.convnet8) is trained once with cross-entropy; its logits on the training set are
computed once under no_grad (the teacher is fixed and the data are not augmented, so this is the same as
asking it every step, and much cheaper). Every student (models.mlp 64 → hidden → 10) then starts from a
seed's initial weights and sees that seed's batches:

- "scratch": cross-entropy on the labels only (the baseline);
- "kd": L = α T² KL(p_t ‖ p_s) + (1 − α) CE for every T in `temperatures` and α in `alphas`;
- "kd-noT2": the same loss without the T² factor (α = the first of `alphas`).

Each configuration runs over `seeds` seeds; `summarize` gives mean ± std of the test accuracy per
configuration and the gain over the baseline with its standard error, so a gain smaller than the
seed-to-seed noise is called that.

    records = run(seeds=(0, 1, 2))                 # one record per (configuration, seed)
    table = summarize(records)                     # one row per configuration
"""
from __future__ import annotations

import time

import numpy as np
from tqdm.auto import tqdm

import tinyq as tq
from tinyq import distill, models, optim
from tinyq import functional as F
from tinyq.experiments.mixed_precision import load_data
from tinyq.train import fast_mode

TEMPERATURES = (1.0, 2.0, 4.0, 8.0, 16.0)
ALPHAS = (0.9, 0.5)
SUMMARY_COLUMNS = ["method", "temperature", "alpha", "t2", "seeds", "accuracy_mean", "accuracy_std", "gain",
                   "gain_se", "above_noise"]


def predict(model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Logits of model on x, in eval mode, without gradients, batch by batch."""
    with tq.no_grad(), model.evaluating():
        return np.concatenate([model(tq.tensor(x[i:i + batch_size])).data for i in range(0, len(x), batch_size)])


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    """acc = mean(argmax model(x) == y)."""
    return float(np.mean(np.argmax(predict(model, x), axis=1) == y))


def train(model, x: np.ndarray, y: np.ndarray, epochs: int, *, lr: float = 0.05, batch_size: int = 32,
          teacher_logits: np.ndarray | None = None, temperature: float = 4.0, alpha: float = 0.9,
          scale_by_t2: bool = True, rng: np.random.Generator, progress: bool | None = False) -> list[float]:
    """SGD + momentum 0.9, cosine lr; cross-entropy, or the KD loss when teacher_logits (one row per x) are given."""
    optimizer = optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    steps_per_epoch = -(-len(x) // batch_size)
    schedule = optim.CosineLR(optimizer, total_steps=epochs * steps_per_epoch)
    losses = []
    model.train()
    for _ in tqdm(range(epochs), leave=False, disable=None if progress is None else not progress):
        order, total = rng.permutation(len(x)), 0.0
        for start in range(0, len(x), batch_size):
            batch = order[start:start + batch_size]
            logits = model(tq.tensor(x[batch]))
            if teacher_logits is None:
                loss = F.cross_entropy(logits, y[batch])
            else:
                loss = distill.kd_loss(logits, teacher_logits[batch], y[batch], temperature, alpha, scale_by_t2)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.data) * len(batch)
        losses.append(total / len(x))
    return losses


def train_teacher(data, *, width: int = 16, epochs: int = 8, seed: int = 0, progress: bool | None = False):
    """The digits CNN trained with cross-entropy from the seed; returns (model, its test accuracy)."""
    x_train, y_train, x_test, y_test = data
    init_rng, shuffle_rng = (np.random.default_rng(s) for s in np.random.SeedSequence([seed, 1]).spawn(2))
    teacher = models.convnet8(x_train.shape[1], 10, width=width, rng=init_rng)
    train(teacher, x_train, y_train, epochs, rng=shuffle_rng, progress=progress)
    return teacher, accuracy(teacher, x_test, y_test)


def student_configurations(temperatures=TEMPERATURES, alphas=ALPHAS) -> list[dict]:
    """scratch, kd at every (T, α), kd without T² at α = alphas[0]."""
    configurations = [{"method": "scratch", "temperature": None, "alpha": 0.0, "t2": False}]
    configurations += [{"method": "kd", "temperature": float(t), "alpha": float(a), "t2": True}
                       for a in alphas for t in temperatures]
    configurations += [{"method": "kd-noT2", "temperature": float(t), "alpha": float(alphas[0]), "t2": False}
                       for t in temperatures if t != 1.0]
    return configurations


def run(dataset: str = "digits", *, seeds=(0, 1, 2), temperatures=TEMPERATURES, alphas=ALPHAS, hidden: int = 16,
        student_epochs: int | None = None, teacher_epochs: int | None = None, teacher_width: int = 16,
        lr: float = 0.05, seed: int = 0, limit: int | None = None, progress: bool | None = None,
        teacher=None) -> list[dict]:
    """One record per (configuration, seed): test accuracy of the student, plus the teacher's, and seconds.

    teacher: an already trained teacher to distill from (then teacher_epochs/width are not used)."""
    for t in temperatures:
        distill.check_temperature(t)
    for a in alphas:
        distill.check_alpha(a)
    if not seeds:
        raise ValueError("run needs at least one seed")
    fast = fast_mode()
    student_epochs = student_epochs or (6 if fast else 30)
    teacher_epochs = teacher_epochs or (2 if fast else 8)
    data = load_data(dataset, limit=limit if limit is not None else (400 if fast else None))
    x_train, y_train, x_test, y_test = data
    started = time.perf_counter()
    if teacher is None:
        teacher, teacher_accuracy = train_teacher(data, width=teacher_width, epochs=teacher_epochs, seed=seed,
                                                  progress=progress)
    else:
        teacher_accuracy = accuracy(teacher, x_test, y_test)
    teacher_logits = predict(teacher, x_train)
    teacher_seconds = time.perf_counter() - started
    records = []
    configurations = student_configurations(temperatures, alphas)
    cells = [(c, s) for s in seeds for c in configurations]
    for configuration, student_seed in tqdm(cells, desc="students", disable=None if progress is None else not progress):
        init_rng, shuffle_rng = (np.random.default_rng(s) for s in np.random.SeedSequence([seed, 2, student_seed])
                                 .spawn(2))
        student = models.mlp((int(np.prod(x_train.shape[1:])), hidden, 10), rng=init_rng)
        start = time.perf_counter()
        kd = configuration["method"] != "scratch"
        losses = train(student, x_train, y_train, student_epochs, lr=lr, rng=shuffle_rng,
                       teacher_logits=teacher_logits if kd else None, temperature=configuration["temperature"] or 1.0,
                       alpha=configuration["alpha"], scale_by_t2=configuration["t2"])
        records.append({**configuration, "seed": int(student_seed), "test_accuracy": accuracy(student, x_test, y_test),
                        "train_loss": losses[-1], "teacher_accuracy": teacher_accuracy, "hidden": hidden,
                        "student_parameters": sum(p.data.size for p in student.parameters()),
                        "teacher_parameters": sum(p.data.size for p in teacher.parameters()),
                        "teacher_seconds": teacher_seconds, "seconds": time.perf_counter() - start})
    return records


def summarize(records: list[dict]) -> list[dict]:
    """Per configuration: mean ± std (ddof 1) of test accuracy over seeds; gain over scratch and its standard
    error sqrt(s_a²/n_a + s_b²/n_b); above_noise = gain > 2 standard errors."""
    def key(r):
        return (r["method"], r["temperature"], r["alpha"], r["t2"])
    groups: dict = {}
    for r in records:
        groups.setdefault(key(r), []).append(r["test_accuracy"])
    baseline = [v for k, v in groups.items() if k[0] == "scratch"]
    if not baseline:
        raise ValueError("summarize needs the scratch baseline among the records")
    base = np.asarray(baseline[0])
    rows = []
    for (method, temperature, alpha, t2), values in groups.items():
        values = np.asarray(values)
        std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        base_std = float(base.std(ddof=1)) if len(base) > 1 else 0.0
        gain = float(values.mean() - base.mean())
        se = float(np.sqrt(std ** 2 / len(values) + base_std ** 2 / len(base)))
        rows.append({"method": method, "temperature": temperature, "alpha": alpha, "t2": t2, "seeds": len(values),
                     "accuracy_mean": float(values.mean()), "accuracy_std": std, "gain": gain, "gain_se": se,
                     "above_noise": bool(method != "scratch" and gain > 2 * se)})
    return rows


def plot(summary: list[dict]):
    """Test accuracy (mean ± std over seeds) against T, one line per (α, T²); the scratch baseline as a band."""
    from matplotlib.figure import Figure

    import tinyq.experiments.plotting  # noqa: F401  (selects a headless matplotlib backend)
    fig = Figure(figsize=(6.5, 4), constrained_layout=True)
    ax = fig.subplots()
    base = next(r for r in summary if r["method"] == "scratch")
    ax.axhspan(base["accuracy_mean"] - base["accuracy_std"], base["accuracy_mean"] + base["accuracy_std"],
               color="grey", alpha=0.25, label="scratch (mean ± std)")
    ax.axhline(base["accuracy_mean"], color="grey")
    lines: dict = {}
    for r in summary:
        if r["method"] != "scratch":
            lines.setdefault((r["method"], r["alpha"]), []).append(r)
    for (method, alpha), rows in lines.items():
        rows = sorted(rows, key=lambda r: r["temperature"])
        ax.errorbar([r["temperature"] for r in rows], [r["accuracy_mean"] for r in rows],
                    yerr=[r["accuracy_std"] for r in rows], marker="o", capsize=3, label=f"{method}, α = {alpha}")
    ax.set(xscale="log", xlabel="temperature T", ylabel="student test accuracy", title="distilling into a narrow MLP")
    ax.set_xticks(sorted({r["temperature"] for r in summary if r["temperature"]}))
    ax.set_xticklabels([f"{t:g}" for t in sorted({r["temperature"] for r in summary if r["temperature"]})])
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return fig
