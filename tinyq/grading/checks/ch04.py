"""Trusted checks of chapter 04 (fixed point): exercises 4.1 and 4.2. Raw integers: compared exactly."""
from __future__ import annotations

import numpy as np

from tinyq.grading.checks import Check, register

HERE = "tinyq.grading.checks.ch04"
DETERMINISTIC_ROUNDING = ["nearest_even", "nearest_away", "nearest_up", "floor", "toward_zero"]


def _format(rng, max_bits=12):
    signed = bool(rng.random() < 0.75)
    word = int(rng.integers(2, max_bits + 1))
    frac = int(rng.integers(0, word - int(signed) + 1))
    return {"int_bits": word - int(signed) - frac, "frac_bits": frac, "signed": signed}


def _range(fmt):
    word = fmt["int_bits"] + fmt["frac_bits"]
    return (-(2 ** word), 2 ** word - 1) if fmt["signed"] else (0, 2 ** word - 1)


def _raw(rng, fmt, size):
    qmin, qmax = _range(fmt)
    q = rng.integers(qmin, qmax + 1, size=size)
    q[: size // 6] = rng.choice([qmin, qmax, 0], size=size // 6)     # the ends of the range, and zero
    return q.astype(np.int64)


def _flat(prefix, fmt):
    return {f"{prefix}_{key}": value for key, value in fmt.items()}


def draw_multiply(rng):
    a, b, out = _format(rng), _format(rng), _format(rng, 16)
    size = 30
    return {"qa": _raw(rng, a, size), "qb": _raw(rng, b, size), **_flat("a", a), **_flat("b", b),
            **_flat("out", out), "rounding": str(rng.choice(DETERMINISTIC_ROUNDING)),
            "overflow": str(rng.choice(["saturate", "wrap"]))}


def probe_multiply(qa, qb, a_int_bits, a_frac_bits, a_signed, b_int_bits, b_frac_bits, b_signed,
                   out_int_bits, out_frac_bits, out_signed, rounding, overflow):
    from tinyq.formats.fixed_point import QFormat, multiply
    fmt_a, fmt_b = QFormat(a_int_bits, a_frac_bits, a_signed), QFormat(b_int_bits, b_frac_bits, b_signed)
    out_fmt = QFormat(out_int_bits, out_frac_bits, out_signed)
    product = multiply(qa.copy(), fmt_a, qb.copy(), fmt_b, out_fmt, rounding=rounding, overflow=overflow)
    return {"product": np.asarray(product)}


def draw_saturating_add(rng):
    fmt = _format(rng, 16)
    return {"qa": _raw(rng, fmt, 40), "qb": _raw(rng, fmt, 40), **fmt}


def probe_saturating_add(qa, qb, int_bits, frac_bits, signed):
    from tinyq.formats.fixed_point import QFormat, saturating_add
    total = saturating_add(qa.copy(), qb.copy(), QFormat(int_bits, frac_bits, signed))
    return {"sum": np.asarray(total)}


register(Check(exercise="4.1", draw=f"{HERE}:draw_multiply", probe=f"{HERE}:probe_multiply", cases=8))
register(Check(exercise="4.2", draw=f"{HERE}:draw_saturating_add", probe=f"{HERE}:probe_saturating_add", cases=5))
