"""Pruning schedules: one-shot, iterative prune-retrain, AGP (Zhu & Gupta 2017), lottery ticket with rewinding.

A schedule decides *when* and *how much* to prune; the criterion (tinyq.prune.masks) decides *what*.
Training is the caller's: each schedule takes a `retrain(model)` / `train(model)` callable.
"""
from __future__ import annotations

import numpy as np

from tinyq.nn import Module
from tinyq.prune.masks import _check_sparsity, get_mask, global_magnitude, is_pruned


def agp_sparsity(step: int, final: float, initial: float = 0.0, start: int = 0, num_steps: int = 10,
                 interval: int = 1) -> float:
    """s_t = s_f + (s_i − s_f)(1 − (t − t0)/(n Δt))³ for t0 ≤ t ≤ t0 + nΔt (Zhu & Gupta 2017, eq. 1).

    Before t0 the sparsity is s_i, after t0 + nΔt it is s_f; between, it is only updated every
    Δt steps (t is rounded down to the last update step t0 + kΔt).
    """
    _check_sparsity(final), _check_sparsity(initial)
    if num_steps < 1 or interval < 1:
        raise ValueError(f"AGP needs num_steps >= 1 and interval >= 1, got {num_steps} and {interval}")
    ### BEGIN SOLUTION 9.2
    if step < start:
        return float(initial)
    updates = min((step - start) // interval, num_steps)
    progress = updates / num_steps
    return float(final + (initial - final) * (1.0 - progress) ** 3)
    ### END SOLUTION


def one_shot(model: Module, sparsity: float, retrain, criterion=global_magnitude) -> dict:
    """Prune once to `sparsity`, then retrain(model) with the mask held."""
    result = criterion(model, sparsity)
    retrain(model)
    return result


def agp(model: Module, sparsity: float, num_steps: int, retrain_step, criterion=global_magnitude,
        initial: float = 0.0) -> list:
    """Automated gradual pruning: before each of num_steps + 1 retraining steps (an epoch, say) prune to
    s_t = agp_sparsity(t, sparsity, initial, 0, num_steps); the last steps retrain at s_f. Returns the s_t."""
    schedule = [agp_sparsity(t, sparsity, initial, 0, num_steps) for t in range(num_steps + 1)]
    for target in schedule:
        criterion(model, target)
        retrain_step(model)
    return schedule


def iterative(model: Module, sparsity: float, rounds: int, retrain, criterion=global_magnitude) -> list:
    """Prune-retrain `rounds` times; round r prunes to s_r = 1 − (1 − s)^(r/R) (the same fraction of the
    survivors each round, as Han et al. 2015 and Frankle & Carbin 2019). Returns the per-round sparsities."""
    if rounds < 1:
        raise ValueError(f"iterative pruning needs rounds >= 1, got {rounds}")
    _check_sparsity(sparsity)
    schedule = [1.0 - (1.0 - sparsity) ** (r / rounds) for r in range(1, rounds + 1)]
    for target in schedule:
        criterion(model, target)
        retrain(model)
    return schedule


def lottery_ticket(model: Module, rewind_state: dict, sparsity: float, rounds: int, train,
                   criterion=global_magnitude) -> list:
    """Iterative magnitude pruning with rewinding (Frankle & Carbin 2019; Frankle et al. 2020):
    train; prune to the round's sparsity; reset the surviving weights to `rewind_state` (the weights
    at initialization, or an early iterate) and train again. Returns the per-round sparsities."""
    if rounds < 1:
        raise ValueError(f"the lottery ticket needs rounds >= 1, got {rounds}")
    _check_sparsity(sparsity)
    schedule = [1.0 - (1.0 - sparsity) ** (r / rounds) for r in range(1, rounds + 1)]
    train(model)
    for target in schedule:
        criterion(model, target)
        rewind(model, rewind_state)
        train(model)
    return schedule


def rewind(model: Module, state: dict) -> Module:
    """Copy the weights of `state` (a dense state dict) into the model, keeping the masks."""
    for prefix, module in model.named_modules():
        dotted = f"{prefix}." if prefix else ""
        for name, param in module._parameters.items():
            if param is None:
                continue
            key = dotted + (name[:-5] if name.endswith("_orig") and is_pruned(module, name[:-5]) else name)
            if key not in state:
                raise KeyError(f"rewind: the state has no {key!r}")
            param.data = np.array(state[key], dtype=param.dtype) * (
                get_mask(module, name[:-5]) if name.endswith("_orig") else 1)
    return model
