"""BatchNorm folding: a BatchNorm after a Linear/Conv2d becomes part of that layer's weight and bias.

    w' = w·γ/σ,  b' = (b − μ)·γ/σ + β,  σ = sqrt(var + eps)

Used before PTQ (tinyq.quant.ptq.prepare) and QAT (tinyq.quant.qat.prepare_qat), so it lives
below both (torch.ao calls this step fusing).
"""
from __future__ import annotations

import copy

import numpy as np

from tinyq.nn import BatchNorm1d, BatchNorm2d, Conv2d, Identity, Linear, Module, Parameter

__all__ = ["fold_bn_params", "fold_batchnorm"]


def fold_bn_params(weight: np.ndarray, bias: np.ndarray | None, running_mean: np.ndarray, running_var: np.ndarray,
                   gamma: np.ndarray | None, beta: np.ndarray | None, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """w' = w·γ/σ (one factor per output channel, axis 0), b' = (b − μ)·γ/σ + β, σ = sqrt(var + eps).

    bias None means b = 0; gamma/beta None (BatchNorm without affine) mean γ = 1, β = 0.
    Computed in float64, returned in the weight's dtype.
    """
    channels = weight.shape[0]
    bias = np.zeros(channels) if bias is None else bias
    gamma = np.ones(channels) if gamma is None else gamma
    beta = np.zeros(channels) if beta is None else beta
    ### BEGIN SOLUTION 6.2
    std = np.sqrt(running_var.astype(np.float64) + eps)
    factor = gamma.astype(np.float64) / std
    folded_weight = weight.astype(np.float64) * factor.reshape((channels,) + (1,) * (weight.ndim - 1))
    folded_bias = (bias.astype(np.float64) - running_mean) * factor + beta
    return folded_weight.astype(weight.dtype), folded_bias.astype(weight.dtype)
    ### END SOLUTION


_FOLDABLE = {(Conv2d, BatchNorm2d), (Linear, BatchNorm1d)}


def _fold_pair(layer, bn):
    if bn.running_mean is None:
        raise ValueError("fold_batchnorm needs BatchNorm running statistics (track_running_stats=True)")
    channels = layer.weight.shape[0]
    if bn.num_features != channels:
        raise ValueError(f"fold_batchnorm: {type(bn).__name__}({bn.num_features}) follows a layer with "
                         f"{channels} output channels")
    weight, bias = fold_bn_params(layer.weight.data, None if layer.bias is None else layer.bias.data,
                                  bn.running_mean, bn.running_var, None if bn.weight is None else bn.weight.data,
                                  None if bn.bias is None else bn.bias.data, bn.eps)
    folded = copy.deepcopy(layer)
    pruned = "weight" in getattr(type(layer), "_pruned_names", ())      # tinyq.prune: weight = weight_orig ⊙ mask
    setattr(folded, "weight_orig" if pruned else "weight", Parameter(weight))   # W ⊙ m scaled per row: still 0 at m = 0
    folded.bias = Parameter(bias)
    return folded


def fold_batchnorm(model: Module) -> Module:
    """A copy of model where every Conv2d → BatchNorm2d and Linear → BatchNorm1d pair (adjacent children
    of one container, e.g. a Sequential) becomes one layer with folded weight and bias, and the BatchNorm
    an Identity. Exact in eval mode (up to float32 rounding). Linear + BatchNorm1d assumes (N, features)
    inputs. BatchNorms not directly after such a layer stay as they are."""
    if not isinstance(model, Module):
        raise TypeError(f"fold_batchnorm expects an nn.Module, got {type(model).__name__}")
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        names = list(parent._modules)
        for first, second in zip(names[:-1], names[1:]):
            layer, bn = parent._modules[first], parent._modules[second]
            if (getattr(type(layer), "_unpruned_class", type(layer)), type(bn)) in _FOLDABLE:
                setattr(parent, first, _fold_pair(layer, bn))
                setattr(parent, second, Identity())
    return model
