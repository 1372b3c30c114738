"""Batch normalization as one Function (one graph node instead of about ten).

For x of shape (N, C, *) with statistics per channel c over the other m = N * prod(*) elements:

    x_hat = (x - mu_c) / sqrt(var_c + eps),     y = gamma_c x_hat + beta_c

In training mu and var are the batch's own mean and biased variance, so they depend on x and
the gradient has two more terms (they are the derivative of mu and var, summed per channel):

    d beta_c  = sum g              d gamma_c = sum g x_hat
    d x       = gamma_c / sqrt(var_c + eps) * (g - (sum g) / m - x_hat (sum g x_hat) / m)

In eval mu and var are the running statistics, constants: d x = gamma_c g / sqrt(var_c + eps).
The result is the same as the composite of mean, var, sub, sqrt, div, mul and add ops
(tests/test_normalization.py checks it, and torch), in one pass of NumPy per formula line.

Under a simulated format (bf16, fp8: x, gamma, beta on the format's grid) it is one op, so by the
rule of chapter 03 it computes in float32 and rounds once, its output y; the statistics, x_hat
and gamma x_hat stay float32, gradients are not rounded (straight-through) and the running
statistics stay float32 buffers. The composite rounded after every one of its ops (mean, var,
x - mean, var + eps, sqrt, division, times gamma, plus beta: eight roundings in training; in eval
four: x - mean, times 1/std, times gamma, plus beta).
"""
from __future__ import annotations

import numpy as np

from tinyq.function import Function
from tinyq.tensor import Tensor


def _channels_last_axis(a: np.ndarray) -> np.ndarray:
    """(N, C, *) -> (N, C, L) view (L = 1 for (N, C)): every per-channel sum is then over axes 0 and 2."""
    return a.reshape(a.shape[0], a.shape[1], -1)


class BatchNorm(Function):
    """y = gamma (x - mu) / sqrt(var + eps) + beta per channel (axis 1); see the module docstring."""

    @staticmethod
    def forward(ctx, x, weight=None, bias=None, *, eps=1e-5, running_mean=None, running_var=None, batch_stats=None):
        x3 = _channels_last_axis(x)
        m = x3.shape[0] * x3.shape[2]
        centered = np.empty_like(x3)
        if running_mean is None:                                      # training: the batch's own statistics
            mean = x3.sum(axis=(0, 2), dtype=x.dtype) / x.dtype.type(m)
            np.subtract(x3, mean[:, None], out=centered)
            var = np.einsum("ncl,ncl->c", centered, centered) / x.dtype.type(m)
            if batch_stats is not None:                               # the caller updates the running statistics
                batch_stats.update(mean=mean, var=var, count=m)
        else:                                                         # eval: constants
            mean, var = running_mean.astype(x.dtype), running_var.astype(x.dtype)
            np.subtract(x3, mean[:, None], out=centered)
        inv_std = (1 / np.sqrt(var + x.dtype.type(eps))).astype(x.dtype)
        x_hat = centered
        x_hat *= inv_std[:, None]
        if weight is None:
            out = x_hat.copy()
        else:
            out = x_hat * weight.astype(x.dtype)[:, None]
            out += bias.astype(x.dtype)[:, None]
        ctx.save_for_backward(x_hat, inv_std, weight)
        ctx.batch_statistics, ctx.m = running_mean is None, m
        return out.reshape(x.shape)

    @staticmethod
    def backward(ctx, grad):
        x_hat, inv_std, weight = ctx.saved_tensors
        g = _channels_last_axis(grad)
        sum_g = g.sum(axis=(0, 2))
        sum_g_x_hat = np.einsum("ncl,ncl->c", g, x_hat)
        scale = inv_std if weight is None else inv_std * weight.astype(inv_std.dtype)
        if ctx.batch_statistics:   # dx = scale (g - sum_g / m - x_hat sum_g_x_hat / m), built in one buffer
            one_over_m = grad.dtype.type(1.0 / ctx.m)
            grad_x = x_hat * (sum_g_x_hat * one_over_m)[:, None]
            np.subtract(g, grad_x, out=grad_x)
            grad_x -= (sum_g * one_over_m)[:, None]
            grad_x *= scale[:, None]
        else:
            grad_x = g * scale[:, None]
        grad_x = grad_x.reshape(grad.shape)
        if weight is None:
            return (grad_x,)
        return grad_x, sum_g_x_hat.astype(weight.dtype), sum_g.astype(weight.dtype)


def batch_norm(x, weight=None, bias=None, running_mean=None, running_var=None, eps: float = 1e-5,
               batch_stats: dict | None = None):
    """y = gamma (x - mu) / sqrt(var + eps) + beta over axis 1, as one graph node.

    With running_mean and running_var (eval): mu, var are those. Without: the batch's mean and
    biased variance, which are also written into `batch_stats` (keys mean, var, count) when given,
    for `running_statistics`.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"batch_norm expects a Tensor, got {type(x).__name__}")
    if x.ndim < 2:
        raise ValueError(f"batch_norm expects input (N, C, ...), got shape {x.shape}")
    if (weight is None) != (bias is None) or (running_mean is None) != (running_var is None):
        raise ValueError("batch_norm expects weight and bias (and running_mean and running_var) both or neither")
    affine = () if weight is None else (weight, bias)
    return BatchNorm.apply(x, *affine, eps=eps, running_mean=running_mean, running_var=running_var,
                           batch_stats=batch_stats)


def running_statistics(running_mean, running_var, batch_stats: dict, momentum: float):
    """running = (1 - momentum) running + momentum batch, the batch variance unbiased (var m / (m - 1)).

    Returns new float32 arrays (PyTorch's convention for the running variance).
    """
    m = batch_stats["count"]
    unbiased = batch_stats["var"] * (m / max(m - 1, 1))
    return (((1 - momentum) * running_mean + momentum * batch_stats["mean"]).astype(np.float32),
            ((1 - momentum) * running_var + momentum * unbiased).astype(np.float32))
