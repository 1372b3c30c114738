"""Integer building blocks around the GEMM: im2col with the zero point as padding, max-pooling, bias add.

    im2col:   cols[(n, oh, ow), (c, i, j)] = x_pad[n, c, oh·s + i·d, ow·s + j·d]
    pooling:  out[n, c, oh, ow] = max over the window (a monotone map commutes with max, so pooling
              codes = quantizing the pooled values, on the same grid)
    bias:     acc + bias in int32, checked: a sum that leaves int32 raises instead of wrapping

Padding a quantized image uses its zero point, the code of the real value 0.0 (padding with the
integer 0 would mean the real value −S·z). This module imports only numpy.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["add_bias_int32", "conv_output_size", "int_im2col", "int_max_pool2d"]


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """floor((size + 2·padding − dilation·(kernel − 1) − 1) / stride) + 1."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _check_codes(x, who: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind not in "iu":
        raise TypeError(f"{who} expects integer codes, got dtype {x.dtype}")
    if x.ndim != 4:
        raise ValueError(f"{who} expects (N, C, H, W) codes, got shape {x.shape}")
    return x


def int_im2col(x, kernel_size: tuple, stride: tuple, padding: tuple, dilation: tuple, pad_value: int) -> np.ndarray:
    """(N·OH·OW, C·KH·KW) patches of integer codes, padded with pad_value (the zero point); dtype kept."""
    x = _check_codes(x, "int_im2col")
    info = np.iinfo(x.dtype)
    if not info.min <= int(pad_value) <= info.max:
        raise ValueError(f"int_im2col expects pad_value inside {x.dtype} [{info.min}, {info.max}], got {pad_value}")
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=x.dtype.type(pad_value))
    windows = sliding_window_view(x, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(2, 3))
    windows = windows[:, :, ::sh, ::sw, ::dh, ::dw]                  # (N, C, OH, OW, KH, KW)
    n, c, oh, ow = windows.shape[:4]
    return np.ascontiguousarray(windows.transpose(0, 2, 3, 1, 4, 5)).reshape(n * oh * ow, c * kh * kw)


def int_max_pool2d(x, kernel_size: tuple, stride: tuple, padding: tuple = (0, 0), dilation: tuple = (1, 1)) -> np.ndarray:
    """out[n, c, oh, ow] = max of the window; padding uses the dtype's minimum (never chosen unless all is padding)."""
    x = _check_codes(x, "int_max_pool2d")
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=np.iinfo(x.dtype).min)
    oh = conv_output_size(x.shape[2], kh, sh, 0, dh)
    ow = conv_output_size(x.shape[3], kw, sw, 0, dw)
    out = None
    for i in range(kh):                                # one strided slice per window offset (i, j)
        for j in range(kw):
            part = x[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw]
            out = part.copy() if out is None else np.maximum(out, part, out=out)
    return out


def add_bias_int32(acc, bias, axis: int = -1) -> np.ndarray:
    """acc + bias (bias broadcast along `axis`), int32; OverflowError if a sum leaves int32."""
    acc, bias = np.asarray(acc), np.asarray(bias)
    if acc.dtype.kind not in "iu" or bias.dtype.kind not in "iu":
        raise TypeError(f"add_bias_int32 expects integer arrays, got {acc.dtype} and {bias.dtype}")
    shape = [1] * acc.ndim
    shape[axis] = -1
    if acc.size and bias.size:                                       # bound the sum before adding in int32
        highest = int(acc.max()) + int(bias.max())
        lowest = int(acc.min()) + int(bias.min())
        if lowest < -(1 << 31) or highest > (1 << 31) - 1:
            raise OverflowError("add_bias_int32: accumulator + bias may leave the int32 range "
                                f"(up to [{lowest}, {highest}])")
    return acc.astype(np.int32) + bias.astype(np.int32).reshape(shape)
