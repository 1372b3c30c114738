"""Trusted checks of the exercises added to chapters 02-07 by issue 13: 2.4, 3.3, 3.4, 4.3, 4.4, 5.3, 5.4,
6.3, 6.4, 7.4. Draws use numpy only; each probe imports tinyq inside its body (the contract in __init__)."""
from __future__ import annotations

import numpy as np

from tinyq.grading.checks import Check, register

HERE = "tinyq.grading.checks.added_1_7"
FLOAT_FORMATS = ["FP16", "BF16", "FP8_E4M3", "FP8_E5M2"]
FLOAT_FIELDS = {"FP16": (5, 10), "BF16": (8, 7), "FP8_E4M3": (4, 3), "FP8_E5M2": (5, 2)}


# ---- 2.4 Linear backward ----
def draw_linear_backward(rng):
    leading = tuple(int(n) for n in rng.integers(1, 5, size=int(rng.integers(0, 3))))
    n_in, n_out = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    small = lambda shape: rng.integers(-8, 9, size=shape).astype(np.float64)   # exact sums in any order
    return {"x": small(leading + (n_in,)), "weight": small((n_out, n_in)), "bias": small((n_out,)),
            "grad": small(leading + (n_out,))}


def probe_linear_backward(x, weight, bias, grad):
    import tinyq as tq
    from tinyq import ops
    ctx = ops.Linear()
    ctx.inputs = tuple(tq.tensor(a.copy(), requires_grad=True) for a in (x, weight, bias))
    ops.Linear.forward(ctx, x.copy(), weight.copy(), bias.copy())
    grad_x, grad_w, grad_b = ops.Linear.backward(ctx, grad.copy())
    return {"grad_x": np.asarray(grad_x, dtype=np.float64), "grad_w": np.asarray(grad_w, dtype=np.float64),
            "grad_b": np.asarray(grad_b, dtype=np.float64)}


# ---- 3.3 decode ----
def draw_decode(rng):
    name = str(rng.choice(FLOAT_FORMATS))
    e, m = FLOAT_FIELDS[name]
    size = 64
    exponent = rng.integers(0, 2 ** e, size=size)
    exponent[:8] = [0, 0, 1, 2 ** e - 1, 2 ** e - 1, 2 ** e - 2, 0, 2 ** e - 1]   # subnormals, top binade, specials
    mantissa = rng.integers(0, 2 ** m, size=size)
    mantissa[:8] = [0, 2 ** m - 1, 0, 0, 2 ** m - 1, 2 ** m - 1, 1, 2 ** (m - 1)]
    return {"format": name, "sign": rng.integers(0, 2, size=size), "exponent": exponent, "mantissa": mantissa}


def probe_decode(format, sign, exponent, mantissa):  # noqa: A002 - the format's name
    from tinyq.formats import floats
    return {"value": np.asarray(floats.decode(sign, exponent, mantissa, getattr(floats, format)), dtype=np.float32)}


# ---- 3.4 ulp ----
def draw_ulp(rng):
    size = 64
    x = rng.choice([-1.0, 1.0], size=size) * np.exp2(rng.uniform(-30, 20, size=size))
    x[:6] = [0.0, -0.0, 1.0, 2.0 ** -14, 65504.0, 448.0]                             # zero, powers of two, maxima
    x[6:9] = np.exp2(rng.integers(-20, 17, size=3))                                  # exact powers of two
    return {"format": str(rng.choice(FLOAT_FORMATS)), "x": x.astype(np.float32)}


def probe_ulp(format, x):  # noqa: A002
    from tinyq.formats import floats
    return {"ulp": np.asarray(getattr(floats, format).ulp(x.copy()), dtype=np.float32)}


# ---- 4.3 overflow modes ----
def draw_overflow(rng):
    signed = bool(rng.random() < 0.7)
    word = int(rng.integers(2, 17))
    qmin, qmax = (-(2 ** (word - 1)), 2 ** (word - 1) - 1) if signed else (0, 2 ** word - 1)
    value = rng.integers(-(2 ** 20), 2 ** 20, size=50)
    value[:6] = [qmin, qmax, qmin - 1, qmax + 1, 0, 3 * (qmax + 1)]
    return {"value": value.astype(np.int64), "qmin": qmin, "qmax": qmax, "mode": str(rng.choice(["wrap", "saturate"]))}


def probe_overflow(value, qmin, qmax, mode):
    from tinyq.formats.fixed_point import apply_overflow
    return {"result": np.asarray(apply_overflow(value.copy(), qmin, qmax, mode), dtype=np.int64)}


# ---- 4.4 finite accumulator ----
def draw_accumulator(rng):
    bits_a, bits_b = int(rng.integers(3, 9)), int(rng.integers(3, 9))
    m, k, n = int(rng.integers(1, 4)), int(rng.integers(2, 12)), int(rng.integers(1, 4))
    qa = rng.integers(-(2 ** (bits_a - 1)), 2 ** (bits_a - 1), size=(m, k))
    qb = rng.integers(-(2 ** (bits_b - 1)), 2 ** (bits_b - 1), size=(k, n))
    return {"qa": qa.astype(np.int64), "qb": qb.astype(np.int64), "bits_a": bits_a, "bits_b": bits_b,
            "acc_bits": int(rng.integers(6, 17)), "acc_overflow": str(rng.choice(["wrap", "saturate"]))}


def probe_accumulator(qa, qb, bits_a, bits_b, acc_bits, acc_overflow):
    from tinyq.formats.fixed_point import QFormat, matmul
    result = matmul(qa.copy(), QFormat(bits_a - 1, 0), qb.copy(), QFormat(bits_b - 1, 0), QFormat(31, 0),
                    acc_bits=acc_bits, acc_overflow=acc_overflow)
    return {"result": np.asarray(result, dtype=np.int64)}


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


# ---- 7.4 LSQ gradient scale and initial step ----
def draw_lsq_scale(rng):
    axis = None if rng.random() < 0.5 else int(rng.integers(0, 2))
    x = rng.standard_normal((int(rng.integers(1, 6)), int(rng.integers(1, 6)))).astype(np.float32)
    if rng.random() < 0.3:
        x[0] = 0.0                                        # an all-zero row
    return {"x": x, "axis": -1 if axis is None else axis, "qmax": int(rng.choice([1, 3, 7, 127, 255])),
            "elements": int(rng.integers(1, 10_000))}


def probe_lsq_scale(x, axis, qmax, elements):
    from tinyq.quant.fake_quant import lsq_grad_scale, lsq_init_step_size
    step = lsq_init_step_size(x.copy(), qmax, None if axis < 0 else axis)
    return {"grad_scale": float(lsq_grad_scale(elements, qmax)), "init_step": np.asarray(step, dtype=np.float32)}


for exercise, name, rtol, atol in [("2.4", "linear_backward", 0.0, 0.0), ("3.3", "decode", 0.0, 0.0),
                                   ("3.4", "ulp", 0.0, 0.0), ("4.3", "overflow", 0.0, 0.0),
                                   ("4.4", "accumulator", 0.0, 0.0), ("5.3", "symmetric_qparams", 1e-6, 0.0),
                                   ("5.4", "dequantize", 1e-6, 1e-4), ("6.3", "quantile", 1e-9, 1e-9),
                                   ("6.4", "mse_search", 1e-6, 1e-7), ("7.4", "lsq_scale", 1e-6, 0.0)]:
    register(Check(exercise=exercise, draw=f"{HERE}:draw_{name}", probe=f"{HERE}:probe_{name}",
                   rtol=rtol, atol=atol, cases=3))
