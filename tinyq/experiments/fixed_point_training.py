"""Training in fixed point (Gupta et al. 2015, "Deep Learning with Limited Numerical Precision").

An MLP (64-128-10) learns the 8x8 digits with every number it keeps held in one
fixed-point format Q = QFormat(int_bits, frac_bits) of word length w = 1 + int_bits + frac_bits.
For a Linear layer y = x W^T + b the rounding points are:

    inputs         x = Q(pixels)                  (pixels are multiples of 1/16: exact for n >= 4)
    forward        y = Q(x W^T + b)               the sum is exact (a wide accumulator), rounded once
    backward       delta = Q(dL/dy)               the error reaching each layer's output, incl. the
                                                  loss gradient softmax(z) - onehot(y) per sample
    update         W = Q(W - (lr / N) sum_n delta_n x_n^T)   the gradient is summed exactly, the
                                                  new weight is rounded once: this is where a small
                                                  update can vanish under round-to-nearest
    evaluation     as forward, rounding to nearest

`rounding` ("nearest_even" or "stochastic") is used at every rounding point of training
(`activation_rounding` can override it for the forward and backward points); the initial
weights are rounded to nearest in every run so that all runs start from the same point.
Overflow saturates. Products and sums are computed in float64, which is exact here: words
have <= 16 bits, so a product has <= 30 significant bits and a sum of <= 128 of them <= 37.
The reference run trains the same initial float32 weights in float32 with no rounding.
"""
from __future__ import annotations

import time

import numpy as np

from tinyq.formats import fixed_point
from tinyq.function import Function

ROUNDINGS = ("nearest_even", "stochastic")
MAX_WORD_BITS = 16      # float64 arithmetic is exact for products and sums of such words (see above)


def default_frac_bits(word_bits: int, frac_bits=range(4, 15)) -> list:
    """The fraction lengths worth trying for a word: at least one integer bit besides the sign."""
    return [n for n in frac_bits if n <= word_bits - 2]


def fixed_point_round(values: np.ndarray, fmt, rounding: str = "nearest_even", rng=None) -> np.ndarray:
    """Q(x) = clamp(round(x 2^n), qmin, qmax) 2^-n, as float64 (rounding "stochastic" needs rng)."""
    q = fixed_point.to_fixed(values, fmt, rounding=rounding, overflow="saturate", rng=rng)
    return fixed_point.to_float(q, fmt).astype(np.float64)


class FixedPointRound(Function):
    """forward: y = Q(x);  backward: dL/dx = Q(dL/dy · 1[x inside Q's range]).

    The rounding is passed straight through; saturation is not (clamp's derivative is 0 outside).
    """

    @staticmethod
    def forward(ctx, a, *, fmt, rounding, rng):
        ctx.fmt, ctx.rounding, ctx.rng = fmt, rounding, rng
        ctx.inside = (a >= fmt.min) & (a <= fmt.max)
        return fixed_point_round(a, fmt, rounding, rng)

    @staticmethod
    def backward(ctx, grad):
        return fixed_point_round(grad * ctx.inside, ctx.fmt, ctx.rounding, ctx.rng)


def _forward(model, x, fmt, rounding, rng, saturation: list | None = None):
    """Run the Sequential MLP, rounding after every Linear (fmt None: plain float).

    saturation: if a list, gets (count outside Q's range, count) for each Linear's output.
    """
    from tinyq import nn
    for layer in model:
        x = layer(x)
        if fmt is not None and isinstance(layer, nn.Linear):
            if saturation is not None:
                saturation.append((int(np.count_nonzero((x.data < fmt.min) | (x.data > fmt.max))), x.data.size))
            x = FixedPointRound.apply(x, fmt=fmt, rounding=rounding, rng=rng)
    return x


