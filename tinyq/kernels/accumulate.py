"""Accumulator-width simulation: C[i, j] = acc_b(bias_j + Σ_k (a_ik − z_a)(b_kj − z_b)) with a b-bit accumulator.

Hardware sums the products one by one into a register of `bits` bits. When a partial sum leaves
[−2^(b−1), 2^(b−1) − 1] it either wraps (two's complement: add or subtract 2^b, what an int16
adder does) or saturates (clamps, what a saturating DSP instruction does). The result then
depends on the order of the additions: both implementations here add the bias first, then k = 0,
1, ..., K−1 in order, and count the additions that left the range (the overflows).

  accumulate_gemm_reference   NumPy, int64, one vectorized step per k (obviously right)
  accumulate_gemm             numba, the same order, bit-identical

A BLAS cannot do this (it neither exposes nor fixes its summation order). With bits = 32 and no
overflow, the result equals int_gemm's.
This module imports only numpy and numba.
"""
from __future__ import annotations

import numpy as np

from tinyq.kernels.numba_jit import jit
from tinyq.kernels.int_gemm import check_gemm_operands

__all__ = ["OVERFLOW_MODES", "accumulate_gemm", "accumulate_gemm_reference", "wrap_to_bits"]

OVERFLOW_MODES = ("wrap", "saturate")


def wrap_to_bits(values, bits: int) -> np.ndarray:
    """((v + 2^(b−1)) mod 2^b) − 2^(b−1): two's-complement wrap of int64 values into b bits."""
    half = np.int64(1) << np.int64(bits - 1)
    return (np.asarray(values, dtype=np.int64) + half) % (2 * half) - half


def _check(a, b, a_zero_point, b_zero_point, bias, bits, overflow):
    if overflow not in OVERFLOW_MODES:
        raise ValueError(f"accumulate_gemm expects overflow in {OVERFLOW_MODES}, got {overflow!r}")
    if not isinstance(bits, (int, np.integer)) or isinstance(bits, bool) or not 2 <= bits <= 32:
        raise ValueError(f"accumulate_gemm expects bits an integer in 2..32, got {bits!r}")
    a, b, z_a, z_b = check_gemm_operands(a, b, a_zero_point, b_zero_point)
    n = b.shape[1]
    if bias is None:
        bias = np.zeros(n, dtype=np.int64)
    bias = np.asarray(bias)
    if bias.dtype.kind not in "iu" or bias.shape != (n,):
        raise ValueError(f"accumulate_gemm expects an integer bias of shape ({n},), got {bias.dtype} {bias.shape}")
    return a, b, z_a, z_b, bias.astype(np.int64), int(bits)


def accumulate_gemm_reference(a, b, a_zero_point=0, b_zero_point=0, bias=None, bits: int = 32,
                              overflow: str = "wrap") -> tuple[np.ndarray, int]:
    """(C as int64 (M, N), number of overflowing additions), adding bias then k = 0..K−1 in a `bits`-bit register."""
    a, b, z_a, z_b, bias, bits = _check(a, b, a_zero_point, b_zero_point, bias, bits, overflow)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    centered_a = a.astype(np.int64) - z_a
    centered_b = b.astype(np.int64) - z_b
    acc = np.zeros((a.shape[0], b.shape[1]), dtype=np.int64)
    overflows = 0
    for k in range(-1, a.shape[1]):                   # k = −1: the bias goes in first
        acc = acc + (bias if k < 0 else np.outer(centered_a[:, k], centered_b[k]))
        outside = (acc < lo) | (acc > hi)
        overflows += int(outside.sum())
        acc = wrap_to_bits(acc, bits) if overflow == "wrap" else np.clip(acc, lo, hi)
    return acc, overflows


@jit
def _accumulate_loops(a, b, z_a, z_b, bias, lo, hi, saturate, out):
    m, k = a.shape
    n = b.shape[1]
    span = hi - lo + 1
    overflows = 0
    for i in range(m):
        for j in range(n):
            acc = bias[j]
            if acc < lo or acc > hi:
                overflows += 1
                acc = min(max(acc, lo), hi) if saturate else (acc - lo) % span + lo
            for p in range(k):
                acc += (np.int64(a[i, p]) - z_a) * (np.int64(b[p, j]) - z_b[j])
                if acc < lo or acc > hi:
                    overflows += 1
                    if saturate:
                        acc = min(max(acc, lo), hi)
                    else:
                        acc = (acc - lo) % span + lo
            out[i, j] = acc
    return overflows


def accumulate_gemm(a, b, a_zero_point=0, b_zero_point=0, bias=None, bits: int = 32,
                    overflow: str = "wrap") -> tuple[np.ndarray, int]:
    """Same as accumulate_gemm_reference (bit-identical, same overflow count), compiled loops."""
    a, b, z_a, z_b, bias, bits = _check(a, b, a_zero_point, b_zero_point, bias, bits, overflow)
    out = np.empty((a.shape[0], b.shape[1]), dtype=np.int64)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    overflows = _accumulate_loops(np.ascontiguousarray(a), np.ascontiguousarray(b), np.int64(z_a), z_b, bias,
                                  np.int64(lo), np.int64(hi), overflow == "saturate", out)
    return out, int(overflows)
