"""Trusted checks for chapter 10 (weight sharing): drawn on the grader's side, probed in the child."""
from __future__ import annotations

import numpy as np

from tinyq.grading.checks import Check, register


def draw_linear_init(rng: np.random.Generator) -> dict:
    return {"values": rng.normal(size=int(rng.integers(2, 50))), "k": int(rng.integers(1, 33))}


def probe_linear_init(values, k) -> dict:
    from tinyq import sharing
    return {"codebook": np.asarray(sharing.linear_init(values, int(k)), dtype=np.float64)}


def draw_assign(rng: np.random.Generator) -> dict:
    return {"values": rng.normal(size=int(rng.integers(1, 60))),
            "codebook": np.sort(rng.normal(size=int(rng.integers(1, 17))))}


def probe_assign(values, codebook) -> dict:
    from tinyq import sharing
    return {"indices": np.asarray(sharing.assign(values, codebook), dtype=np.int64)}


def draw_centroid_gradient(rng: np.random.Generator) -> dict:
    k = int(rng.integers(1, 17))
    shape = (int(rng.integers(1, 8)), int(rng.integers(1, 8)))
    return {"grad": rng.normal(size=shape), "indices": rng.integers(0, k + 1, size=shape), "k": k}


def probe_centroid_gradient(grad, indices, k) -> dict:
    from tinyq import sharing
    return {"centroid_grad": np.asarray(sharing.centroid_gradient(grad, indices, int(k)), dtype=np.float64)}


def draw_huffman(rng: np.random.Generator) -> dict:
    counts = rng.integers(0, 100, size=int(rng.integers(1, 20)))
    counts[int(rng.integers(len(counts)))] += 1          # at least one symbol occurs
    return {"counts": counts}


def probe_huffman(counts) -> dict:
    """Huffman lengths are not unique under ties; the total length, the Kraft sum and which symbols get
    no code are."""
    from tinyq import sharing
    lengths = np.asarray(sharing.huffman_code_lengths(counts), dtype=np.int64)
    used = np.asarray(counts) > 0
    return {"total_bits": int(np.sum(np.asarray(counts) * lengths)),
            "kraft": float(np.sum(2.0 ** -lengths[used])), "unused_lengths": lengths[~used]}


register(Check(exercise="10.1", draw="tinyq.grading.checks.ch10:draw_linear_init",
               probe="tinyq.grading.checks.ch10:probe_linear_init", rtol=1e-12, atol=1e-12, cases=3))
register(Check(exercise="10.2", draw="tinyq.grading.checks.ch10:draw_assign",
               probe="tinyq.grading.checks.ch10:probe_assign", rtol=0.0, atol=0.0, cases=3))
register(Check(exercise="10.3", draw="tinyq.grading.checks.ch10:draw_centroid_gradient",
               probe="tinyq.grading.checks.ch10:probe_centroid_gradient", rtol=1e-9, atol=1e-12, cases=3))
register(Check(exercise="10.4", draw="tinyq.grading.checks.ch10:draw_huffman",
               probe="tinyq.grading.checks.ch10:probe_huffman", rtol=1e-12, atol=0.0, cases=3))
