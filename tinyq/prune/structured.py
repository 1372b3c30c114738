"""Structured pruning: drop whole output units (Linear rows, Conv2d filters) by L1/L2 norm, then shrink.

In a Sequential, unit j of a Linear/Conv2d layer feeds the next Linear/Conv2d only through
zero-preserving modules (BatchNorm, ReLU/LeakyReLU/Tanh, pooling, Flatten, Dropout):

    layer (W[j], b[j])  →  BatchNorm (γ[j], β[j])  →  ReLU, pool, Flatten  →  next layer (W'[:, j·f:(j+1)·f])

where f is the number of next-layer inputs one unit feeds (1, or H·W after Flatten in NCHW order).
`structured` masks W[j], b[j], γ[j] and β[j] together, so a pruned unit outputs exactly 0 (in
training and in eval mode) and the next layer's inputs from it contribute nothing. `shrink` then
removes those units for real: a smaller layer, smaller BatchNorm, and the next layer without those
input columns, computing the same outputs for the kept units (up to the float summation order).
"""
from __future__ import annotations

import copy

import numpy as np

from tinyq.nn import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    GlobalAvgPool2d,
    LeakyReLU,
    Linear,
    MaxPool2d,
    Module,
    Parameter,
    ReLU,
    Sequential,
    Tanh,
)
from tinyq.prune.masks import _check_sparsity, _effective, apply_mask, is_pruned, remove

ZERO_PRESERVING = (ReLU, LeakyReLU, Tanh, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, GlobalAvgPool2d, Flatten, Dropout)
BATCH_NORMS = (BatchNorm1d, BatchNorm2d)


def unit_norms(weight: np.ndarray, norm: int = 1) -> np.ndarray:
    """‖W[j]‖_p for each output unit j (a row of a Linear weight, a filter of a Conv2d weight)."""
    if norm not in (1, 2):
        raise ValueError(f"structured pruning ranks units by the L1 or L2 norm, got norm={norm!r}")
    flat = np.abs(np.asarray(weight, dtype=np.float64)).reshape(len(weight), -1)
    return flat.sum(axis=1) if norm == 1 else np.sqrt((flat ** 2).sum(axis=1))


def structured_keep(weight: np.ndarray, amount: float, norm: int = 1) -> np.ndarray:
    """Boolean keep[j]: the round(amount · units) units with the smallest L_p norm are dropped."""
    amount = _check_sparsity(amount)
    norms = unit_norms(weight, norm)
    keep = np.ones(len(norms), dtype=bool)
    keep[np.argsort(norms, kind="stable")[:round(amount * len(norms))]] = False
    return keep


