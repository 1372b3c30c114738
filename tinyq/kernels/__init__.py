"""Kernels: plain functions, a NumPy reference beside a numba kernel with the same signature.

numba is optional. `jit` compiles with numba (`nopython`, `cache=True`) when it is
installed; without numba, or with NUMBA_DISABLE_JIT=1, the decorated function stays
plain Python (correct, just slow). `JIT_AVAILABLE` tells callers whether the compiled
kernels are actually fast, so they can pick the NumPy reference otherwise.
This package imports only numpy and numba.
"""
from __future__ import annotations

from tinyq.kernels.numba_jit import JIT_AVAILABLE, jit, numba  # noqa: F401  (numba: for callers that check it)

# Exports. The function int_gemm shadows the module of the same name as an attribute of this package:
# import functions from their modules (`from tinyq.kernels.int_gemm import int_gemm`) or from here,
# never the module as `tinyq.kernels.int_gemm`.
from tinyq.kernels.accumulate import accumulate_gemm, accumulate_gemm_reference
from tinyq.kernels.int_gemm import (
    exact_block_size,
    int_gemm,
    int_gemm_blas,
    int_gemm_reference,
    zero_point_correction,
)
from tinyq.kernels.int_ops import add_bias_int32, int_im2col, int_max_pool2d
from tinyq.kernels.packing import pack_int4, unpack_int4
from tinyq.kernels.requant import quantize_multiplier, requantize, requantize_reference

__all__ = ["JIT_AVAILABLE", "accumulate_gemm", "accumulate_gemm_reference", "add_bias_int32", "exact_block_size",
           "int_gemm", "int_gemm_blas", "int_gemm_reference", "int_im2col", "int_max_pool2d", "jit", "pack_int4",
           "quantize_multiplier", "requantize", "requantize_reference", "unpack_int4", "zero_point_correction"]
