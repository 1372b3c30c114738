"""Trusted checks of chapter 04 (fixed point): exercises 4.1-4.4. Raw integers: compared exactly."""
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


register(Check(exercise="4.1", draw=f"{HERE}:draw_multiply", probe=f"{HERE}:probe_multiply", cases=8))
register(Check(exercise="4.2", draw=f"{HERE}:draw_saturating_add", probe=f"{HERE}:probe_saturating_add", cases=5))
register(Check(exercise="4.3", draw=f"{HERE}:draw_overflow", probe=f"{HERE}:probe_overflow", cases=3))
register(Check(exercise="4.4", draw=f"{HERE}:draw_accumulator", probe=f"{HERE}:probe_accumulator", cases=3))
