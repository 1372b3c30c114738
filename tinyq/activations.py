"""Activations and dropout: elementwise ops whose derivative is written with their output or a mask.

Re-exported by ops.py, so `ops.relu`, `ops.gelu`, ... are the helpers users call.
"""
from __future__ import annotations

import numpy as np

from tinyq.function import Function
from tinyq.shape_ops import _tensor_arg
from tinyq.tensor import _rng


class ReLU(Function):
    @staticmethod
    def forward(ctx, a):
        out = np.maximum(a, 0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):                       # 1 where a > 0
        (out,) = ctx.saved_tensors
        return grad * (out > 0)


class LeakyReLU(Function):
    @staticmethod
    def forward(ctx, a, *, slope):
        ctx.save_for_backward(a)
        ctx.slope = slope
        return np.where(a > 0, a, a * a.dtype.type(slope))

    @staticmethod
    def backward(ctx, grad):                       # 1 where a > 0, slope elsewhere
        (a,) = ctx.saved_tensors
        return np.where(a > 0, grad, grad * grad.dtype.type(ctx.slope))


class Sigmoid(Function):
    @staticmethod
    def forward(ctx, a):
        out = np.empty_like(a)                     # two branches so exp never overflows
        positive = a >= 0
        out[positive] = 1 / (1 + np.exp(-a[positive]))
        e = np.exp(a[~positive])
        out[~positive] = e / (1 + e)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):                       # s' = s (1 - s)
        (out,) = ctx.saved_tensors
        return grad * out * (1 - out)


class Tanh(Function):
    @staticmethod
    def forward(ctx, a):
        out = np.tanh(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):                       # tanh' = 1 - tanh^2
        (out,) = ctx.saved_tensors
        return grad * (1 - out * out)


_GELU_C = np.sqrt(2 / np.pi)


class GELU(Function):
    """gelu(a) = a/2 (1 + tanh(c (a + 0.044715 a^3))), c = sqrt(2/pi) (Hendrycks & Gimpel's tanh form)."""

    @staticmethod
    def forward(ctx, a):
        c = a.dtype.type(_GELU_C)
        inner = np.tanh(c * (a + a.dtype.type(0.044715) * a ** 3))
        ctx.save_for_backward(a, inner)
        return a.dtype.type(0.5) * a * (1 + inner)

    @staticmethod
    def backward(ctx, grad):
        a, inner = ctx.saved_tensors
        c = a.dtype.type(_GELU_C)
        d_inner = (1 - inner * inner) * c * (1 + a.dtype.type(3 * 0.044715) * a * a)
        return grad * a.dtype.type(0.5) * (1 + inner + a * d_inner)


class Dropout(Function):
    @staticmethod
    def forward(ctx, a, *, p, rng):
        keep = rng.random(a.shape, dtype=np.float32) >= p
        ctx.mask = keep.astype(a.dtype) / a.dtype.type(1 - p)
        return a * ctx.mask

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.mask

def relu(a): return ReLU.apply(_tensor_arg("relu", a))
def sigmoid(a): return Sigmoid.apply(_tensor_arg("sigmoid", a))
def tanh(a): return Tanh.apply(_tensor_arg("tanh", a))
def gelu(a): return GELU.apply(_tensor_arg("gelu", a))
def leaky_relu(a, slope=0.01): return LeakyReLU.apply(_tensor_arg("leaky_relu", a), slope=slope)


def dropout(a, p=0.5, training=True, rng=None):
    """Zero each element with probability p, scale the rest by 1/(1-p) (identity when not training)."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    if not training or p == 0:
        return a
    return Dropout.apply(_tensor_arg("dropout", a), p=p, rng=_rng(rng))
