"""Requantization: q_out = clamp(zero_point + round(M · acc), qmin, qmax) with M = M0 · 2^-31 · 2^shift, no float.

An int32 accumulator `acc` (scale S_a·S_w) becomes a code on the output grid (scale S_out) by the
real multiplier M = S_a·S_w / S_out, which integer-only inference (Jacob et al. 2018, sec. 2.2) keeps
as a 31-bit integer M0 ∈ [2^30, 2^31) and a power of two: M = M0 · 2^-31 · 2^shift, shift ≤ 0 here
(M < 1). The product is rounded exactly as gemmlowp and TFLite do:

    x = SaturatingRoundingDoublingHighMul(acc, M0)     # floor(acc · M0 / 2^31 + 1/2): ties toward +inf
    x = RoundingDivideByPOT(x, -shift)                 # round(x / 2^-shift): ties away from zero
    q = clamp(x + zero_point, qmin, qmax)              # a fused ReLU is qmin = zero_point

Each step has a reference written with Python integers (arbitrary precision, obviously right), and
`requantize` is the numba kernel, int64 arithmetic, tested bit-identical to them.
`quantize_multiplier` lives in tinyq.formats.affine (its one home) and is re-exported here.
This module imports only numpy, numba and tinyq.formats.
"""
from __future__ import annotations

import numpy as np

from tinyq.formats.affine import quantize_multiplier
from tinyq.kernels.numba_jit import jit

__all__ = [
    "INT32_MAX",
    "INT32_MIN",
    "check_multiplier",
    "multiply_by_quantized_multiplier_reference",
    "quantize_multiplier",
    "requantize",
    "requantize_reference",
    "rounding_divide_by_pot_reference",
    "saturating_rounding_doubling_high_mul_reference",
]

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


# ---------------------------------------------------------------- references (Python integers)
def saturating_rounding_doubling_high_mul_reference(a: int, b: int) -> int:
    """floor(a · b / 2^31 + 1/2) for int32 a, b (ties toward +inf, like ARM's vqrdmulh); a = b = −2^31 saturates.

    gemmlowp writes it with a nudge of +2^30 (product ≥ 0) or 1 − 2^30 (product < 0) and a division that
    truncates toward zero; both give floor(x + 1/2) on the 2^-31 grid: −1.5 → −1, 1.5 → 2."""
    ### BEGIN SOLUTION 8.1
    if a == INT32_MIN and b == INT32_MIN:
        return INT32_MAX
    product = a * b
    nudge = (1 << 30) if product >= 0 else 1 - (1 << 30)
    total = product + nudge
    quotient = abs(total) >> 31                       # C's division truncates toward zero
    return quotient if total >= 0 else -quotient
    ### END SOLUTION


def rounding_divide_by_pot_reference(x: int, exponent: int) -> int:
    """round(x / 2^exponent), ties away from zero (gemmlowp RoundingDivideByPOT), 0 ≤ exponent ≤ 31."""
    mask = (1 << exponent) - 1
    remainder = x & mask                              # x − floor(x / 2^e)·2^e, in [0, 2^e)
    threshold = (mask >> 1) + (1 if x < 0 else 0)     # half; a negative tie rounds down (away from zero)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def multiply_by_quantized_multiplier_reference(acc: int, m0: int, shift: int) -> int:
    """≈ acc · M0 · 2^(shift − 31) the gemmlowp way: high multiply, then rounding right shift by −shift (two roundings)."""
    return rounding_divide_by_pot_reference(saturating_rounding_doubling_high_mul_reference(acc, m0), -shift)


def check_multiplier(m0, shift) -> tuple[np.ndarray, np.ndarray]:
    """(m0, shift) as int64 arrays after checking 0 ≤ m0 < 2^31 and −31 ≤ shift ≤ 0, i.e. M < 1."""
    m0, shift = np.atleast_1d(np.asarray(m0)), np.atleast_1d(np.asarray(shift))
    for name, value in (("m0", m0), ("shift", shift)):
        if value.dtype.kind not in "iu":
            raise TypeError(f"requantize expects an integer {name} (from quantize_multiplier), got dtype {value.dtype}")
    if m0.shape != shift.shape or m0.ndim != 1:
        raise ValueError(f"requantize expects m0 and shift of one shape (scalars or (C,)), got {m0.shape} and {shift.shape}")
    if m0.min() < 0 or m0.max() > INT32_MAX:
        raise ValueError(f"requantize expects m0 in [0, 2^31), got values in [{m0.min()}, {m0.max()}]")
    if shift.max() > 0 or shift.min() < -31:
        raise ValueError(f"requantize expects a multiplier M < 1 (shift in [-31, 0]), got shift in "
                         f"[{shift.min()}, {shift.max()}]; M >= 1 means the output scale is finer than the "
                         "accumulator's, which this requantizer does not support")
    return m0.astype(np.int64), shift.astype(np.int64)


