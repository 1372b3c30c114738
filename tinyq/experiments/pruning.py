"""Pruning experiments: accuracy vs sparsity (one-shot / iterative / AGP, global / layer-wise / structured /
random), per-layer sensitivity, the lottery ticket, and the latency of a physically shrunk model.

    tinyq prune                           # digits, mlp 64-256-128-10: the tables, JSON/CSV and plots
    tinyq prune --sparsities 0.5 0.9 0.95 --retrain-epochs 8

Recipe (every choice from --seed): the float model is trained with Adam (lr 3e-3, batch 64, cosine
decay); every retraining uses Adam (lr 3e-3, cosine) for the same number of epochs E, so the schedules get the
same budget: one-shot prunes once and retrains E epochs; iterative prunes in 3 rounds of E/3 epochs
(each round removing the same fraction of the survivors); AGP raises the sparsity before each of the
first n+1 = 2E/3 epochs along s_t = s_f (1 − (1 − t/n)³) (Zhu & Gupta 2017 with s_i = 0), then
fine-tunes at s_f for the remaining epochs.
"""
from __future__ import annotations

import copy
import time

import numpy as np

from tinyq import prune
from tinyq.experiments.bitwidth import (
    build_model,
    evaluate,
    generator,
    load_data,
    train,
)

FLOAT_EPOCHS, RETRAIN_EPOCHS, RETRAIN_LR = 30, 20, 3e-3
SPARSITIES = (0.5, 0.8, 0.9, 0.95, 0.98)
CRITERIA = {"global": prune.global_magnitude, "layer": prune.magnitude}


def train_float_model(dataset: str = "digits", model: str = "mlp", seed: int = 0, epochs: int = FLOAT_EPOCHS):
    """(trained model, train set, test set): Adam lr 3e-3, batch 64, cosine, shuffling from the seed."""
    train_set, test_set = load_data(dataset)
    network = build_model(model, train_set.x.shape[1:], int(train_set.y.max()) + 1, rng=generator(seed, 0))
    train(network, train_set, epochs, generator(seed, 1), optimizer="adam", lr=3e-3, batch_size=64)
    return network, train_set, test_set


def retrainer(train_set, seed: int, epochs: int, key: int = 0):
    """retrain(model): Adam (lr RETRAIN_LR, cosine) for `epochs` epochs (a fresh optimizer each call), masks held."""
    calls = [0]

    def retrain(model):
        calls[0] += 1
        train(model, train_set, epochs, generator(seed, 100 + key, calls[0]), optimizer="adam",
              lr=RETRAIN_LR, batch_size=64)
    return retrain


