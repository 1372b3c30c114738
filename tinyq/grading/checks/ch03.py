"""Trusted checks of chapter 03 (floating-point formats): exercises 3.1 and 3.2.

Inputs are built on the format's grid: x = ±(k + f)·2^(e - m) lies between the grid neighbours
k·2^(e - m) and (k + 1)·2^(e - m) (exact in float64), with f = 1/2 for ties.
"""
from __future__ import annotations

import numpy as np

from tinyq.grading.checks import Check, register

HERE = "tinyq.grading.checks.ch03"
# name: (mantissa bits m, emin, largest binade used here); the grader side knows no tinyq
FORMATS = {"fp16": (10, -14, 14), "bf16": (7, -126, 20), "fp8_e4m3": (3, -6, 7), "fp8_e5m2": (2, -14, 14)}


def _between_neighbours(rng, name, count, fraction):
    """(x, lower magnitude, upper magnitude): x = ±(k + fraction)·2^(e-m), a quarter of them subnormal."""
    m, emin, emax = FORMATS[name]
    e = rng.integers(emin, emax + 1, size=count)
    subnormal = rng.random(count) < 0.25
    k = np.where(subnormal, rng.integers(0, 2 ** m, size=count), rng.integers(2 ** m, 2 ** (m + 1), size=count))
    e = np.where(subnormal, emin, e)
    step = np.ldexp(1.0, e - m)
    sign = np.where(rng.random(count) < 0.5, -1.0, 1.0)
    return sign * (k + fraction) * step, k * step, (k + 1) * step


def draw_nearest(rng):
    name = str(rng.choice(list(FORMATS)))
    count = 24
    fraction = rng.uniform(0.0, 1.0, size=count)
    fraction[: count // 3] = 0.5                            # ties: the even neighbour wins
    fraction[count // 3: count // 2] = 0.0                  # already on the grid
    x, _, _ = _between_neighbours(rng, name, count, fraction)
    return {"x": x, "format": name}


def probe_nearest(x, format):
    from tinyq.formats import floats
    return {"rounded": np.asarray(floats.round_to(x.copy(), floats.FORMATS[format], mode="nearest"))}


def draw_stochastic(rng):
    name = str(rng.choice(list(FORMATS)))
    count = 12
    fraction = rng.uniform(0.05, 0.95, size=count)
    x, lower, upper = _between_neighbours(rng, name, count, fraction)
    return {"x": x, "lower": lower, "upper": upper, "fraction": fraction, "format": name,
            "seed": int(rng.integers(0, 2 ** 31)), "repeats": 4000}


def probe_stochastic(x, lower, upper, fraction, format, seed, repeats):
    """Properties of stochastic rounding, not its random bits (a correct solution may draw differently):
    every result is one of the two neighbours, with the sign kept, and the frequency of rounding up is
    the fraction (within 0.05: more than 6 standard deviations for 4000 repeats)."""
    from tinyq.formats import floats
    tiled = np.tile(x, (repeats, 1))
    rounded = np.asarray(floats.round_to(tiled, floats.FORMATS[format], mode="stochastic",
                                         rng=np.random.default_rng(seed)), dtype=np.float64)
    magnitude = np.abs(rounded)
    on_neighbours = np.all(((magnitude == lower) | (magnitude == upper)) & ((rounded == 0) | (np.sign(rounded) == np.sign(x))))
    up = (magnitude == upper).mean(axis=0)
    return {"result_is_a_neighbour": bool(on_neighbours and rounded.shape == tiled.shape),
            "frequency_up_matches_fraction": np.abs(up - fraction) < 0.05}


register(Check(exercise="3.1", draw=f"{HERE}:draw_nearest", probe=f"{HERE}:probe_nearest", cases=6))
register(Check(exercise="3.2", draw=f"{HERE}:draw_stochastic", probe=f"{HERE}:probe_stochastic", cases=3))