def unit_chains(model: Module) -> list:
    """[(index, batch_norm_index | None, next_index, inputs_per_unit)] for each Linear/Conv2d of a
    Sequential whose units feed a next Linear/Conv2d through zero-preserving modules only."""
    if not isinstance(model, Sequential):
        raise TypeError(f"structured pruning walks a Sequential, got {type(model).__name__}")
    layers, chains = list(model), []
    for i, layer in enumerate(layers):
        if not isinstance(layer, (Linear, Conv2d)) or getattr(layer, "groups", 1) != 1:
            continue
        units = layer.out_features if isinstance(layer, Linear) else layer.out_channels
        batch_norm = None
        for j in range(i + 1, len(layers)):
            following = layers[j]
            if isinstance(following, BATCH_NORMS) and batch_norm is None and following.num_features == units:
                batch_norm = j
            elif isinstance(following, (Linear, Conv2d)):
                inputs = following.in_features if isinstance(following, Linear) else following.in_channels
                if getattr(following, "groups", 1) == 1 and inputs % units == 0:
                    chains.append((i, batch_norm, j, inputs // units))
                break
            elif not isinstance(following, ZERO_PRESERVING):
                break
    return chains


def structured(model: Sequential, amount: float, norm: int = 1, layers=None) -> dict:
    """Mask the round(amount·units) units of smallest L_norm in each chained layer (or the `layers`
    indices given): weight slice, bias entry and the following BatchNorm's γ and β. Returns {index: keep}."""
    chains = {i: (bn, nxt, f) for i, bn, nxt, f in unit_chains(model)}
    chosen = sorted(chains) if layers is None else list(layers)
    for i in chosen:
        if i not in chains:
            raise KeyError(f"layer {i} has no structured-prunable units; prunable layers are {sorted(chains)}")
    result = {}
    for i in chosen:
        layer, (bn_index, _, _) = model[i], chains[i]
        keep = structured_keep(_effective(layer, "weight"), amount, norm)
        _mask_units(layer, keep)
        if bn_index is not None and model[bn_index].affine:
            _mask_units(model[bn_index], keep)
        result[i] = keep
    return result


def _mask_units(module: Module, keep: np.ndarray) -> None:
    for name in ("weight", "bias"):
        if is_pruned(module, name) or module._parameters.get(name) is not None:
            current = _effective(module, name)
            shape = (len(keep),) + (1,) * (current.ndim - 1)
            old = getattr(module, name + "_mask") if is_pruned(module, name) else np.ones_like(current)
            apply_mask(module, name, old * keep.reshape(shape))


def removed_units(model: Sequential, index: int, batch_norm: int | None) -> np.ndarray:
    """keep[j] = False where unit j outputs exactly 0: W[j] = 0, b[j] = 0 and, after a BatchNorm, γ[j] = β[j] = 0."""
    layer = model[index]
    weight = _effective(layer, "weight")
    dead = np.all(weight.reshape(len(weight), -1) == 0, axis=1)
    if layer._parameters.get("bias") is not None or is_pruned(layer, "bias"):
        dead &= _effective(layer, "bias") == 0
    if batch_norm is not None:
        bn = model[batch_norm]
        if not bn.affine:
            return np.ones(len(weight), dtype=bool)
        dead &= (_effective(bn, "weight") == 0) & (_effective(bn, "bias") == 0)
    return ~dead


def slice_input_units(weight: np.ndarray, keep: np.ndarray, inputs_per_unit: int = 1) -> np.ndarray:
    """W'[:, kept units] : drop the input columns that removed units fed (f = inputs_per_unit per unit).

    Linear after Flatten: column c·f + r belongs to channel c (NCHW flattening). Conv2d: f = 1, axis 1.
    """
    ### BEGIN SOLUTION 9.3
    out, rest = weight.shape[0], weight.shape[2:]
    grouped = weight.reshape(out, len(keep), inputs_per_unit, *rest)
    return np.ascontiguousarray(grouped[:, np.asarray(keep, dtype=bool)].reshape(out, -1, *rest))
    ### END SOLUTION


def shrink(model: Sequential) -> Sequential:
    """A new, physically smaller Sequential without the units that output exactly 0 (masks baked in)."""
    new = copy.deepcopy(model)
    for index, bn_index, next_index, per_unit in unit_chains(model):
        keep = removed_units(new, index, bn_index)
        if keep.all():
            continue
        if not keep.any():
            keep[0] = True                      # keep one unit so the layer still has a shape
        names = list(new._modules)
        setattr(new, names[index], _shrunk_outputs(new[index], keep))
        if bn_index is not None:
            setattr(new, names[bn_index], _shrunk_batch_norm(new[bn_index], keep))
        setattr(new, names[next_index], _shrunk_inputs(new[next_index], keep, per_unit))
    for module in new.modules():
        for name in getattr(type(module), "_pruned_names", ()):
            remove(module, name)                 # the remaining (unstructured) zeros are baked in
    return new


def _copy_layer(layer, weight, bias, in_units, out_units):
    if isinstance(layer, Linear):
        new = Linear(in_units, out_units, bias=bias is not None)
    else:
        new = Conv2d(in_units, out_units, layer.kernel_size, layer.stride, layer.padding, layer.dilation,
                     bias=bias is not None)
    new.weight = Parameter(np.ascontiguousarray(weight))
    if bias is not None:
        new.bias = Parameter(np.ascontiguousarray(bias))
    new.train(layer.training)
    return new


def _bias(layer):
    return _effective(layer, "bias") if (is_pruned(layer, "bias") or layer._parameters.get("bias") is not None) \
        else None


def _shrunk_outputs(layer, keep):
    weight, bias = _effective(layer, "weight")[keep], _bias(layer)
    inputs = layer.in_features if isinstance(layer, Linear) else layer.in_channels
    return _copy_layer(layer, weight, None if bias is None else bias[keep], inputs, int(keep.sum()))


def _shrunk_inputs(layer, keep, per_unit):
    weight = slice_input_units(_effective(layer, "weight"), keep, per_unit)
    outputs = layer.out_features if isinstance(layer, Linear) else layer.out_channels
    return _copy_layer(layer, weight, _bias(layer), weight.shape[1], outputs)


def _shrunk_batch_norm(bn, keep):
    new = getattr(type(bn), "_unpruned_class", type(bn))(int(keep.sum()), eps=bn.eps, momentum=bn.momentum,
                                                         affine=bn.affine,
                                                         track_running_stats=bn.track_running_stats)
    if bn.affine:
        new.weight = Parameter(_effective(bn, "weight")[keep].copy())
        new.bias = Parameter(_effective(bn, "bias")[keep].copy())
    if bn.track_running_stats:
        new.running_mean = bn.running_mean[keep].copy()
        new.running_var = bn.running_var[keep].copy()
        new.num_batches_tracked = np.array(bn.num_batches_tracked, copy=True)
    new.train(bn.training)
    return new