def prune_and_retrain(model, train_set, sparsity: float, schedule: str, criterion: str, epochs: int, seed: int):
    """A pruned, retrained copy of model. schedule: none | one-shot | iterative | agp;
    criterion: global | layer | random | structured (L1 norm of each unit; only units, not the last layer)."""
    pruned = copy.deepcopy(model)
    if criterion == "random":
        rng = generator(seed, 7)
        prune_fn = lambda m, s: prune.random_prune(m, s, rng)
    elif criterion == "structured":
        prune_fn = lambda m, s: prune.structured(m, s, norm=1)
    else:
        prune_fn = CRITERIA[criterion]
    if schedule == "none":
        prune_fn(pruned, sparsity)
    elif schedule == "one-shot":
        prune.one_shot(pruned, sparsity, retrainer(train_set, seed, epochs, 1), prune_fn)
    elif schedule == "iterative":
        rounds = 3
        prune.iterative(pruned, sparsity, rounds, retrainer(train_set, seed, max(1, epochs // rounds), 2), prune_fn)
    elif schedule == "agp":
        ramp = max(1, (2 * epochs) // 3)           # sparsity rises over 2/3 of the epochs, then fine-tuning
        prune.agp(pruned, sparsity, max(1, ramp - 1), retrainer(train_set, seed, 1, 3), prune_fn)
        if epochs > ramp:
            retrainer(train_set, seed, epochs - ramp, 4)(pruned)
    else:
        raise ValueError(f"unknown schedule {schedule!r}; choose none, one-shot, iterative or agp")
    return pruned


VARIANTS = (("none", "global"), ("one-shot", "global"), ("one-shot", "layer"), ("iterative", "global"),
            ("agp", "global"), ("one-shot", "random"), ("one-shot", "structured"))


def accuracy_vs_sparsity(model, train_set, test_set, sparsities=SPARSITIES, variants=VARIANTS,
                         epochs: int = RETRAIN_EPOCHS, seed: int = 0, progress: bool = False) -> list:
    """Records {method, schedule, criterion, target, sparsity, accuracy, drop} for each variant × sparsity;
    `sparsity` is the measured fraction of zero Linear/Conv2d weights (structured: whole units)."""
    from tqdm.auto import tqdm
    reference = evaluate(model, test_set)
    records = []
    for schedule, criterion in tqdm(variants, desc="pruning", disable=not progress):
        for target in sparsities:
            pruned = prune_and_retrain(model, train_set, target, schedule, criterion, epochs, seed)
            accuracy = evaluate(pruned, test_set)
            records.append({"method": f"{schedule} {criterion}", "schedule": schedule, "criterion": criterion,
                            "target": target, "sparsity": prune.sparsity_report(pruned)[-1]["sparsity"],
                            "accuracy": accuracy, "drop": reference - accuracy})
    return records


def sensitivity(model, test_set, sparsities=(0.5, 0.8, 0.9, 0.95, 0.99)) -> list:
    """Records {layer, sparsity, accuracy, drop}: only that layer pruned (layer-wise magnitude), no retraining."""
    reference = evaluate(model, test_set)
    records = []
    for name in prune.prunable(model):
        for sparsity in sparsities:
            pruned = copy.deepcopy(model)
            prune.magnitude(pruned, sparsity, names=[name])
            accuracy = evaluate(pruned, test_set)
            records.append({"layer": name, "sparsity": sparsity, "accuracy": accuracy, "drop": reference - accuracy})
    return records


def lottery_ticket(dataset: str = "digits", model: str = "mlp", sparsity: float = 0.9, rounds: int = 3,
                   epochs: int = 10, rewind_epochs: int = 1, seed: int = 0) -> list:
    """Records {network, sparsity, accuracy}: the dense network; the winning ticket (iterative magnitude
    pruning, survivors rewound to the weights after `rewind_epochs` epochs, Frankle et al. 2020; 0 = the
    initialization, Frankle & Carbin 2019); and the same masks with a fresh random initialization."""
    train_set, test_set = load_data(dataset)
    shape, classes = train_set.x.shape[1:], int(train_set.y.max()) + 1
    network = build_model(model, shape, classes, rng=generator(seed, 0))
    calls = [0]

    def train_for(net, count=epochs):
        calls[0] += 1
        train(net, train_set, count, generator(seed, 20, calls[0]), optimizer="adam", lr=3e-3, batch_size=64)

    if rewind_epochs:
        train_for(network, rewind_epochs)
    rewind_state = network.state_dict()
    dense = copy.deepcopy(network)
    train_for(dense)
    prune.lottery_ticket(network, rewind_state, sparsity, rounds, train_for)
    masks = prune.masks(network)
    control = build_model(model, shape, classes, rng=generator(seed, 30))
    prune.apply_masks(control, masks)
    train_for(control, epochs + rewind_epochs)
    achieved = prune.sparsity_report(network)[-1]["sparsity"]
    return [{"network": "dense", "sparsity": 0.0, "accuracy": evaluate(dense, test_set)},
            {"network": f"winning ticket (rewind to epoch {rewind_epochs})", "sparsity": achieved,
             "accuracy": evaluate(network, test_set)},
            {"network": "same masks, random re-init", "sparsity": achieved, "accuracy": evaluate(control, test_set)}]


def median_latency(fn, repeat: int = 15, number: int = 5) -> float:
    """Median over `repeat` runs of the mean time of `number` calls of fn(), in seconds."""
    fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - start) / number)
    return float(np.median(samples))


def shrink_latency(model, train_set, test_set, amount: float = 0.5, epochs: int = RETRAIN_EPOCHS, seed: int = 0,
                   batch: int = 256) -> dict:
    """Structured L1 pruning of `amount` of the units, retrained, then physically shrunk: accuracy, parameter
    count and forward latency (batch of test images, no gradients) of the masked and the shrunk model,
    measured interleaved; the largest output difference between the two shows they compute the same."""
    import tinyq as tq
    pruned = prune_and_retrain(model, train_set, amount, "one-shot", "structured", epochs, seed)
    small = prune.shrink(pruned).eval()
    pruned.eval()
    x = tq.tensor(test_set.x[:batch])
    with tq.no_grad():
        difference = float(np.max(np.abs(small(x).data - pruned(x).data)))
        masked_s = median_latency(lambda: pruned(x))
        small_s = median_latency(lambda: small(x))
        dense_s = median_latency(lambda: model(x))
    return {"amount": amount, "accuracy_masked": evaluate(pruned, test_set), "accuracy_shrunk": evaluate(small, test_set),
            "params_dense": model.num_parameters(), "params_shrunk": small.num_parameters(),
            "max_output_difference": difference, "dense_ms": dense_s * 1e3, "masked_ms": masked_s * 1e3,
            "shrunk_ms": small_s * 1e3, "speedup_vs_dense": dense_s / small_s}
