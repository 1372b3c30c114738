"""Composite functions built from the primitive ops (their gradients come for free).

The primitives are re-exported here too, so `F.relu`, `F.conv2d`, ... work as in PyTorch.
"""
from __future__ import annotations

import numpy as np

from tinyq import ops
from tinyq.convolution import (adaptive_avg_pool2d, avg_pool2d, conv2d, global_avg_pool2d,  # noqa: F401
                               max_pool2d)
from tinyq.ops import dropout, gelu, leaky_relu, log_softmax, relu, sigmoid, tanh  # noqa: F401
from tinyq.tensor import Tensor

_REDUCTIONS = ("mean", "sum", "none")


def _reduce(losses: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    if reduction == "none":
        return losses
    raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def linear(x, weight, bias=None):
    """y = x W^T + b, with W of shape (out_features, in_features) as in PyTorch (one fused op: ops.Linear)."""
    return ops.linear(x, weight, bias)


def softmax(x, axis=-1):
    """softmax(x)_i = exp(x_i - max x) / sum_j exp(x_j - max x) = exp(log_softmax(x)_i)."""
    return ops.exp(ops.log_softmax(x, axis=axis))


def _labels(labels, n: int, num_classes: int, name: str) -> np.ndarray:
    labels = labels.data if isinstance(labels, Tensor) else np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"{name} expects integer class labels, got dtype {labels.dtype}")
    if labels.shape != (n,):
        raise ValueError(f"{name} expects labels of shape ({n},), got {labels.shape}")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{name} expects labels in [0, {num_classes}), got values from {labels.min()} "
                         f"to {labels.max()}")
    return labels


def nll_loss(log_probs, labels, reduction="mean"):
    """loss_n = -log_probs[n, labels[n]]."""
    if log_probs.ndim != 2:
        raise ValueError(f"nll_loss expects log-probabilities (N, C), got shape {log_probs.shape}")
    n, num_classes = log_probs.shape
    labels = _labels(labels, n, num_classes, "nll_loss")
    return _reduce(-log_probs[np.arange(n), labels], reduction)


def cross_entropy(logits, labels, label_smoothing: float = 0.0, reduction: str = "mean"):
    """loss_n = -(1 - eps) log p[n, y_n] - eps/C sum_c log p[n, c],  p = softmax(logits); d/dlogits = p - y_smooth."""
    if not isinstance(logits, Tensor):
        raise TypeError(f"cross_entropy expects logits as a Tensor, got {type(logits).__name__}")
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy expects logits (N, C), got shape {logits.shape}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    labels = _labels(labels, logits.shape[0], logits.shape[1], "cross_entropy")
    log_probs = ops.log_softmax(logits, axis=1)
    losses = nll_loss(log_probs, labels, reduction="none")
    if label_smoothing:
        smooth = -log_probs.mean(axis=1)
        losses = losses * (1.0 - label_smoothing) + smooth * label_smoothing
    return _reduce(losses, reduction)


def mse_loss(prediction, target, reduction="mean"):
    """loss = (prediction - target)^2, averaged (or summed) over every element."""
    target_shape = target.shape if isinstance(target, Tensor) else np.shape(target)
    if prediction.shape != tuple(target_shape):
        raise ValueError(f"mse_loss expects target of shape {prediction.shape}, got {tuple(target_shape)}")
    diff = prediction - target
    return _reduce(diff * diff, reduction)


def kl_div(log_q, p, reduction="batchmean", log_target=False):
    """KL(p || q) = sum p (log p - log q), with the input given as log q (PyTorch's convention)."""
    if isinstance(p, Tensor):
        log_p = p if log_target else ops.log(ops.clip(p, lo=np.finfo(p.dtype).tiny))
        prob = ops.exp(p) if log_target else p
        terms = prob * (log_p - log_q)
    else:
        p = np.asarray(p, dtype=log_q.dtype)
        prob = np.exp(p) if log_target else p
        log_p = p if log_target else np.log(np.where(prob > 0, prob, 1))   # 0 log 0 = 0
        terms = (prob * log_p) - log_q * prob
    if reduction == "batchmean":
        return terms.sum() / log_q.shape[0]
    return _reduce(terms, reduction)


def binary_cross_entropy_with_logits(logits, targets, reduction="mean"):
    """loss = max(x, 0) - x y + log(1 + exp(-|x|)), the stable form of -y log s(x) - (1-y) log(1-s(x))."""
    target_shape = targets.shape if isinstance(targets, Tensor) else np.shape(targets)
    if logits.shape != tuple(target_shape):
        raise ValueError(f"binary_cross_entropy_with_logits expects targets of shape {logits.shape}, "
                         f"got {tuple(target_shape)}")
    losses = ops.relu(logits) - logits * targets + ops.log(1.0 + ops.exp(-ops.abs(logits)))
    return _reduce(losses, reduction)
