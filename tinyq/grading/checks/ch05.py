"""Trusted checks of chapter 05 (affine quantization): exercises 5.1 and 5.2.

The conventions are formats/affine.py's: float32 arithmetic, round half to even, scale >= eps.
Draws keep clear of rounding ties (lo / scale and x / scale stay at least 0.02 away from a half
integer), so a correct solution that divides in another order or precision rounds the same way.
"""
from __future__ import annotations

import numpy as np

from tinyq.grading.checks import Check, register
from tinyq.grading.checks._draw import away_from_ties

HERE = "tinyq.grading.checks.ch05"
EPS = float(np.finfo(np.float32).eps)


def _integer_range(bits, signed):
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)


def _range_pair(rng, bits, signed):
    """(lo, hi) with lo <= hi, of any size from tiny (scale at its eps floor) to large, not near a tie."""
    qmin, qmax = _integer_range(bits, signed)
    while True:
        magnitude = 10.0 ** rng.uniform(-4, 2)
        lo, hi = np.sort(rng.uniform(-1.0, 1.0, size=2) * magnitude).astype(np.float32)
        if rng.random() < 0.1:                          # a range that starts at 0 (ReLU outputs)
            lo, hi = np.float32(0.0), np.abs(hi)
        lo0, hi0 = min(lo, np.float32(0)), max(hi, np.float32(0))
        scale = max(np.float32(hi0 - lo0) / np.float32(qmax - qmin), np.float32(EPS))
        ratio = float(lo0) / float(scale)
        if abs(abs(ratio - np.floor(ratio)) - 0.5) > 0.02:
            return float(lo), float(hi)


def draw_qparams(rng):
    bits = int(rng.integers(2, 17))
    signed = bool(rng.random() < 0.5)
    channels = int(rng.integers(1, 5)) if rng.random() < 0.5 else 0
    pairs = [_range_pair(rng, bits, signed) for _ in range(max(channels, 1))]
    lo, hi = np.array([p[0] for p in pairs], np.float32), np.array([p[1] for p in pairs], np.float32)
    return {"lo": lo, "hi": hi, "bits": bits, "signed": signed, "per_channel": channels > 0}


def probe_qparams(lo, hi, bits, signed, per_channel):
    from tinyq.formats import affine
    if per_channel:
        qp = affine.calculate_qparams(lo.copy(), hi.copy(), bits=bits, symmetric=False, signed=signed, axis=0)
    else:
        qp = affine.calculate_qparams(float(lo[0]), float(hi[0]), bits=bits, symmetric=False, signed=signed)
    return {"scale": np.asarray(qp.scale, dtype=np.float32), "zero_point": np.asarray(qp.zero_point, np.int64)}


def draw_quantize(rng):
    bits = int(rng.integers(2, 17))
    signed = bool(rng.random() < 0.5)
    qmin, qmax = _integer_range(bits, signed)
    channels = int(rng.integers(1, 4)) if rng.random() < 0.5 else 0
    scale = (10.0 ** rng.uniform(-3, 1, size=max(channels, 1))).astype(np.float32)
    zero_point = rng.integers(qmin, qmax + 1, size=max(channels, 1)).astype(np.int64)
    ndim = int(rng.integers(1, 4))
    shape = [int(v) for v in rng.integers(1, 5, size=ndim)]
    axis = int(rng.integers(0, ndim))
    if channels:
        shape[axis] = channels
    view = [1] * ndim
    if channels:
        view[axis] = channels
    s, z = scale.astype(np.float64).reshape(view), zero_point.reshape(view)
    steps = rng.integers(qmin - 4, qmax + 5, size=shape) - z                 # codes around the whole range
    x = ((steps + away_from_ties(rng, shape)) * s).astype(np.float32)
    x.flat[: x.size // 8] = rng.choice([np.inf, -np.inf], size=x.size // 8)  # infinities saturate
    return {"x": x, "scale": scale, "zero_point": zero_point, "bits": bits, "signed": signed,
            "per_channel": channels > 0, "axis": axis}


def probe_quantize(x, scale, zero_point, bits, signed, per_channel, axis):
    from tinyq.formats import affine
    if per_channel:
        qp = affine.QParams(scale.copy(), zero_point.copy(), bits, signed, axis)
    else:
        qp = affine.QParams(float(scale[0]), int(zero_point[0]), bits, signed)
    return {"q": np.asarray(affine.quantize(x.copy(), qp))}


register(Check(exercise="5.1", draw=f"{HERE}:draw_qparams", probe=f"{HERE}:probe_qparams", rtol=2.5e-7, cases=8))
register(Check(exercise="5.2", draw=f"{HERE}:draw_quantize", probe=f"{HERE}:probe_quantize", cases=8))
