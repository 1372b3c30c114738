"""Convolution and pooling as matrix multiplication: im2col forward, col2im backward.

Layout NCHW, weights OIHW (as in PyTorch). For an input x (N, C, H, W), a kernel
of size (KH, KW), stride s, dilation d and (already applied) padding:

    OH = (H - d (KH - 1) - 1) // s + 1          (likewise OW)
    cols[n, c, oh, ow, i, j] = x[n, c, oh s + i d, ow s + j d]
    out[n, o, oh, ow] = sum_{c,i,j} w[o, c, i, j] cols[n, c, oh, ow, i, j] + b[o]

so a convolution is one matmul of the weight matrix (O, C KH KW) with the patch
matrix (C KH KW, N OH OW) whose columns are the patches of every image, and its
input gradient scatters the patch gradients back (col2im). col2im and max-pooling
use the compiled loops of tinyq.kernels.im2col when numba can JIT, and the NumPy
code here otherwise (the same numbers).
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tinyq import kernels
from tinyq.function import Function, needs_grad
from tinyq.kernels import im2col as kernels_im2col
from tinyq.shape_ops import _check_same_dtype
from tinyq.tensor import Tensor

# Compiled numba loops for col2im and max-pooling when numba can JIT (not under NUMBA_DISABLE_JIT=1),
# else the NumPy code below; both give the same numbers. Only float32/float64 go to numba.
USE_NUMBA = kernels.JIT_AVAILABLE
_JIT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# Memory for time: the patch matrix is KH*KW times larger than the input (25x for LeNet's 5x5 kernels,
# 34 of the 44 MiB a LeNet-5 step kept for backward). A patch matrix up to PATCH_CHUNK_BYTES is kept for
# backward. A larger one (with RECOMPUTE_PATCHES) is never built whole: forward keeps the padded input,
# and both passes build the patches of a chunk of images at a time (im2col + GEMM per chunk), backward
# rebuilding them: one more im2col copy per step, for a peak memory that no longer grows with K * batch.
# RECOMPUTE_PATCHES = False keeps every patch matrix. benchmarks/bench_engine.py shows both.
RECOMPUTE_PATCHES = True
PATCH_CHUNK_BYTES = 8 * 2**20


def _pair(value, name) -> tuple:
    pair = (value, value) if np.isscalar(value) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) for v in pair):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return int(pair[0]), int(pair[1])


def output_size(size: int, kernel: int, stride: int, dilation: int) -> int:
    """OH = (H - d (K - 1) - 1) // s + 1 for an already padded input of size H."""
    return (size - dilation * (kernel - 1) - 1) // stride + 1


def im2col(x: np.ndarray, kernel_size, stride=1, dilation=1) -> np.ndarray:
    """cols[n, c, oh, ow, i, j] = x[n, c, oh*s + i*d, ow*s + j*d]  (a strided view, no copy)."""
    (kh, kw), (sh, sw), (dh, dw) = _pair(kernel_size, "kernel_size"), _pair(stride, "stride"), \
        _pair(dilation, "dilation")
    ### BEGIN SOLUTION 2.1
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1          # the dilated kernel's extent
    windows = sliding_window_view(x, (span_h, span_w), axis=(2, 3))  # (N, C, H-span+1, W-span+1, span_h, span_w)
    return windows[:, :, ::sh, ::sw, ::dh, ::dw]
    ### END SOLUTION


def col2im(cols: np.ndarray, x_shape: tuple, stride, dilation) -> np.ndarray:
    """The adjoint of im2col: x_grad[n, c, oh*s + i*d, ow*s + j*d] += cols[n, c, oh, ow, i, j]."""
    (sh, sw), (dh, dw) = _pair(stride, "stride"), _pair(dilation, "dilation")
    _, _, oh, ow, kh, kw = cols.shape
    out = np.zeros(x_shape, dtype=cols.dtype)
    for i in range(kh):                   # one vectorised strided add per kernel offset
        for j in range(kw):
            out[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw] += \
                cols[:, :, :, :, i, j]
    return out


