"""Trusted checks of chapter 06 (observers and PTQ): exercises 6.1-6.4."""
from __future__ import annotations

import numpy as np

from tinyq.grading.checks import Check, register

HERE = "tinyq.grading.checks.ch06"


def draw_minmax(rng):
    ndim = int(rng.integers(1, 5))
    shape = tuple(int(v) for v in rng.integers(1, 5, size=ndim))
    batches = int(rng.integers(1, 5))
    per_channel = bool(rng.random() < 0.5)
    axis = int(rng.integers(-ndim, ndim)) if per_channel else 0
    scales = 10.0 ** rng.uniform(-2, 2, size=batches)
    x = (rng.standard_normal((batches,) + shape) * scales.reshape((batches,) + (1,) * ndim)).astype(np.float32)
    return {"batches": x, "per_channel": per_channel, "axis": axis}


def probe_minmax(batches, per_channel, axis):
    from tinyq.quant.observers import MinMaxObserver
    observer = MinMaxObserver(axis=axis if per_channel else None)
    for batch in batches:
        observer.observe(batch.copy())
    return {"min_val": np.asarray(observer.min_val, dtype=np.float32),
            "max_val": np.asarray(observer.max_val, dtype=np.float32)}


def draw_fold(rng):
    out_channels = int(rng.integers(1, 6))
    conv = rng.random() < 0.5
    shape = (out_channels, int(rng.integers(1, 4))) + ((3, 3) if conv else ())
    return {"weight": rng.standard_normal(shape), "bias": rng.standard_normal(out_channels),
            "has_bias": bool(rng.random() < 0.7), "affine": bool(rng.random() < 0.8),
            "running_mean": rng.standard_normal(out_channels),
            "running_var": rng.uniform(0.05, 4.0, size=out_channels),
            "gamma": rng.uniform(0.2, 2.0, size=out_channels) * rng.choice([-1.0, 1.0], size=out_channels),
            "beta": rng.standard_normal(out_channels), "eps": float(rng.choice([1e-5, 1e-3]))}


def probe_fold(weight, bias, has_bias, affine, running_mean, running_var, gamma, beta, eps):
    from tinyq.quant.ptq import fold_bn_params
    folded_weight, folded_bias = fold_bn_params(weight.copy(), bias.copy() if has_bias else None, running_mean.copy(),
                                                running_var.copy(), gamma.copy() if affine else None,
                                                beta.copy() if affine else None, eps)
    return {"weight": np.asarray(folded_weight), "bias": np.asarray(folded_bias)}


# ---- 6.3 histogram quantile ----
def draw_quantile(rng):
    batches = int(rng.integers(1, 4))
    data = rng.standard_normal((batches, 500)) * rng.uniform(0.5, 3.0) + rng.uniform(-1, 1)
    data[:, :5] *= 6.0                                    # tails that grow the histogram between batches
    return {"data": data.astype(np.float32), "bins": int(rng.integers(8, 300)),
            "fractions": np.concatenate([[0.0, 1.0], rng.uniform(0, 1, size=6)])}


def probe_quantile(data, bins, fractions):
    from tinyq.quant.observers import Histogram
    histogram = Histogram(bins=bins)
    for batch in data:
        histogram.update(batch.copy())
    return {"quantiles": np.array([histogram.quantile(float(f)) for f in fractions], dtype=np.float64)}


# ---- 6.4 MSE observer ----
def draw_mse_search(rng):
    values = rng.standard_normal(4000) * rng.uniform(0.5, 2.0)
    outliers = int(rng.integers(0, 4))
    values[:outliers] = rng.choice([-1.0, 1.0], size=outliers) * rng.uniform(8, 30, size=outliers)
    if rng.random() < 0.3:
        values = np.abs(values)                           # one-sided, like a ReLU output
    return {"values": values.astype(np.float32), "bits": int(rng.integers(3, 9)),
            "num_candidates": int(rng.integers(10, 60)), "symmetric": bool(rng.random() < 0.3)}


def probe_mse_search(values, bits, num_candidates, symmetric):
    from tinyq.quant.observers import MSEObserver
    observer = MSEObserver(bits=bits, num_candidates=num_candidates, bins=256, symmetric=symmetric)
    observer.observe(values.copy())
    lo, hi = observer._clip_range()
    return {"alpha": float(observer.alpha), "lo": float(lo), "hi": float(hi)}


register(Check(exercise="6.1", draw=f"{HERE}:draw_minmax", probe=f"{HERE}:probe_minmax", cases=6))
register(Check(exercise="6.2", draw=f"{HERE}:draw_fold", probe=f"{HERE}:probe_fold", rtol=1e-9, atol=1e-12, cases=5))
register(Check(exercise="6.3", draw=f"{HERE}:draw_quantile", probe=f"{HERE}:probe_quantile", rtol=1e-09, atol=1e-09, cases=3))
register(Check(exercise="6.4", draw=f"{HERE}:draw_mse_search", probe=f"{HERE}:probe_mse_search", rtol=1e-06, atol=1e-07, cases=3))
