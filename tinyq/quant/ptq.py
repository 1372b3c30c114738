"""Post-training quantization: fold BatchNorm, calibrate observers on data, convert to a quantized simulation.

    w' = w·γ/σ,  b' = (b − μ)·γ/σ + β,  σ = sqrt(var + eps)        (BatchNorm folded into the layer before it)

    folded = fold_batchnorm(model)                  # same outputs in eval mode, no BatchNorm left
    observed = prepare(folded, config)              # Quant* layers whose quantizers only observe
    calibrate(observed, loader, num_batches=8)      # run data through: observers record ranges
    qsim = convert(observed)                        # qparams frozen, fake quantization on
    # or all at once:
    qsim = quantize_ptq(model, loader, config)

The verbs mirror torch.ao.quantization (prepare / calibrate / convert). Weights are
observed per output channel (symmetric int8 by default), layer inputs per tensor
(asymmetric uint8), with the observer named in the QuantConfig.
"""
from __future__ import annotations

import copy

import numpy as np

from tinyq import autograd_state
from tinyq.nn import BatchNorm1d, BatchNorm2d, Conv2d, Identity, Linear, Module, Parameter
from tinyq.quant.config import QuantConfig
from tinyq.quant.qat import convert, quantize_layers
from tinyq.tensor import Tensor

__all__ = ["fold_bn_params", "fold_batchnorm", "prepare", "calibrate", "convert", "quantize_ptq"]


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
    folded.weight = Parameter(weight)
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
            if (type(layer), type(bn)) in _FOLDABLE:
                setattr(parent, first, _fold_pair(layer, bn))
                setattr(parent, second, Identity())
    return model


def prepare(model: Module, config: QuantConfig | None = None, fold_bn: bool = True) -> Module:
    """A new model (BatchNorm folded first) whose configured layers observe weights and inputs but do not
    quantize yet; run calibrate() on it, then convert()."""
    config = QuantConfig() if config is None else config
    source = fold_batchnorm(model) if fold_bn else model
    return quantize_layers(source, config, observe_only=True).eval()


def _batches(loader):
    for batch in loader:
        if isinstance(batch, (tuple, list)):
            batch = batch[0]
        yield batch


def calibrate(model: Module, loader, num_batches: int | None = None) -> Module:
    """Run (up to num_batches) batches of the loader through the model in eval mode without gradients,
    so its observers record the ranges. The loader yields arrays or (inputs, labels) pairs."""
    if num_batches is not None and (not isinstance(num_batches, int) or num_batches < 1):
        raise ValueError(f"calibrate expects num_batches a positive int or None, got {num_batches!r}")
    model.eval()
    seen = 0
    with autograd_state.no_grad():
        for batch in _batches(loader):
            if num_batches is not None and seen >= num_batches:
                break
            model(batch if isinstance(batch, Tensor) else Tensor(np.asarray(batch, dtype=np.float32)))
            seen += 1
    if seen == 0:
        raise ValueError("calibrate got an empty loader: the observers saw no data")
    return model


def quantize_ptq(model: Module, calib_loader, config: QuantConfig | None = None, num_batches: int | None = None,
                 fold_bn: bool = True) -> Module:
    """convert(calibrate(prepare(model, config), calib_loader)): the quantized-simulation model."""
    return convert(calibrate(prepare(model, config, fold_bn), calib_loader, num_batches))
