"""Trusted checks for chapter 09 (pruning): drawn on the grader's side, probed in the child."""
from __future__ import annotations

import numpy as np

from tinyq.grading.checks import Check, register


def draw_magnitude_masks(rng: np.random.Generator) -> dict:
    return {"first": rng.normal(size=(int(rng.integers(2, 9)), int(rng.integers(2, 9)))),
            "second": rng.normal(scale=0.5, size=int(rng.integers(5, 40))),
            "sparsity": float(rng.uniform(0.0, 0.99))}


def probe_magnitude_masks(first, second, sparsity) -> dict:
    from tinyq import prune
    layer = prune.magnitude_masks([first], sparsity)[0]
    masks = prune.magnitude_masks([first, second], sparsity)
    return {"layer": np.asarray(layer, dtype=np.float64), "global_first": np.asarray(masks[0], dtype=np.float64),
            "global_second": np.asarray(masks[1], dtype=np.float64)}


def draw_agp(rng: np.random.Generator) -> dict:
    start, num_steps, interval = int(rng.integers(0, 50)), int(rng.integers(1, 12)), int(rng.integers(1, 20))
    return {"steps": rng.integers(0, start + num_steps * interval + 60, size=25),
            "final": float(rng.uniform(0.3, 0.99)), "initial": float(rng.uniform(0.0, 0.3)),
            "start": start, "num_steps": num_steps, "interval": interval}


def probe_agp(steps, final, initial, start, num_steps, interval) -> dict:
    from tinyq import prune
    return {"sparsity": np.array([prune.agp_sparsity(int(t), final, initial, start, num_steps, interval)
                                  for t in steps])}


def draw_slice_inputs(rng: np.random.Generator) -> dict:
    units, per_unit = int(rng.integers(2, 8)), int(rng.integers(1, 5))
    keep = rng.random(units) < 0.6
    keep[int(rng.integers(units))] = True
    return {"linear": rng.normal(size=(int(rng.integers(1, 6)), units * per_unit)), "per_unit": per_unit,
            "conv": rng.normal(size=(3, units, 2, 2)), "keep": keep.astype(np.int64)}


def probe_slice_inputs(linear, per_unit, conv, keep) -> dict:
    from tinyq import prune
    keep = np.asarray(keep).astype(bool)
    return {"linear": np.asarray(prune.slice_input_units(linear, keep, int(per_unit))),
            "conv": np.asarray(prune.slice_input_units(conv, keep, 1))}


def draw_csr(rng: np.random.Generator) -> dict:
    dense = rng.normal(size=(int(rng.integers(1, 10)), int(rng.integers(1, 10))))
    dense[rng.random(dense.shape) < rng.uniform(0.2, 0.95)] = 0
    return {"dense": dense}


def probe_csr(dense) -> dict:
    from tinyq.kernels import sparse
    csr = sparse.csr_encode(dense)
    return {"values": np.asarray(csr.values, dtype=np.float64), "col_index": np.asarray(csr.col_index, dtype=np.int64),
            "row_ptr": np.asarray(csr.row_ptr, dtype=np.int64)}


register(Check(exercise="9.1", draw="tinyq.grading.checks.ch09:draw_magnitude_masks",
               probe="tinyq.grading.checks.ch09:probe_magnitude_masks", rtol=0.0, atol=0.0, cases=3))
register(Check(exercise="9.2", draw="tinyq.grading.checks.ch09:draw_agp", probe="tinyq.grading.checks.ch09:probe_agp",
               rtol=1e-12, atol=1e-12, cases=3))
register(Check(exercise="9.3", draw="tinyq.grading.checks.ch09:draw_slice_inputs",
               probe="tinyq.grading.checks.ch09:probe_slice_inputs", rtol=0.0, atol=0.0, cases=3))
register(Check(exercise="9.4", draw="tinyq.grading.checks.ch09:draw_csr", probe="tinyq.grading.checks.ch09:probe_csr",
               rtol=0.0, atol=0.0, cases=3))