def train_one(word_bits: int | None, frac_bits: int | None, rounding: str = "nearest_even", *, epochs: int = 10,
              lr: float = 0.1, batch_size: int = 32, hidden: int = 128, seed: int = 0,
              activation_rounding: str | None = None, data=None) -> dict:
    """Train the MLP in Q(word_bits, frac_bits) (or float32 when word_bits is None); one record."""
    import tinyq as tq
    from tinyq import functional as F
    from tinyq import models
    from tinyq.data import ArrayDataset, DataLoader, load_digits
    from tinyq.formats.fixed_point import QFormat

    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
    for name, value in dict(epochs=epochs, batch_size=batch_size, hidden=hidden).items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not isinstance(lr, (int, float)) or not np.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    activation_rounding = activation_rounding or rounding
    if activation_rounding not in ROUNDINGS:
        raise ValueError(f"activation_rounding must be one of {ROUNDINGS}, got {activation_rounding!r}")
    if word_bits is None:
        fmt, dtype = None, np.float32
    else:
        if not isinstance(word_bits, (int, np.integer)) or not 2 <= word_bits <= MAX_WORD_BITS:
            raise ValueError(f"word_bits must be in 2..{MAX_WORD_BITS}, got {word_bits!r}")
        if frac_bits is None or not 0 <= frac_bits <= word_bits - 1:
            raise ValueError(f"a {word_bits}-bit signed word has 0..{word_bits - 1} fraction bits, got {frac_bits}")
        fmt, dtype = QFormat(int_bits=word_bits - 1 - frac_bits, frac_bits=frac_bits, signed=True), np.float64
    (x_train, y_train), (x_test, y_test) = data or (load_digits("train"), load_digits("test"))
    x_train = x_train.reshape(len(x_train), -1).astype(dtype)
    x_test = x_test.reshape(len(x_test), -1).astype(dtype)

    model = models.mlp((x_train.shape[1], hidden, int(y_train.max()) + 1), rng=np.random.default_rng(seed))
    rounding_rng = np.random.default_rng([seed, 1])
    params = list(model.parameters())
    for p in params:
        p.data = p.data.astype(dtype) if fmt is None else fixed_point_round(p.data, fmt, "nearest_even", None)
    if fmt is not None:
        x_train, x_test = (fixed_point_round(x, fmt, "nearest_even", None) for x in (x_train, x_test))

    loader = DataLoader(ArrayDataset(x_train, y_train), batch_size=batch_size, shuffle=True,
                        rng=np.random.default_rng(seed))
    start = time.perf_counter()
    for epoch in range(epochs):
        loss_sum, changed, attempted = 0.0, 0, 0
        for xb, yb in loader:
            xb = tq.tensor(xb.astype(dtype))
            logits = _forward(model, xb, fmt, activation_rounding, rounding_rng)
            loss = F.cross_entropy(logits, yb, reduction="sum")     # dL/dlogits = softmax - onehot per sample
            for p in params:
                p.grad = None
            loss.backward()
            loss_sum += loss.item()
            step = lr / len(yb)
            for p in params:
                new = p.data - p.data.dtype.type(step) * p.grad
                if fmt is not None:
                    new = fixed_point_round(new, fmt, rounding, rounding_rng)
                changed += int(np.count_nonzero(new != p.data))
                attempted += int(np.count_nonzero(p.grad))
                p.data = new
    seconds = time.perf_counter() - start

    saturation = []
    with tq.no_grad():
        logits = _forward(model, tq.tensor(x_test), fmt, "nearest_even", None, saturation)
    accuracy = float(np.mean(np.argmax(logits.data, axis=1) == y_test))
    saturated = sum(c for c, _ in saturation) / max(sum(n for _, n in saturation), 1)
    return {
        "word_bits": 32 if fmt is None else word_bits,
        "frac_bits": float("nan") if fmt is None else frac_bits,
        "format": "fp32" if fmt is None else str(fmt),
        "rounding": "fp32" if fmt is None else rounding,
        "test_accuracy": accuracy,
        "train_loss": loss_sum / len(x_train),             # mean over the last epoch
        "updates_applied": changed / max(attempted, 1),     # last epoch: nonzero gradients that moved a weight
        "outputs_saturated": saturated,                     # test set: layer outputs beyond Q's range
        "seconds": seconds,
    }


