"""Trusted checks of chapter 05 (affine quantization): exercises 5.1-5.4.

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


# ---- 5.3 symmetric qparams ----
def draw_symmetric_qparams(rng):
    channels = int(rng.integers(0, 5))                  # 0: per tensor
    shape = () if channels == 0 else (channels,)
    lo = -rng.exponential(2.0, size=shape) * (rng.random(shape) < 0.8)
    hi = rng.exponential(2.0, size=shape) * (rng.random(shape) < 0.8)
    return {"lo": np.asarray(lo, dtype=np.float32), "hi": np.asarray(hi, dtype=np.float32),
            "bits": int(rng.integers(2, 17)), "signed": bool(rng.random() < 0.7),
            "narrow_range": bool(rng.random() < 0.3), "per_channel": channels > 0}


def probe_symmetric_qparams(lo, hi, bits, signed, narrow_range, per_channel):
    from tinyq.formats.affine import calculate_qparams
    low, high = (lo, hi) if per_channel else (float(lo), float(hi))
    qp = calculate_qparams(low, high, bits=bits, symmetric=True, signed=signed, narrow_range=narrow_range,
                           axis=0 if per_channel else None)
    return {"scale": np.asarray(qp.scale, dtype=np.float32), "zero_point": np.asarray(qp.zero_point, dtype=np.int64)}


# ---- 5.4 dequantize ----
def draw_dequantize(rng):
    signed = bool(rng.random() < 0.5)
    qmin, qmax = (-128, 127) if signed else (0, 255)
    per_channel = bool(rng.random() < 0.5)
    channels = int(rng.integers(1, 5))
    shape = (int(rng.integers(1, 4)), channels, int(rng.integers(1, 5)))
    params = channels if per_channel else 1
    return {"q": rng.integers(qmin, qmax + 1, size=shape).astype(np.int8 if signed else np.uint8),
            "scale": rng.uniform(0.01, 1.0, size=params).astype(np.float32),
            "zero_point": rng.integers(qmin, qmax + 1, size=params).astype(np.int64),
            "signed": signed, "per_channel": per_channel}


def probe_dequantize(q, scale, zero_point, signed, per_channel):
    from tinyq.formats.affine import QParams, dequantize
    if per_channel:
        qp = QParams(scale=scale.copy(), zero_point=zero_point.copy(), bits=8, signed=signed, axis=1)
    else:
        qp = QParams(scale=float(scale[0]), zero_point=int(zero_point[0]), bits=8, signed=signed)
    return {"x": np.asarray(dequantize(q.copy(), qp), dtype=np.float32)}


register(Check(exercise="5.1", draw=f"{HERE}:draw_qparams", probe=f"{HERE}:probe_qparams", rtol=2.5e-7, cases=8))
register(Check(exercise="5.2", draw=f"{HERE}:draw_quantize", probe=f"{HERE}:probe_quantize", cases=8))
register(Check(exercise="5.3", draw=f"{HERE}:draw_symmetric_qparams", probe=f"{HERE}:probe_symmetric_qparams", rtol=1e-06, atol=0.0, cases=3))
register(Check(exercise="5.4", draw=f"{HERE}:draw_dequantize", probe=f"{HERE}:probe_dequantize", rtol=1e-06, atol=0.0001, cases=3))
