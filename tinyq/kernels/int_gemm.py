"""Integer GEMM: C[i, j] = Σ_k (A[i, k] − z_a)(B[k, j] − z_b[j]), int8/uint8 codes in, int32 out.

The zero points come out of the sum by the offset expansion (Jacob et al. 2018, eq. 7-8):

    Σ_k (a_ik − z_a)(b_kj − z_b) = Σ_k a_ik b_kj − z_b Σ_k a_ik − z_a Σ_k b_kj + K z_a z_b

so the O(M·N·K) inner loop multiplies raw codes, and the zero points cost one row sum of A,
one column sum of B (O(M·K + K·N)) and an O(M·N) correction. `b_zero_point` may be one value
per column (per-channel weights).

Three implementations, bit-identical:
  int_gemm_reference   the left-hand side in int64 NumPy (obviously right)
  int_gemm             numba: raw products accumulated in int32, then the correction
  int_gemm_blas        float32 BLAS in K-blocks so small that every partial sum is an integer of
                       magnitude ≤ 2^24, hence exact in float32; blocks summed in int32
Every function checks its operands (integer dtypes of ≤ 16 bits, shapes, zero points inside the
dtype's range) and that K · max|a| · max|b| fits the int32 accumulator: an overflow raises, it
never wraps silently (tinyq.kernels.accumulate simulates narrower accumulators on purpose).
This module imports only numpy and numba.
"""
from __future__ import annotations

import numpy as np

from tinyq.kernels.numba_jit import jit

__all__ = [
    "FLOAT32_EXACT_LIMIT",
    "check_gemm_operands",
    "exact_block_size",
    "int_gemm",
    "int_gemm_blas",
    "int_gemm_reference",
    "zero_point_correction",
]

FLOAT32_EXACT_LIMIT = 1 << 24          # every integer of magnitude ≤ 2^24 is a float32 (24-bit significand)
_INT32_MAX = (1 << 31) - 1


def _max_abs(values: np.ndarray) -> int:
    return 0 if values.size == 0 else max(abs(int(values.min())), abs(int(values.max())))


def check_gemm_operands(a, b, a_zero_point=0, b_zero_point=0):
    """(a, b, z_a as int, z_b as (N,) int64) after checking dtypes, shapes, zero points and the int32 bound."""
    a, b = np.asarray(a), np.asarray(b)
    for name, value in (("a", a), ("b", b)):
        if value.dtype.kind not in "iu" or value.dtype.itemsize > 2:
            raise TypeError(f"int_gemm expects integer codes (int8/uint8/int16/uint16) for {name}, got dtype "
                            f"{value.dtype}; quantize float data first (tinyq.quant.QTensor.quantize)")
        if value.ndim != 2:
            raise ValueError(f"int_gemm expects 2-d {name}, got shape {value.shape}")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"int_gemm expects a (M, K) and b (K, N) with the same K, got {a.shape} and {b.shape}")
    z_a = np.asarray(a_zero_point)
    z_b = np.asarray(b_zero_point)
    if z_a.dtype.kind not in "iu" or z_a.ndim != 0:
        raise TypeError(f"int_gemm expects an integer scalar a_zero_point, got {a_zero_point!r}")
    if z_b.dtype.kind not in "iu" or z_b.ndim > 1:
        raise TypeError(f"int_gemm expects b_zero_point an integer or (N,) integer array, got {b_zero_point!r}")
    z_b = np.broadcast_to(z_b.astype(np.int64), (b.shape[1],)) if z_b.ndim == 0 or z_b.size == b.shape[1] else None
    if z_b is None:
        raise ValueError(f"int_gemm expects b_zero_point of shape () or ({b.shape[1]},), "
                         f"got shape {np.shape(b_zero_point)}")
    for name, zero_point, dtype in (("a_zero_point", z_a, a.dtype), ("b_zero_point", z_b, b.dtype)):
        info = np.iinfo(dtype)
        if zero_point.size and (zero_point.min() < info.min or zero_point.max() > info.max):
            raise ValueError(f"int_gemm expects {name} inside the range of {dtype} [{info.min}, {info.max}], "
                             f"got {zero_point.min() if zero_point.min() < info.min else zero_point.max()}")
    k = a.shape[1]
    a_lo, a_hi = (int(a.min()), int(a.max())) if a.size else (0, 0)            # one pass over each operand
    b_lo, b_hi = (b.min(axis=0).astype(np.int64), b.max(axis=0).astype(np.int64)) if b.size else (z_b, z_b)
    centered = k * max(abs(a_lo - int(z_a)), abs(a_hi - int(z_a))) * int(max(np.abs(b_lo - z_b).max(initial=0),
                                                                               np.abs(b_hi - z_b).max(initial=0)))
    raw = k * max(abs(a_lo), abs(a_hi)) * int(max(np.abs(b_lo).max(initial=0), np.abs(b_hi).max(initial=0)))
    if max(centered, raw) > _INT32_MAX:
        raise OverflowError(f"int_gemm: K·max|a|·max|b| = {max(centered, raw)} does not fit an int32 accumulator "
                            f"(K = {k}); split K or use narrower codes")
    return a, b, int(z_a), np.ascontiguousarray(z_b)


