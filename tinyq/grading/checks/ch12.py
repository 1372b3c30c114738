"""Trusted checks of chapter 12 (mixed precision and loss scaling): exercises 12.1-12.4.

Scales are powers of two (as loss scales are), so every product the probes compute is exact and the
reference and a correct submission agree to the bit (rtol = atol = 0).
"""
from __future__ import annotations

import numpy as np

from tinyq.grading.checks import Check, register

HERE = "tinyq.grading.checks.ch12"
# name: (smallest subnormal exponent, smallest normal exponent, largest exponent); the grader knows no tinyq
FORMATS = {"fp16": (-24, -14, 15), "bf16": (-133, -126, 127), "fp8_e4m3": (-9, -6, 8), "fp8_e5m2": (-16, -14, 15)}


def draw_update_scale(rng):
    steps = 40
    return {"scale": float(2.0 ** int(rng.integers(-4, 40))), "interval": int(rng.integers(1, 6)),
            "growth": float(rng.choice([2.0, 4.0, 8.0])), "backoff": float(rng.choice([0.5, 0.25, 0.125])),
            "found_inf": rng.random(steps) < rng.uniform(0.05, 0.4)}


def probe_update_scale(scale, interval, growth, backoff, found_inf):
    """Run the rule over the scripted inf/NaN flags; return every scale and tracker along the way."""
    from tinyq import amp
    scales, trackers, tracker = [], [], 0
    for flag in found_inf:
        scale, tracker = amp.update_scale(scale, tracker, bool(flag), growth, backoff, interval)
        scales.append(float(scale))
        trackers.append(int(tracker))
    return {"scales": np.array(scales, dtype=np.float64), "trackers": np.array(trackers, dtype=np.int64)}


def draw_unscale(rng):
    k = int(rng.integers(0, 24))
    first = (rng.standard_normal((3, 5)) * 2.0 ** k).astype(np.float32)
    second = (rng.standard_normal(7) * 2.0 ** k).astype(np.float32)
    if rng.random() < 0.5:
        second[int(rng.integers(0, 7))] = rng.choice([np.inf, -np.inf, np.nan])
    return {"first": first, "second": second, "inv_scale": float(2.0 ** -k)}


def probe_unscale(first, second, inv_scale):
    from tinyq import amp
    (u1, u2), found_inf = amp.unscale_grads([first, second], inv_scale)
    return {"first": np.asarray(u1), "second": np.asarray(u2), "found_inf": int(found_inf)}


def draw_skip(rng):
    steps = 8
    return {"weights": rng.standard_normal(6).astype(np.float32),
            "grads": rng.standard_normal((steps, 6)).astype(np.float32),
            "bad": rng.random(steps) < 0.35, "log2_scale": int(rng.integers(2, 12))}


def probe_skip(weights, grads, bad, log2_scale):
    """Adam behind a dynamic LossScaler; steps flagged bad carry an inf. Weights, moments and flags."""
    from tinyq import amp, nn, optim
    p = nn.Parameter(weights.copy())
    optimizer = optim.Adam([p], lr=0.01)
    scaler = amp.LossScaler(init_scale=2.0 ** log2_scale, growth_interval=2)
    stepped = []
    for g, is_bad in zip(grads, bad):
        scaled = g * np.float32(scaler.get_scale())
        if is_bad:
            scaled[0] = np.inf
        p.grad = scaled
        stepped.append(int(bool(scaler.step(optimizer))))
        scaler.update()
    state = optimizer.state[0]
    return {"weights": p.data.copy(), "m": np.asarray(state.get("m", np.zeros(6, np.float32))),
            "v": np.asarray(state.get("v", np.zeros(6, np.float32))), "stepped": np.array(stepped),
            "scale": float(scaler.get_scale())}


def draw_underflow(rng):
    name = str(rng.choice(list(FORMATS)))
    sub, normal, top = FORMATS[name]
    count = 200
    exponents = rng.uniform(sub - 4, normal + 4, size=count)
    grads = np.ldexp(rng.uniform(1.0, 2.0, size=count), np.floor(exponents).astype(int))
    q = 2.0 ** sub
    edges = np.array([q / 2, np.nextafter(q / 2, 1.0), 2.0 ** normal - q / 2, np.nextafter(2.0 ** normal - q / 2, 0),
                      2.0 ** normal, 0.0, 0.0, 2.0 ** top])
    values = np.concatenate([grads, edges]) * np.where(rng.random(count + len(edges)) < 0.5, -1.0, 1.0)
    return {"grad": rng.permutation(values), "format": name}


def probe_underflow(grad, format):
    from tinyq import amp
    from tinyq.formats import floats
    stats = amp.underflow_fractions(grad, floats.FORMATS[format])
    return {"zero": float(stats["zero"]), "subnormal": float(stats["subnormal"]), "nonzero": int(stats["nonzero"])}


register(Check(exercise="12.1", draw=f"{HERE}:draw_update_scale", probe=f"{HERE}:probe_update_scale", cases=4))
register(Check(exercise="12.2", draw=f"{HERE}:draw_unscale", probe=f"{HERE}:probe_unscale", cases=4))
register(Check(exercise="12.3", draw=f"{HERE}:draw_skip", probe=f"{HERE}:probe_skip", cases=3))
register(Check(exercise="12.4", draw=f"{HERE}:draw_underflow", probe=f"{HERE}:probe_underflow", cases=4))
