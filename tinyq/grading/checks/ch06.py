"""Trusted checks of chapter 06 (observers and PTQ): exercises 6.1 and 6.2."""
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


register(Check(exercise="6.1", draw=f"{HERE}:draw_minmax", probe=f"{HERE}:probe_minmax", cases=6))
register(Check(exercise="6.2", draw=f"{HERE}:draw_fold", probe=f"{HERE}:probe_fold", rtol=1e-9, atol=1e-12, cases=5))
