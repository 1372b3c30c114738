"""Trusted checks of chapter 08 (integer-only inference): exercises 8.1-8.4.

All outputs are integers, compared exactly. Draws include the cases where mistakes hide: ties of
the high multiply (products that are odd multiples of 2^30), negative products, the one saturating
pair (−2^31, −2^31), zero points at the ends of their range, operands at the float32-exact limit,
odd counts for int4 packing.
"""
from __future__ import annotations

import numpy as np

from tinyq.grading.checks import Check, register

HERE = "tinyq.grading.checks.ch08"
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def draw_high_mul(rng):
    a = rng.integers(INT32_MIN, INT32_MAX, 60, endpoint=True)
    b = rng.integers(INT32_MIN, INT32_MAX, 60, endpoint=True)
    a[:6] = [INT32_MIN, INT32_MAX, -3, 3, -5, 0]
    b[:6] = [INT32_MIN, INT32_MIN, 1 << 30, 1 << 30, 1 << 30, 7]            # saturation, ties, zero
    b[6:20] = 1 << int(rng.integers(20, 31))                                  # powers of two: many ties
    return {"a": a.astype(np.int64), "b": b.astype(np.int64)}


def probe_high_mul(a, b):
    from tinyq.kernels.requant import (
        saturating_rounding_doubling_high_mul_reference as high_mul,
    )
    return {"high": np.array([high_mul(int(x), int(y)) for x, y in zip(a, b)], dtype=np.int64)}


def draw_correction(rng):
    m, k, n = (int(v) for v in rng.integers(1, 9, size=3))
    a = rng.integers(0, 256, (m, k))
    b = rng.integers(-128, 128, (k, n))
    a_zero_point = int(rng.choice([0, 255, int(rng.integers(0, 256))]))
    b_zero_point = rng.integers(-128, 128, n)
    b_zero_point[0] = -128
    return {"raw": (a @ b).astype(np.int64), "a_row_sums": a.sum(axis=1).astype(np.int64),
            "b_col_sums": b.sum(axis=0).astype(np.int64), "k": k, "a_zero_point": a_zero_point,
            "b_zero_point": b_zero_point.astype(np.int64)}


def probe_correction(raw, a_row_sums, b_col_sums, k, a_zero_point, b_zero_point):
    from tinyq.kernels.int_gemm import zero_point_correction
    out = zero_point_correction(raw.copy(), a_row_sums.copy(), b_col_sums.copy(), k, a_zero_point, b_zero_point.copy())
    scalar = zero_point_correction(raw.copy(), a_row_sums.copy(), b_col_sums.copy(), k, a_zero_point, -7)
    return {"corrected": np.asarray(out, dtype=np.int64), "scalar_zero_point": np.asarray(scalar, dtype=np.int64)}


def draw_blas_gemm(rng):
    k = int(rng.choice([1, 513, 1040, 1041, 1500]))
    a = rng.integers(100, 256, (3, k)).astype(np.uint8)
    b = rng.integers(-128, 128, (k, 4)).astype(np.int8)
    a[0], b[:, 0] = 255, -128                                                 # the largest products
    limits = rng.integers(1, 300, (5, 2)).astype(np.int64)
    return {"a": a, "b": b, "limits": limits}


def probe_blas_gemm(a, b, limits):
    from tinyq.kernels.int_gemm import exact_block_size, int_gemm_blas
    blocks = np.array([exact_block_size(int(x), int(y)) for x, y in limits], dtype=np.int64)
    return {"blocks": blocks, "product": np.asarray(int_gemm_blas(a.copy(), b.copy()), dtype=np.int64)}


def draw_int4(rng):
    count = int(rng.integers(1, 40)) | 1                                      # odd: a half-filled last byte
    signed = bool(rng.random() < 0.5)
    codes = rng.integers(-8, 8, count) if signed else rng.integers(0, 16, count)
    codes[0] = -8 if signed else 15
    return {"codes": codes.astype(np.int8 if signed else np.uint8), "signed": signed}


def probe_int4(codes, signed):
    from tinyq.kernels.packing import pack_int4, unpack_int4
    packed = np.asarray(pack_int4(codes.copy(), signed=signed))
    return {"packed": packed, "unpacked": np.asarray(unpack_int4(packed.copy(), codes.size, signed=signed))}


register(Check(exercise="8.1", draw=f"{HERE}:draw_high_mul", probe=f"{HERE}:probe_high_mul"))
register(Check(exercise="8.2", draw=f"{HERE}:draw_correction", probe=f"{HERE}:probe_correction"))
register(Check(exercise="8.3", draw=f"{HERE}:draw_blas_gemm", probe=f"{HERE}:probe_blas_gemm"))
register(Check(exercise="8.4", draw=f"{HERE}:draw_int4", probe=f"{HERE}:probe_int4"))
