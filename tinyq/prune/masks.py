"""Pruning: a binary mask m per parameter, and the layer computes with w ⊙ m.

Conventions, stated once:
- Pruning parameter `weight` of a module renames the trained Parameter to `weight_orig`
  (the same Parameter object, so an optimizer built earlier keeps updating it), registers
  the mask as the buffer `weight_mask` (dtype of the weight, 1 = kept, 0 = pruned) and makes
  `module.weight` a computed attribute: weight_orig * weight_mask, through autograd.
  The state-dict names are PyTorch's (torch.nn.utils.prune): "0.weight_orig", "0.weight_mask".
- Because the layer sees w ⊙ m, dL/dw_orig = dL/dw ⊙ m is exactly 0 at pruned entries, and the
  effective weight is exactly 0 there whatever the optimizer does with w_orig (momentum, Adam's
  moments, weight decay): the mask holds without touching optimizer internals. `reapply`
  also zeroes w_orig at pruned entries, so that `remove` (w ← w_orig ⊙ m, mask dropped) is clean.
- Sparsity s ∈ [0, 1) means round(s·N) of N weights are zeroed; ties are broken by position
  (a stable sort), so the result is deterministic.
- The magnitude criterion ranks |w_orig ⊙ m|: entries already pruned rank first, so pruning
  again at a higher sparsity only adds to the mask (iterative pruning, AGP).
"""
from __future__ import annotations

import numpy as np

from tinyq.nn import (
    Conv2d,
    Linear,
    Module,
)
from tinyq.tensor import Tensor

PRUNABLE = (Linear, Conv2d)
_PRUNED_CLASSES: dict = {}


# ---------------------------------------------------------------------------- the mask mechanism
def _masked(name):
    """The computed attribute `name` = name_orig ⊙ name_mask (a property of the pruned class)."""
    def weight(self):
        return self._parameters[name + "_orig"] * Tensor(getattr(self, name + "_mask"))

    def refuse(self, value):
        self._parameters.pop(name, None)          # Module.__setattr__ registered it before calling us
        raise AttributeError(f"{type(self).__name__}.{name} is pruned: it is computed as {name}_orig ⊙ {name}_mask; "
                             f"assign {name}_orig, or call tinyq.prune.remove(module, {name!r}) first")
    return property(weight, refuse, doc=f"{name} = {name}_orig ⊙ {name}_mask (pruned)")


def _pruned_class(cls, names: tuple) -> type:
    """A subclass of cls (same name) where each of `names` is computed as orig ⊙ mask."""
    base = getattr(cls, "_unpruned_class", cls)
    key = (base, names)
    if key not in _PRUNED_CLASSES:
        attributes = {name: _masked(name) for name in names}
        attributes.update(_unpruned_class=base, _pruned_names=names, __module__=base.__module__)
        _PRUNED_CLASSES[key] = type(base.__name__, (base,), attributes)
    return _PRUNED_CLASSES[key]


def is_pruned(module: Module, name: str = "weight") -> bool:
    return name in getattr(type(module), "_pruned_names", ())


def apply_mask(module: Module, name: str, mask: np.ndarray) -> Module:
    """Prune module.<name> with `mask` (1 keeps, 0 prunes); a second call replaces the mask."""
    if not isinstance(module, Module):
        raise TypeError(f"apply_mask expects a Module, got {type(module).__name__}")
    if is_pruned(module, name):
        param = module._parameters[name + "_orig"]
    else:
        param = module._parameters.get(name)
        if param is None:
            known = [n for n, p in module._parameters.items() if p is not None]
            raise KeyError(f"{type(module).__name__} has no parameter {name!r}; it has {known}")
    mask = np.asarray(mask)
    if mask.shape != param.shape:
        raise ValueError(f"mask for {name!r} must have shape {param.shape}, got {mask.shape}")
    if not np.all((mask == 0) | (mask == 1)):
        raise ValueError(f"mask for {name!r} must contain only 0 and 1")
    mask = mask.astype(param.dtype)
    if not is_pruned(module, name):
        delattr(module, name)
        setattr(module, name + "_orig", param)
        module.__class__ = _pruned_class(type(module), tuple(type(module).__dict__.get("_pruned_names", ()))
                                         + (name,))
    module.register_buffer(name + "_mask", mask)
    param.data *= mask                       # pruned weights start at exactly zero
    return module


def get_mask(module: Module, name: str = "weight") -> np.ndarray:
    """The mask of module.<name> (all ones when it is not pruned)."""
    if is_pruned(module, name):
        return getattr(module, name + "_mask")
    return np.ones(module._parameters[name].shape, dtype=module._parameters[name].dtype)


def remove(module: Module, name: str = "weight") -> Module:
    """Bake the mask in: name ← name_orig ⊙ mask as a plain Parameter (the same object), mask dropped."""
    if not is_pruned(module, name):
        raise ValueError(f"{type(module).__name__}.{name} is not pruned")
    param = module._parameters[name + "_orig"]
    param.data *= getattr(module, name + "_mask")
    names = tuple(n for n in type(module)._pruned_names if n != name)
    delattr(module, name + "_orig")
    delattr(module, name + "_mask")
    module.__class__ = _pruned_class(type(module), names) if names else type(module)._unpruned_class
    setattr(module, name, param)
    return module


def remove_all(model: Module) -> Module:
    """remove() every mask in the model (a plain dense model with the zeros baked in)."""
    for _, module in model.named_modules():
        for name in getattr(type(module), "_pruned_names", ()):
            remove(module, name)
    return model


def reapply(model: Module) -> Module:
    """w_orig ← w_orig ⊙ m for every mask (the effective weights are zero there anyway)."""
    for _, module in model.named_modules():
        for name in getattr(type(module), "_pruned_names", ()):
            module._parameters[name + "_orig"].data *= getattr(module, name + "_mask")
    return model