def _pad_spatial(x, padding, value=0.0):
    """x inside a frame of `value`, ph rows and pw columns wide (np.full, then one slice copy: 2-6x faster
    than np.pad, which pads one axis after the other)."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    n, c, h, w = x.shape
    out = np.full((n, c, h + 2 * ph, w + 2 * pw), value, dtype=x.dtype)
    out[:, :, ph: ph + h, pw: pw + w] = x
    return out


def _unpad_spatial(x, padding):
    ph, pw = padding
    return x[:, :, ph: x.shape[2] - ph, pw: x.shape[3] - pw]


def _col2im_patches(cols: np.ndarray, padded_shape: tuple, stride, dilation) -> np.ndarray:
    """col2im for patches stored as (N, C, KH, KW, OH, OW): compiled loops if numba can JIT, else NumPy."""
    if USE_NUMBA and cols.dtype in _JIT_DTYPES:
        return kernels_im2col.col2im(cols, padded_shape, stride, dilation)
    return col2im(cols.transpose(0, 1, 4, 5, 2, 3), padded_shape, stride, dilation)


def _patch_matrix(xp, kernel_size, stride, dilation, groups):
    """(G, C/G*KH*KW, N*OH*OW): column (n, oh, ow) holds the patch of image n at (oh, ow).

    im2col's view, transposed to (C, KH, KW, N, OH, OW); the reshape copies it: the one copy of im2col."""
    windows = im2col(xp, kernel_size, stride, dilation)                 # (N, C, OH, OW, KH, KW) view
    c, kh, kw, n, oh, ow = (windows.shape[i] for i in (1, 4, 5, 0, 2, 3))
    return windows.transpose(1, 4, 5, 0, 2, 3).reshape(groups, c // groups * kh * kw, n * oh * ow)


def _images_per_chunk(patch_bytes_per_image: int) -> int:
    """How many images' patch matrices fit in PATCH_CHUNK_BYTES (at least one)."""
    return max(1, PATCH_CHUNK_BYTES // patch_bytes_per_image)


class Conv2d(Function):
    """One matrix product per group over every position of every image (N*OH*OW columns):

        forward     out[g]     = W[g] cols[g]            (O/G, C/G*KH*KW) @ (C/G*KH*KW, N*OH*OW)
        backward    grad_W[g]  = grad[g] cols[g]^T       grad as (O/G, N*OH*OW): the sum over images is in the GEMM
                    grad_cols  = W[g]^T grad[g]          then col2im
    The product comes out as (O, N, OH, OW), one transpose away from NCHW. (A matmul per image,
    (O, K) @ (K, OH*OW), would give NCHW directly, but many small GEMMs are slower than one large
    one, and grad_W would need an (N, O, K) temporary summed over n.)
    """

    @staticmethod
    def forward(ctx, x, weight, bias=None, *, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
        n = x.shape[0]
        out_channels, c_per_group, kh, kw = weight.shape
        xp = _pad_spatial(x, padding)
        oh = output_size(xp.shape[2], kh, stride[0], dilation[0])
        ow = output_size(xp.shape[3], kw, stride[1], dilation[1])
        w = weight.reshape(groups, out_channels // groups, c_per_group * kh * kw)
        patch_bytes = xp.shape[1] * kh * kw * oh * ow * xp.itemsize        # one image's patch matrix
        recompute = RECOMPUTE_PATCHES and n * patch_bytes > PATCH_CHUNK_BYTES
        chunk = _images_per_chunk(patch_bytes) if recompute else n
        out = np.empty((n, out_channels, oh, ow), dtype=np.result_type(x, weight))
        for start in range(0, n, chunk):               # one pass unless the patch matrix exceeds the budget
            stop = min(n, start + chunk)
            cols = _patch_matrix(xp[start:stop], (kh, kw), stride, dilation, groups)   # (G, C/G*KH*KW, m*OH*OW)
            out[start:stop] = np.matmul(w, cols).reshape(out_channels, stop - start, oh, ow).transpose(1, 0, 2, 3)
            if recompute:
                del cols                               # free this chunk's patches before the next one is built
        if bias is not None:
            out += bias.reshape(-1, 1, 1)
        ctx.save_for_backward(xp if recompute else cols, w)
        ctx.recompute = recompute
        ctx.geometry = (xp.shape, (kh, kw), (oh, ow), stride, padding, dilation, groups)
        return out

    @staticmethod
    def backward(ctx, grad):
        saved, w = ctx.saved_tensors                   # the padded input (or the patch matrix), the weights
        xp_shape, (kh, kw), (oh, ow), stride, padding, dilation, groups = ctx.geometry
        n, c = xp_shape[:2]
        out_channels = grad.shape[1]
        grad_bias = grad.sum(axis=(0, 2, 3)) if len(ctx.inputs) > 2 and ctx.inputs[2] is not None else None
        wants_x = needs_grad(ctx, 0)
        chunk = _images_per_chunk(c * kh * kw * oh * ow * grad.itemsize) if ctx.recompute else n
        grad_w, grad_xp = np.zeros(w.shape, dtype=grad.dtype), None
        for start in range(0, n, chunk):               # one pass unless recomputed patches exceed the budget
            stop = min(n, start + chunk)
            m = stop - start
            cols = _patch_matrix(saved[start:stop], (kh, kw), stride, dilation, groups) if ctx.recompute \
                else saved
            g = grad[start:stop].transpose(1, 0, 2, 3).reshape(groups, out_channels // groups, m * oh * ow)
            grad_w += np.matmul(g, cols.transpose(0, 2, 1))
            if wants_x:
                grad_cols = np.matmul(w.transpose(0, 2, 1), g)           # (G, C/G*KH*KW, m*OH*OW)
                patches = grad_cols.reshape(c, kh, kw, m, oh, ow).transpose(3, 0, 1, 2, 4, 5)
                part = _col2im_patches(patches, (m,) + tuple(xp_shape[1:]), stride, dilation)
                if m == n:
                    grad_xp = part
                else:
                    grad_xp = np.empty(xp_shape, dtype=grad.dtype) if grad_xp is None else grad_xp
                    grad_xp[start:stop] = part
                del grad_cols, patches, part
            del cols                                   # free this chunk's patches before the next one is built
        grad_x = _unpad_spatial(grad_xp, padding) if wants_x else None
        return grad_x, grad_w.reshape(out_channels, c // groups, kh, kw), grad_bias


class MaxPool2d(Function):
    @staticmethod
    def forward(ctx, x, *, kernel_size, stride, padding, dilation=(1, 1)):
        xp = _pad_spatial(x, padding, value=-np.inf)
        if USE_NUMBA and x.dtype in _JIT_DTYPES:                          # compiled loops: max + where it was
            out, ctx.plane_index = kernels_im2col.max_pool2d(xp, kernel_size, stride, dilation)
            ctx.geometry = (xp.shape, None, stride, padding, dilation)
            return out
        windows = im2col(xp, kernel_size, stride, dilation)
        n, c, oh, ow, kh, kw = windows.shape
        flat = windows.reshape(n, c, oh, ow, kh * kw)
        index = np.argmax(flat, axis=-1)[..., None]                       # first maximum, as PyTorch
        ctx.index, ctx.geometry = index, (xp.shape, windows.shape, stride, padding, dilation)
        return np.take_along_axis(flat, index, axis=-1)[..., 0]

    @staticmethod
    def backward(ctx, grad):                       # the gradient flows only to each window's maximum
        xp_shape, windows_shape, stride, padding, dilation = ctx.geometry
        if windows_shape is None:                  # compiled path: scatter-add at the remembered positions
            return _unpad_spatial(kernels_im2col.max_pool2d_backward(grad, ctx.plane_index, xp_shape), padding)
        n, c, oh, ow, kh, kw = windows_shape
        grad_cols = np.zeros((n, c, oh, ow, kh * kw), dtype=grad.dtype)
        np.put_along_axis(grad_cols, ctx.index, grad[..., None], axis=-1)
        grad_x = col2im(grad_cols.reshape(windows_shape), xp_shape, stride, dilation)
        return _unpad_spatial(grad_x, padding)


class AvgPool2d(Function):
    @staticmethod
    def forward(ctx, x, *, kernel_size, stride, padding):
        xp = _pad_spatial(x, padding)                                     # zeros count (count_include_pad)
        windows = im2col(xp, kernel_size, stride, 1)
        ctx.geometry = (xp.shape, windows.shape, stride, padding)
        return windows.mean(axis=(-2, -1), dtype=x.dtype)

    @staticmethod
    def backward(ctx, grad):                       # each window element gets grad / (KH KW)
        xp_shape, windows_shape, stride, padding = ctx.geometry
        kh, kw = windows_shape[-2:]
        share = (grad / grad.dtype.type(kh * kw))[..., None, None]
        grad_cols = np.broadcast_to(share, windows_shape)
        return _unpad_spatial(col2im(grad_cols, xp_shape, stride, 1), padding)


def _adaptive_bounds(size: int, out: int):
    """Window i covers [floor(i size / out), ceil((i+1) size / out)), PyTorch's adaptive pooling rule."""
    return [((i * size) // out, -((-(i + 1) * size) // out)) for i in range(out)]


class AdaptiveAvgPool2d(Function):
    @staticmethod
    def forward(ctx, x, *, output_size):
        rows, cols = _adaptive_bounds(x.shape[2], output_size[0]), _adaptive_bounds(x.shape[3], output_size[1])
        out = np.empty(x.shape[:2] + tuple(output_size), dtype=x.dtype)
        for i, (r0, r1) in enumerate(rows):
            for j, (c0, c1) in enumerate(cols):
                out[:, :, i, j] = x[:, :, r0:r1, c0:c1].mean(axis=(2, 3))
        ctx.shape, ctx.bounds = x.shape, (rows, cols)
        return out

    @staticmethod
    def backward(ctx, grad):
        rows, cols = ctx.bounds
        grad_x = np.zeros(ctx.shape, dtype=grad.dtype)
        for i, (r0, r1) in enumerate(rows):
            for j, (c0, c1) in enumerate(cols):
                area = grad.dtype.type((r1 - r0) * (c1 - c0))
                grad_x[:, :, r0:r1, c0:c1] += (grad[:, :, i, j] / area)[:, :, None, None]
        return grad_x


# --------------------------------------------------------------------- helpers
def _check_input(name, x, channels=None):
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} expects a Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{name} expects input (N, C, H, W), got shape {x.shape}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name} expects input (N, {channels}, H, W), got {x.shape}")


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """out[n,o] = sum_c w[o,c] * x[n,c] (cross-correlation) + b[o]; x NCHW, weight OIHW."""
    stride, padding, dilation = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    if weight.ndim != 4:
        raise ValueError(f"conv2d expects weight (O, C/groups, KH, KW), got shape {weight.shape}")
    out_channels, c_per_group, kh, kw = weight.shape
    _check_input("conv2d", x, c_per_group * groups)
    if out_channels % groups:
        raise ValueError(f"conv2d: out_channels {out_channels} is not divisible by groups {groups}")
    if bias is not None and bias.shape != (out_channels,):
        raise ValueError(f"conv2d expects bias ({out_channels},), got {bias.shape}")
    _check_same_dtype("conv2d", (x, weight, bias), "input, weight and bias")
    h, w = x.shape[2] + 2 * padding[0], x.shape[3] + 2 * padding[1]
    if output_size(h, kh, stride[0], dilation[0]) < 1 or output_size(w, kw, stride[1], dilation[1]) < 1:
        raise ValueError(f"conv2d: kernel {(kh, kw)} with dilation {dilation} does not fit the padded input "
                         f"{(h, w)}")
    args = (x, weight) if bias is None else (x, weight, bias)
    return Conv2d.apply(*args, stride=stride, padding=padding, dilation=dilation, groups=groups)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1):
    kernel_size = _pair(kernel_size, "kernel_size")
    stride = kernel_size if stride is None else _pair(stride, "stride")
    padding = _pair(padding, "padding")
    _check_input("max_pool2d", x)
    if padding[0] * 2 > kernel_size[0] or padding[1] * 2 > kernel_size[1]:
        raise ValueError(f"max_pool2d: padding {padding} must be at most half the kernel {kernel_size}")
    return MaxPool2d.apply(x, kernel_size=kernel_size, stride=stride, padding=padding,
                           dilation=_pair(dilation, "dilation"))


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    kernel_size = _pair(kernel_size, "kernel_size")
    stride = kernel_size if stride is None else _pair(stride, "stride")
    _check_input("avg_pool2d", x)
    return AvgPool2d.apply(x, kernel_size=kernel_size, stride=stride, padding=_pair(padding, "padding"))


def adaptive_avg_pool2d(x, output_size):
    _check_input("adaptive_avg_pool2d", x)
    return AdaptiveAvgPool2d.apply(x, output_size=_pair(output_size, "output_size"))


def global_avg_pool2d(x):
    """(N, C, H, W) -> (N, C): the mean over each channel's plane."""
    _check_input("global_avg_pool2d", x)
    return x.mean(axis=(2, 3))