def int_gemm_reference(a, b, a_zero_point=0, b_zero_point=0) -> np.ndarray:
    """C = (A − z_a)(B − z_b) computed in int64 NumPy, returned as int32 (M, N)."""
    a, b, z_a, z_b = check_gemm_operands(a, b, a_zero_point, b_zero_point)
    return ((a.astype(np.int64) - z_a) @ (b.astype(np.int64) - z_b)).astype(np.int32)


def zero_point_correction(raw, a_row_sums, b_col_sums, k: int, a_zero_point: int, b_zero_point) -> np.ndarray:
    """C = raw − z_b·Σ_k a_ik − z_a·Σ_k b_kj + K·z_a·z_b, int64 (M, N) from raw = A·B (M, N), row sums (M,),
    column sums (N,), scalar z_a and z_b a scalar or (N,)."""
    ### BEGIN SOLUTION 8.2
    raw = np.asarray(raw, dtype=np.int64)
    row_sums = np.asarray(a_row_sums, dtype=np.int64).reshape(-1, 1)
    col_sums = np.asarray(b_col_sums, dtype=np.int64).reshape(1, -1)
    z_b = np.asarray(b_zero_point, dtype=np.int64).reshape(1, -1)
    return raw - z_b * row_sums - a_zero_point * col_sums + k * a_zero_point * z_b
    ### END SOLUTION


def _corrected(raw, a, b, z_a, z_b) -> np.ndarray:
    k = a.shape[1]
    if z_a == 0 and not z_b.any():
        return raw.astype(np.int32, copy=False)
    # a zero point of 0 needs no sums of the other operand (symmetric weights: z_b = 0 skips the row sums of A)
    row_sums = a.sum(axis=1, dtype=np.int64) if z_b.any() else np.zeros(a.shape[0], np.int64)
    col_sums = b.sum(axis=0, dtype=np.int64) if z_a else np.zeros(b.shape[1], np.int64)
    return zero_point_correction(raw, row_sums, col_sums, k, z_a, z_b).astype(np.int32)


@jit
def _raw_gemm_loops(a, b, out):
    """out[i, :] += Σ_k a[i, k] · b[k, :] in int32, four values of k per pass over the output row."""
    m, k = a.shape
    n = b.shape[1]
    k4 = k - k % 4
    for i in range(m):
        row = out[i]
        for p in range(0, k4, 4):
            a0, a1, a2, a3 = np.int32(a[i, p]), np.int32(a[i, p + 1]), np.int32(a[i, p + 2]), np.int32(a[i, p + 3])
            b0, b1, b2, b3 = b[p], b[p + 1], b[p + 2], b[p + 3]
            for j in range(n):
                row[j] += (a0 * np.int32(b0[j]) + a1 * np.int32(b1[j])) + (a2 * np.int32(b2[j]) + a3 * np.int32(b3[j]))
        for p in range(k4, k):
            ap = np.int32(a[i, p])
            bp = b[p]
            for j in range(n):
                row[j] += ap * np.int32(bp[j])


def int_gemm(a, b, a_zero_point=0, b_zero_point=0) -> np.ndarray:
    """Same as int_gemm_reference (bit-identical): compiled int32 loops over raw codes, then the correction."""
    a, b, z_a, z_b = check_gemm_operands(a, b, a_zero_point, b_zero_point)
    (m, _), n = a.shape, b.shape[1]
    if n < 16 <= m:                         # a narrow output row vectorizes badly: compute (Bᵀ Aᵀ)ᵀ instead
        raw_t = np.zeros((n, m), dtype=np.int32)
        _raw_gemm_loops(np.ascontiguousarray(b.T), np.ascontiguousarray(a.T), raw_t)
        raw = np.ascontiguousarray(raw_t.T)
    else:
        raw = np.zeros((m, n), dtype=np.int32)
        _raw_gemm_loops(np.ascontiguousarray(a), np.ascontiguousarray(b), raw)
    return _corrected(raw, a, b, z_a, z_b)


def exact_block_size(max_abs_a: int, max_abs_b: int) -> int:
    """The largest K' with K'·max|a|·max|b| ≤ 2^24: a K'-long dot product of such integers is exact in float32."""
    ### BEGIN SOLUTION 8.3
    largest_product = int(max_abs_a) * int(max_abs_b)
    if largest_product == 0:
        return FLOAT32_EXACT_LIMIT                    # every product is 0: any block is exact
    return FLOAT32_EXACT_LIMIT // largest_product
    ### END SOLUTION


def int_gemm_blas(a, b, a_zero_point=0, b_zero_point=0, block: int | None = None) -> np.ndarray:
    """Same as int_gemm_reference (bit-identical): raw A·B by float32 BLAS over K-blocks of exact_block_size
    (from the operands' actual max|a|, max|b|; or `block` to see what happens), blocks summed in int32."""
    a, b, z_a, z_b = check_gemm_operands(a, b, a_zero_point, b_zero_point)
    if block is None:
        block = exact_block_size(_max_abs(a), _max_abs(b))
    if not isinstance(block, (int, np.integer)) or block < 1:
        raise ValueError(f"int_gemm_blas expects block a positive int, got {block!r}")
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    k = a.shape[1]
    ### BEGIN SOLUTION 8.3
    raw = np.zeros((a.shape[0], b.shape[1]), dtype=np.int32)
    for start in range(0, k, block):
        partial = a32[:, start:start + block] @ b32[start:start + block]   # exact: every partial sum ≤ 2^24
        raw += partial.astype(np.int32)
    ### END SOLUTION
    return _corrected(raw, a, b, z_a, z_b)