def masks(model: Module) -> dict:
    """{"0.weight": mask, ...} for every pruned parameter."""
    return {(f"{prefix}.{name}" if prefix else name): getattr(module, name + "_mask")
            for prefix, module in model.named_modules() for name in getattr(type(module), "_pruned_names", ())}


def apply_masks(model: Module, named_masks: dict) -> Module:
    """apply_mask for each {"0.weight": mask} (e.g. carry masks over to a QAT copy of the model)."""
    modules = dict(model.named_modules())
    for full_name, mask in named_masks.items():
        prefix, _, name = full_name.rpartition(".")
        if prefix not in modules:
            raise KeyError(f"apply_masks: the model has no module {prefix!r} (for {full_name!r})")
        apply_mask(modules[prefix], name, mask)
    return model


# ---------------------------------------------------------------------------- criteria (NumPy)
def _check_sparsity(sparsity) -> float:
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float, np.floating, np.integer)):
        raise TypeError(f"sparsity must be a number in [0, 1), got {type(sparsity).__name__}")
    if not 0.0 <= float(sparsity) < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    return float(sparsity)


def magnitude_masks(weights: list, sparsity: float) -> list:
    """m_i = 1[|w_i| is not among the round(s·N) smallest of all N = Σ size(w_i) magnitudes].

    One array: layer-wise magnitude pruning. Several: global pruning, one threshold for all.
    Ties go by position in the concatenation (a stable sort), so exactly round(s·N) are zeroed.
    """
    sparsity = _check_sparsity(sparsity)
    ### BEGIN SOLUTION 9.1
    magnitudes = np.concatenate([np.abs(np.asarray(w, dtype=np.float64)).ravel() for w in weights])
    num_pruned = round(sparsity * magnitudes.size)
    keep = np.ones(magnitudes.size, dtype=bool)
    keep[np.argsort(magnitudes, kind="stable")[:num_pruned]] = False
    masks, start = [], 0
    for w in weights:
        masks.append(keep[start:start + np.size(w)].reshape(np.shape(w)).astype(np.float32))
        start += np.size(w)
    return masks
    ### END SOLUTION


def random_masks(weights: list, sparsity: float, rng: np.random.Generator) -> list:
    """Zero round(s·size) entries of each array, chosen uniformly at random (the baseline criterion)."""
    sparsity = _check_sparsity(sparsity)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"random pruning needs an np.random.Generator, got {type(rng).__name__}")
    result = []
    for w in weights:
        mask = np.ones(np.size(w), dtype=np.float32)
        mask[rng.permutation(np.size(w))[:round(sparsity * np.size(w))]] = 0
        result.append(mask.reshape(np.shape(w)))
    return result


# ---------------------------------------------------------------------------- whole models
def prunable(model: Module, names=None) -> dict:
    """{"0.weight": (module, "weight")} for the Linear/Conv2d weights (or exactly `names`)."""
    found = {(f"{prefix}.weight" if prefix else "weight"): (module, "weight")
             for prefix, module in model.named_modules() if isinstance(module, PRUNABLE)}
    if names is None:
        return found
    if isinstance(names, str):
        names = [names]
    chosen = {}
    for full_name in names:
        prefix, _, name = full_name.rpartition(".")
        modules = dict(model.named_modules())
        module = modules.get(prefix)
        if module is None or not (is_pruned(module, name) or module._parameters.get(name) is not None):
            raise KeyError(f"cannot prune {full_name!r}: the model has no such parameter; "
                           f"prunable weights are {sorted(found)}")
        chosen[full_name] = (module, name)
    return chosen


def _effective(module, name) -> np.ndarray:
    param = module._parameters[name + "_orig"] if is_pruned(module, name) else module._parameters[name]
    return param.data * get_mask(module, name)


def _apply_all(targets: dict, new_masks) -> dict:
    for (module, name), mask in zip(targets.values(), new_masks):
        apply_mask(module, name, mask)
    return {key: get_mask(module, name) for key, (module, name) in targets.items()}


def magnitude(model: Module, sparsity: float, names=None) -> dict:
    """Layer-wise magnitude pruning: each chosen weight loses its own round(s·N_l) smallest |w|."""
    targets = prunable(model, names)
    return _apply_all(targets, [magnitude_masks([_effective(m, n)], sparsity)[0] for m, n in targets.values()])


def global_magnitude(model: Module, sparsity: float, names=None) -> dict:
    """Global magnitude pruning: the round(s·N) smallest |w| over all chosen weights together."""
    targets = prunable(model, names)
    return _apply_all(targets, magnitude_masks([_effective(m, n) for m, n in targets.values()], sparsity))


def random_prune(model: Module, sparsity: float, rng: np.random.Generator, names=None) -> dict:
    """Random pruning (a baseline): round(s·N_l) random entries of each chosen weight."""
    targets = prunable(model, names)
    return _apply_all(targets, random_masks([_effective(m, n) for m, n in targets.values()], sparsity, rng))


def sparsity_report(model: Module) -> list:
    """One record per Linear/Conv2d weight (zeros, size, sparsity), and a last 'global' record."""
    records, zeros, total = [], 0, 0
    for key, (module, name) in prunable(model).items():
        weight = _effective(module, name)
        count = int(np.sum(weight == 0))
        records.append({"parameter": key, "shape": "x".join(map(str, weight.shape)), "size": int(weight.size),
                        "zeros": count, "sparsity": count / weight.size})
        zeros, total = zeros + count, total + weight.size
    records.append({"parameter": "global", "shape": "", "size": int(total), "zeros": int(zeros),
                    "sparsity": zeros / max(total, 1)})
    return records