def configurations(word_bits, frac_bits=None, roundings=ROUNDINGS) -> list:
    """[(w, n, rounding)]: the fp32 reference (None, None, ...) first, then each word length w with the given
    fraction lengths that fit it (n <= w - 1), or `default_frac_bits(w)`. Every word and every given n must
    be used at least once (else a ValueError naming it)."""
    configs = [(None, None, "nearest_even")]
    for n in frac_bits or ():
        if not any(0 <= n <= w - 1 for w in word_bits):
            raise ValueError(f"frac_bits {n} fits none of the word lengths word_bits {list(word_bits)} "
                             "(a w-bit signed word has 0..w-1 fraction bits)")
    for w in word_bits:
        if not isinstance(w, (int, np.integer)) or not 2 <= w <= MAX_WORD_BITS:
            raise ValueError(f"word_bits must be in 2..{MAX_WORD_BITS}, got {w!r}")
        fractions = default_frac_bits(w) if frac_bits is None else [n for n in frac_bits if 0 <= n <= w - 1]
        if not fractions:
            raise ValueError(f"word_bits {w} gets no fraction length to try (a {w}-bit word has 0..{w - 1} "
                             f"fraction bits; the default 4..14 keeps n <= w - 2): give frac_bits")
        configs += [(w, n, r) for n in fractions for r in roundings]
    return configs


def run(word_bits=(16, 12, 8), frac_bits=None, roundings=ROUNDINGS, *, epochs: int = 10, lr: float = 0.1,
        batch_size: int = 32, hidden: int = 128, seed: int = 0, activation_rounding: str | None = None,
        dataset: str = "digits", progress: bool | None = None, executor=None) -> list:
    """Records: the fp32 reference, then one per (word_bits, frac_bits, rounding) of `configurations`
    (each a task of `executor`, a tinyq.parallel.Executor; None: one after another here).

    dataset: digits (the paper's setting here, 8x8 images) | mnist | fashion, images flattened.
    """
    from functools import partial

    from tqdm.auto import tqdm

    from tinyq.data import LOADERS

    if dataset not in LOADERS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(LOADERS)}")
    configs = configurations(word_bits, frac_bits, roundings)
    data = (LOADERS[dataset]("train"), LOADERS[dataset]("test"))
    options = dict(epochs=epochs, lr=lr, batch_size=batch_size, hidden=hidden, seed=seed,
                   activation_rounding=activation_rounding, data=data)
    import sys
    show = sys.stderr.isatty() if progress is None else progress
    if executor is not None:
        return executor.map(partial(_train_config, options=options), configs, desc="lowprec", progress=show)
    return [train_one(w, n, r, **options) for w, n, r in tqdm(configs, desc="lowprec", disable=not show)]


def _train_config(config, options: dict) -> dict:
    """train_one(*config, **options): one task of `run` on an executor."""
    return train_one(*config, **options)


def plot(records: list):
    """Test accuracy against fraction bits, one line per (rounding, word length), fp32 as a dashed line."""
    from tinyq.experiments.plotting import line_plot

    reference = {f"fp32 ({r['test_accuracy']:.3f})": r["test_accuracy"] for r in records if r["rounding"] == "fp32"}
    rows = [dict(r, series=f"{r['rounding']}, {r['word_bits']}-bit") for r in records if r["rounding"] != "fp32"]
    fig = line_plot(rows, x="frac_bits", y="test_accuracy", group="series", reference=reference,
                    title="MLP on 8x8 digits, weights/activations/errors in fixed point",
                    xlabel="fraction bits n (resolution 2^-n)", ylabel="test accuracy")
    fig.axes[0].set_ylim(0, 1.02)
    return fig
