"""Trusted checks of chapter 13 (putting it together): exercises 13.1-13.4.

All outputs are integers or exact small floats (rtol = atol = 0). Latency is probed with a scripted clock,
stage composition with scripted integer transforms, so nothing depends on this machine's speed.
"""
from __future__ import annotations

import numpy as np

from tinyq.grading.checks import Check, register

HERE = "tinyq.grading.checks.ch13"


def draw_pareto(rng):
    n = int(rng.integers(1, 40))
    return {"sizes": rng.integers(1, 15, n).astype(np.int64), "accuracies": rng.integers(0, 12, n) / 11.0}


def probe_pareto(sizes, accuracies):
    from tinyq.experiments import report
    return {"front": np.asarray(report.pareto_front(sizes, accuracies), dtype=np.int64)}


def draw_latency(rng):
    warmup, repeats = int(rng.integers(0, 4)), int(rng.integers(1, 10))
    return {"durations": rng.integers(1, 1000, warmup + repeats).astype(np.float64), "warmup": warmup,
            "repeats": repeats}


def probe_latency(durations, warmup, repeats):
    """A scripted clock: call k advances time by durations[k]; returns the latency and how many calls ran."""
    from tinyq.experiments import report
    state = {"now": 0.0, "calls": 0}

    def work():
        state["now"] += float(durations[state["calls"]])
        state["calls"] += 1
    latency = report.median_latency(work, warmup=warmup, repeats=repeats, clock=lambda: state["now"])
    return {"latency": float(latency), "calls": int(state["calls"])}


def draw_ratio(rng):
    return {"baseline": int(rng.integers(0, 10 ** 6)), "bits": rng.integers(0, 5000, int(rng.integers(1, 8)))
            .astype(np.int64)}


def probe_ratio(baseline, bits):
    from tinyq.experiments import report
    stored, ratio = report.compression_ratio(baseline, bits)
    return {"bytes": int(stored), "ratio": float(ratio)}


def draw_stages(rng):
    n = int(rng.integers(0, 6))
    return {"start": int(rng.integers(-50, 50)), "multipliers": rng.integers(-3, 4, n).astype(np.int64),
            "offsets": rng.integers(-9, 10, n).astype(np.int64)}


def probe_stages(start, multipliers, offsets):
    """Stage k maps m -> multipliers[k] * m + offsets[k]; measure records m and m squared."""
    from tinyq.experiments import report
    stages = [(f"s{k}", lambda m, a=int(a), b=int(b): a * m + b) for k, (a, b) in enumerate(zip(multipliers, offsets))]
    records = report.run_stages(int(start), stages, lambda m: {"value": m, "square": m * m})
    return {"names": np.array([int(r["stage"][1:]) for r in records], dtype=np.int64),
            "values": np.array([r["value"] for r in records], dtype=np.int64),
            "squares": np.array([r["square"] for r in records], dtype=np.int64)}


register(Check(exercise="13.1", draw=f"{HERE}:draw_pareto", probe=f"{HERE}:probe_pareto", cases=5))
register(Check(exercise="13.2", draw=f"{HERE}:draw_latency", probe=f"{HERE}:probe_latency", cases=5))
register(Check(exercise="13.3", draw=f"{HERE}:draw_ratio", probe=f"{HERE}:probe_ratio", cases=5))
register(Check(exercise="13.4", draw=f"{HERE}:draw_stages", probe=f"{HERE}:probe_stages", cases=5))
