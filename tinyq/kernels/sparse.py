"""Sparse storage (CSR, bitmask) with its size in bits, and a CSR × dense matmul: NumPy reference beside numba.

CSR of an (M, K) matrix A with nnz non-zeros keeps three arrays:
    values[p]      the non-zeros, row by row (row-major order)
    col_index[p]   the column of values[p]
    row_ptr[i]     where row i starts in values (row_ptr[0] = 0, row_ptr[M] = nnz)
so row i is values[row_ptr[i]:row_ptr[i+1]] at columns col_index[row_ptr[i]:row_ptr[i+1]].
Bitmask: one bit per entry (1 = non-zero, packed 8 per byte) plus the non-zeros in row-major order.

Sizes are counted in bits actually needed: values at `value_bits` each, a column index at
ceil(log2 K) bits, a row pointer at ceil(log2(nnz + 1)) bits (the smallest fixed widths that hold
them); `stored_bits` gives the size with the dtypes this module really uses (int32 indices).

`csr_matmul(values, col_index, row_ptr, dense)` = A @ dense, accumulating each output row in
the order of the non-zeros; the reference and the numba kernel add in the same order and in
the dtype of the inputs, so their results are bit-identical.
This module imports only numpy and numba.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from tinyq.kernels import jit


class CSR(NamedTuple):
    values: np.ndarray      # (nnz,) the non-zeros, row-major
    col_index: np.ndarray   # (nnz,) int32
    row_ptr: np.ndarray     # (M + 1,) int32
    shape: tuple            # (M, K)


class Bitmask(NamedTuple):
    bits: np.ndarray        # packed uint8, ceil(M·K / 8) bytes
    values: np.ndarray      # (nnz,) the non-zeros, row-major
    shape: tuple


def _check_matrix(dense) -> np.ndarray:
    dense = np.asarray(dense)
    if dense.ndim != 2:
        raise ValueError(f"sparse encoders expect a 2-D matrix, got shape {dense.shape}")
    return dense


def csr_encode(dense: np.ndarray) -> CSR:
    """CSR(values, col_index, row_ptr, shape) of a 2-D array: row_ptr[i+1] − row_ptr[i] = nnz of row i."""
    dense = _check_matrix(dense)
    ### BEGIN SOLUTION 9.4
    rows, cols = np.nonzero(dense)
    counts = np.bincount(rows, minlength=dense.shape[0])
    row_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return CSR(dense[rows, cols].copy(), cols.astype(np.int32), row_ptr, dense.shape)
    ### END SOLUTION


def csr_decode(csr: CSR) -> np.ndarray:
    """The dense (M, K) array of a CSR."""
    dense = np.zeros(csr.shape, dtype=csr.values.dtype)
    rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.row_ptr))
    dense[rows, csr.col_index] = csr.values
    return dense


def bitmask_encode(dense: np.ndarray) -> Bitmask:
    """One bit per entry (non-zero or not), packed; the non-zeros in row-major order."""
    dense = _check_matrix(dense)
    nonzero = dense != 0
    return Bitmask(np.packbits(nonzero.ravel()), dense[nonzero].copy(), dense.shape)


def bitmask_decode(encoded: Bitmask) -> np.ndarray:
    size = encoded.shape[0] * encoded.shape[1]
    nonzero = np.unpackbits(encoded.bits, count=size).astype(bool).reshape(encoded.shape)
    dense = np.zeros(encoded.shape, dtype=encoded.values.dtype)
    dense[nonzero] = encoded.values
    return dense


def index_bits(count: int) -> int:
    """ceil(log2 count): bits of the smallest unsigned integer that tells `count` values apart (≥ 1)."""
    return max(1, math.ceil(math.log2(max(count, 2))))


def dense_bits(shape, value_bits: int = 32) -> int:
    return int(np.prod(shape)) * value_bits


def csr_bits(csr: CSR, value_bits: int = 32) -> int:
    """nnz·(value_bits + ceil(log2 K)) + (M + 1)·ceil(log2(nnz + 1))."""
    nnz, (rows, cols) = len(csr.values), csr.shape
    return nnz * (value_bits + index_bits(cols)) + (rows + 1) * index_bits(nnz + 1)


def bitmask_bits(encoded: Bitmask, value_bits: int = 32) -> int:
    """M·K mask bits + nnz·value_bits."""
    return encoded.shape[0] * encoded.shape[1] + len(encoded.values) * value_bits


def stored_bits(encoded) -> int:
    """Bits of the arrays as this module stores them (int32 indices, packed bytes, the values' dtype)."""
    return sum(8 * np.asarray(a).nbytes for a in encoded[:-1])


def best_format_bits(dense: np.ndarray, value_bits: int = 32) -> tuple:
    """(name, bits) of the smallest of dense, CSR and bitmask storage for this matrix."""
    dense = _check_matrix(dense)
    sizes = {"dense": dense_bits(dense.shape, value_bits), "csr": csr_bits(csr_encode(dense), value_bits),
             "bitmask": bitmask_bits(bitmask_encode(dense), value_bits)}
    name = min(sizes, key=sizes.get)
    return name, sizes[name]


# ------------------------------------------------------------------ CSR × dense
def _check_matmul(values, col_index, row_ptr, dense):
    dense = np.asarray(dense)
    if dense.ndim != 2:
        raise ValueError(f"csr_matmul expects a 2-D dense right operand, got shape {dense.shape}")
    if len(col_index) and (col_index.max() >= dense.shape[0] or col_index.min() < 0):
        raise ValueError(f"column indices must lie in [0, {dense.shape[0]}), got up to {col_index.max()}")
    if values.dtype != dense.dtype:
        raise TypeError(f"csr_matmul expects values and dense of one dtype, got {values.dtype} and {dense.dtype}")
    return np.ascontiguousarray(dense)


def csr_matmul_reference(values, col_index, row_ptr, dense) -> np.ndarray:
    """out[i] = Σ_{p in row i} values[p] · dense[col_index[p]]   (added in order of p)."""
    dense = _check_matmul(values, col_index, row_ptr, dense)
    out = np.zeros((len(row_ptr) - 1, dense.shape[1]), dtype=dense.dtype)
    for i in range(len(row_ptr) - 1):
        for p in range(row_ptr[i], row_ptr[i + 1]):
            out[i] += values[p] * dense[col_index[p]]
    return out


@jit
def _csr_matmul_kernel(values, col_index, row_ptr, dense, out):
    for i in range(len(row_ptr) - 1):
        for p in range(row_ptr[i], row_ptr[i + 1]):
            value, row = values[p], dense[col_index[p]]
            for n in range(dense.shape[1]):
                out[i, n] += value * row[n]


def csr_matmul(values, col_index, row_ptr, dense) -> np.ndarray:
    """The numba kernel: the same loops as csr_matmul_reference, compiled."""
    dense = _check_matmul(values, col_index, row_ptr, dense)
    out = np.zeros((len(row_ptr) - 1, dense.shape[1]), dtype=dense.dtype)
    _csr_matmul_kernel(values, col_index, row_ptr, dense, out)
    return out
