"""Scatter kernels for convolution and max-pooling: NumPy reference beside numba loops.

Layout NCHW; all inputs here are already padded. For a kernel offset (i, j), stride s
and dilation d, the patch element (i, j) of output position (oh, ow) is

    x[n, c, oh*sh + i*dh, ow*sw + j*dw]

col2im adds patch gradients back onto the image (the adjoint of im2col). Max-pooling
remembers, for each output, the flat index r*W + c of its window's first maximum inside
the padded plane, so backward is one scatter-add. Each pair of functions (reference and
compiled) takes the same arguments and returns bit-identical results: both add the
contributions to any input element in the same order.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tinyq.kernels import jit


# ------------------------------------------------------------------ col2im
def col2im_reference(cols: np.ndarray, padded_shape: tuple, stride: tuple, dilation: tuple) -> np.ndarray:
    """x[n, c, oh*sh + i*dh, ow*sw + j*dw] += cols[n, c, i, j, oh, ow]  (one strided add per (i, j))."""
    (sh, sw), (dh, dw) = stride, dilation
    _, _, kh, kw, oh, ow = cols.shape
    out = np.zeros(padded_shape, dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw] += cols[:, :, i, j]
    return out


@jit
def _col2im_loops(cols, out, sh, sw, dh, dw):
    n, c, kh, kw, oh, ow = cols.shape
    for b in range(n):
        for ch in range(c):
            for i in range(kh):
                for j in range(kw):
                    for y in range(oh):
                        row = y * sh + i * dh
                        if sw == 1:                        # unit stride: a loop the compiler vectorizes
                            target, source = out[b, ch, row, j * dw: j * dw + ow], cols[b, ch, i, j, y]
                            for x in range(ow):
                                target[x] += source[x]
                        else:
                            for x in range(ow):
                                out[b, ch, row, x * sw + j * dw] += cols[b, ch, i, j, y, x]


def col2im(cols: np.ndarray, padded_shape: tuple, stride: tuple, dilation: tuple) -> np.ndarray:
    """Same as col2im_reference, one pass of compiled loops (cols: (N, C, KH, KW, OH, OW), any strides)."""
    out = np.zeros(padded_shape, dtype=cols.dtype)
    _col2im_loops(cols, out, stride[0], stride[1], dilation[0], dilation[1])
    return out


# -------------------------------------------------------------- max-pooling
def max_pool2d_reference(xp: np.ndarray, kernel_size: tuple, stride: tuple, dilation: tuple):
    """out = max over each window; index = r*W + c of the window's first maximum in the padded plane."""
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, stride, dilation
    width = xp.shape[3]
    windows = sliding_window_view(xp, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(2, 3))
    windows = windows[:, :, ::sh, ::sw, ::dh, ::dw]
    n, c, oh, ow = windows.shape[:4]
    flat = windows.reshape(n, c, oh, ow, kh * kw)
    k = np.argmax(flat, axis=-1)                                   # first maximum (first NaN, if any)
    out = np.take_along_axis(flat, k[..., None], axis=-1)[..., 0]
    rows = np.arange(oh).reshape(-1, 1) * sh + (k // kw) * dh
    cols = np.arange(ow) * sw + (k % kw) * dw
    return out, (rows * width + cols).astype(np.int64)


@jit
def _max_pool_loops(xp, kh, kw, sh, sw, dh, dw, out, index):
    """Window-unrolled: one pass over the output plane per kernel offset (i, j), in argmax's order.

    The running maximum starts at offset (0, 0); offset (i, j) replaces it where its value is
    larger, or is NaN while the maximum is not (argmax returns the first NaN). The replacement is
    a select, not a branch, and the inner loop runs along a row of outputs, so the compiler can
    vectorize it. Later offsets win only when strictly larger: ties keep the first, like argmax.
    """
    n, c, oh, ow = out.shape
    width = xp.shape[3]
    for b in range(n):
        for ch in range(c):
            plane, best, where = xp[b, ch], out[b, ch], index[b, ch]
            for y in range(oh):
                for x in range(ow):
                    best[y, x] = plane[y * sh, x * sw]
                    where[y, x] = y * sh * width + x * sw
            for i in range(kh):
                for j in range(kw):
                    if i + j == 0:
                        continue
                    for y in range(oh):
                        row = y * sh + i * dh
                        best_row, where_row, plane_row = best[y], where[y], plane[row]
                        for x in range(ow):
                            value, current = plane_row[x * sw + j * dw], best_row[x]
                            take = (value > current) | ((value != value) & (current == current))
                            best_row[x] = value if take else current
                            where_row[x] = row * width + x * sw + j * dw if take else where_row[x]


def max_pool2d(xp: np.ndarray, kernel_size: tuple, stride: tuple, dilation: tuple):
    """Same as max_pool2d_reference, computed by compiled loops."""
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, stride, dilation
    oh = (xp.shape[2] - dh * (kh - 1) - 1) // sh + 1
    ow = (xp.shape[3] - dw * (kw - 1) - 1) // sw + 1
    out = np.empty(xp.shape[:2] + (oh, ow), dtype=xp.dtype)
    index = np.empty(out.shape, dtype=np.int64)
    _max_pool_loops(np.ascontiguousarray(xp), kh, kw, sh, sw, dh, dw, out, index)
    return out, index


def max_pool2d_backward_reference(grad: np.ndarray, index: np.ndarray, padded_shape: tuple) -> np.ndarray:
    """grad_x[n, c].flat[index[n, c, oh, ow]] += grad[n, c, oh, ow]  (overlapping windows add up)."""
    n, c = grad.shape[:2]
    grad_x = np.zeros((n * c, padded_shape[2] * padded_shape[3]), dtype=grad.dtype)
    planes = np.arange(n * c).reshape(-1, 1)
    np.add.at(grad_x, (planes, index.reshape(n * c, -1)), grad.reshape(n * c, -1))
    return grad_x.reshape(padded_shape)


@jit
def _max_pool_backward_loops(grad, index, grad_x):
    n, c, oh, ow = grad.shape
    for b in range(n):
        for ch in range(c):
            for y in range(oh):
                for x in range(ow):
                    grad_x[b, ch, index[b, ch, y, x]] += grad[b, ch, y, x]


def max_pool2d_backward(grad: np.ndarray, index: np.ndarray, padded_shape: tuple) -> np.ndarray:
    """Same as max_pool2d_backward_reference, one compiled scatter-add."""
    n, c = grad.shape[:2]
    grad_x = np.zeros((n, c, padded_shape[2] * padded_shape[3]), dtype=grad.dtype)
    _max_pool_backward_loops(np.ascontiguousarray(grad), np.ascontiguousarray(index), grad_x)
    return grad_x.reshape(padded_shape)