def _check_requant_args(acc, m0, shift, zero_point, qmin, qmax, axis):
    acc = np.asarray(acc)
    if acc.dtype.kind not in "iu" or acc.dtype.itemsize > 4 or acc.dtype == np.uint32:
        raise TypeError(f"requantize expects an int32 accumulator, got dtype {acc.dtype}")
    m0, shift = check_multiplier(m0, shift)
    qmin, qmax, zero_point = int(qmin), int(qmax), int(zero_point)
    if not qmin <= zero_point <= qmax:
        raise ValueError(f"requantize expects zero_point in [{qmin}, {qmax}], got {zero_point}")
    if m0.size > 1 and (acc.ndim == 0 or acc.shape[axis] != m0.size):
        raise ValueError(f"requantize expects {m0.size} channels along axis {axis}, got shape {acc.shape}")
    return acc, m0, shift, zero_point, qmin, qmax


def _channels_last(acc: np.ndarray, channels: int, axis: int) -> np.ndarray:
    """(rows, C) view with the channel axis last (C = 1 for a per-tensor multiplier)."""
    if channels == 1:
        return acc.reshape(-1, 1)
    return np.moveaxis(acc, axis, -1).reshape(-1, channels)


def _restore(out2d: np.ndarray, shape: tuple, channels: int, axis: int) -> np.ndarray:
    if channels == 1:
        return out2d.reshape(shape)
    moved = list(shape)
    moved.append(moved.pop(axis % len(shape)))
    return np.moveaxis(out2d.reshape(moved), -1, axis)


def requantize_reference(acc, m0, shift, zero_point: int, qmin: int, qmax: int, axis: int = -1) -> np.ndarray:
    """q = clamp(zero_point + multiply_by_quantized_multiplier(acc, m0, shift), qmin, qmax), Python integers.

    m0, shift: scalars (per-tensor) or (C,) arrays for per-channel multipliers along `axis` of acc.
    Returns int32 codes (cast to the storage dtype is the caller's choice)."""
    acc, m0, shift, zero_point, qmin, qmax = _check_requant_args(acc, m0, shift, zero_point, qmin, qmax, axis)
    rows = _channels_last(acc, m0.size, axis)
    out = np.empty(rows.shape, dtype=np.int32)
    for c in range(rows.shape[1]):
        m, s = int(m0[c]), int(shift[c])
        for r in range(rows.shape[0]):
            value = zero_point + multiply_by_quantized_multiplier_reference(int(rows[r, c]), m, s)
            out[r, c] = min(max(value, qmin), qmax)
    return _restore(out, acc.shape, m0.size, axis)


# ---------------------------------------------------------------- numba kernel (int64 arithmetic)
@jit
def _requantize_loops(rows, m0, shift, zero_point, qmin, qmax, out):
    n_rows, channels = rows.shape
    for r in range(n_rows):
        for c in range(channels):
            a = np.int64(rows[r, c])
            b = m0[c]
            if a == -2147483648 and b == -2147483648:
                high = np.int64(2147483647)
            else:
                product = a * b                                   # |a·b| < 2^62: fits int64
                total = product + (np.int64(1073741824) if product >= 0 else np.int64(-1073741823))
                high = (total >> 31) if total >= 0 else -((-total) >> 31)
            exponent = -shift[c]
            mask = (np.int64(1) << exponent) - 1
            threshold = (mask >> 1) + (1 if high < 0 else 0)
            value = (high >> exponent) + (1 if (high & mask) > threshold else 0) + zero_point
            out[r, c] = min(max(value, qmin), qmax)


def requantize(acc, m0, shift, zero_point: int, qmin: int, qmax: int, axis: int = -1) -> np.ndarray:
    """Same as requantize_reference (bit-identical), one pass of compiled loops."""
    acc, m0, shift, zero_point, qmin, qmax = _check_requant_args(acc, m0, shift, zero_point, qmin, qmax, axis)
    rows = np.ascontiguousarray(_channels_last(acc, m0.size, axis))
    out = np.empty(rows.shape, dtype=np.int32)
    _requantize_loops(rows, m0, shift, np.int64(zero_point), np.int64(qmin), np.int64(qmax), out)
    return _restore(out, acc.shape, m0.size, axis)
