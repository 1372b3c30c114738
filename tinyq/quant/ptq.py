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

import numpy as np

from tinyq import autograd_state
from tinyq.nn import Module
from tinyq.quant.config import QuantConfig
from tinyq.quant.fold import fold_batchnorm, fold_bn_params  # noqa: F401  (fold_bn_params: exercise 6.2 lives in fold.py)
from tinyq.quant.qat import convert, quantize_layers
from tinyq.tensor import Tensor

__all__ = ["fold_bn_params", "fold_batchnorm", "prepare", "calibrate", "convert", "quantize_ptq"]


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
