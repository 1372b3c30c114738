"""Trusted checks of chapter 07 (quantization-aware training): exercises 7.1-7.3.

Each backward is called directly on a Function whose forward state is set as forward sets it, so a
check runs only its own exercise's code. Inputs keep clear of rounding ties and range ends.
"""
from __future__ import annotations

import numpy as np

from tinyq.grading.checks import Check, register
from tinyq.grading.checks._draw import away_from_ties

HERE = "tinyq.grading.checks.ch07"


def _integer_range(bits, signed):
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)


def draw_ste(rng):
    bits = int(rng.integers(2, 9))
    signed = bool(rng.random() < 0.5)
    qmin, qmax = _integer_range(bits, signed)
    scale = np.float32(10.0 ** rng.uniform(-2, 0))
    zero_point = int(rng.integers(qmin, qmax + 1))
    size = 40
    codes = rng.integers(qmin - 3, qmax + 4, size=size) - zero_point
    x = ((codes + away_from_ties(rng, size) - 0.5) * np.float64(scale)).astype(np.float32)
    return {"x": x, "grad": rng.standard_normal(size).astype(np.float32), "scale": np.float32(scale),
            "zero_point": zero_point, "bits": bits, "signed": signed}


def probe_ste(x, grad, scale, zero_point, bits, signed):
    from tinyq.formats.affine import QParams
    from tinyq.quant.fake_quant import FakeQuantizeSTE
    ctx = FakeQuantizeSTE()
    ctx.save_for_backward(x.copy())                   # what forward saves
    ctx.qparams = QParams(float(scale), zero_point, bits, signed)
    result = FakeQuantizeSTE.backward(ctx, grad.copy())
    return {"grad_x": np.asarray(result[0] if isinstance(result, tuple) else result)}


def draw_lsq(rng):
    bits = int(rng.integers(2, 9))
    signed = bool(rng.random() < 0.5)
    qmin, qmax = _integer_range(bits, signed)
    per_channel = bool(rng.random() < 0.4)
    shape = (int(rng.integers(1, 4)), int(rng.integers(2, 6)))
    step = 10.0 ** rng.uniform(-2, 0, size=shape[0] if per_channel else ())
    step_view = step.reshape(-1, 1) if per_channel else step
    codes = rng.integers(qmin - 3, qmax + 3, size=shape)
    x = (codes + away_from_ties(rng, shape)) * step_view
    count = shape[1] if per_channel else x.size
    return {"x": x, "step": np.asarray(step, dtype=np.float64), "grad": rng.standard_normal(shape),
            "qmin": qmin, "qmax": qmax, "grad_scale": float(1.0 / np.sqrt(count * qmax)), "per_channel": per_channel}


def probe_lsq(x, step, grad, qmin, qmax, grad_scale, per_channel):
    from tinyq.quant.fake_quant import LSQFakeQuantize
    from tinyq.tensor import Tensor
    ctx = LSQFakeQuantize()
    ctx.inputs = (Tensor(x.copy(), requires_grad=True), Tensor(step.copy(), requires_grad=True))
    LSQFakeQuantize.forward(ctx, x.copy(), step.copy(), qmin=qmin, qmax=qmax, grad_scale=grad_scale,
                            axis=0 if per_channel else None)
    grad_x, grad_step = LSQFakeQuantize.backward(ctx, grad.copy())
    return {"grad_x": np.asarray(grad_x), "grad_step": np.asarray(grad_step)}


def draw_pact(rng):
    bits = int(rng.integers(2, 9))
    alpha = float(rng.uniform(0.5, 6.0))
    x = rng.uniform(-1.0, 1.5, size=40) * alpha
    x[:3] = [0.0, alpha, -0.0]                       # the ends of [0, alpha) as the docstring defines them
    return {"x": x, "alpha": np.float64(alpha), "grad": rng.standard_normal(40), "levels": 2 ** bits - 1}


def probe_pact(x, alpha, grad, levels):
    from tinyq.quant.fake_quant import PACTFakeQuantize
    from tinyq.tensor import Tensor
    ctx = PACTFakeQuantize()
    ctx.inputs = (Tensor(x.copy(), requires_grad=True), Tensor(np.asarray(alpha).copy(), requires_grad=True))
    PACTFakeQuantize.forward(ctx, x.copy(), np.asarray(alpha).copy(), levels=levels)
    grad_x, grad_alpha = PACTFakeQuantize.backward(ctx, grad.copy())
    return {"grad_x": np.asarray(grad_x), "grad_alpha": np.asarray(grad_alpha)}


register(Check(exercise="7.1", draw=f"{HERE}:draw_ste", probe=f"{HERE}:probe_ste", cases=6))
register(Check(exercise="7.2", draw=f"{HERE}:draw_lsq", probe=f"{HERE}:probe_lsq", rtol=1e-9, atol=1e-12, cases=6))
register(Check(exercise="7.3", draw=f"{HERE}:draw_pact", probe=f"{HERE}:probe_pact", rtol=1e-9, atol=1e-12, cases=4))
