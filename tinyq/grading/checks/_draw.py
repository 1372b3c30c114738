"""Drawing helpers shared by the chNN check modules (grader side: numpy only)."""
from __future__ import annotations

import numpy as np


def small_integers(rng: np.random.Generator, shape, low: int = -8, high: int = 8) -> np.ndarray:
    """float64 array of integers in [low, high]: sums and products of a few of them are exact in any order,
    so a correct answer computed in another order matches the reference bit for bit."""
    return rng.integers(low, high + 1, size=shape).astype(np.float64)


def broadcast_pair(rng: np.random.Generator, max_ndim: int = 4, max_size: int = 4) -> tuple[tuple, tuple]:
    """(shape_a, shape_b) that broadcast together: b may lose leading axes and have size-1 axes."""
    ndim = int(rng.integers(1, max_ndim + 1))
    full = tuple(int(n) for n in rng.integers(2, max_size + 1, size=ndim))
    def squeeze(shape):
        dropped = int(rng.integers(0, len(shape)))
        kept = list(shape[dropped:])
        for i in range(len(kept)):
            if rng.random() < 0.35:
                kept[i] = 1
        return tuple(kept)
    a = full if rng.random() < 0.5 else squeeze(full)
    b = squeeze(full)
    return a, b


def away_from_ties(rng: np.random.Generator, size, margin: float = 0.1) -> np.ndarray:
    """Fractions in [margin, 0.5 - margin] or [0.5 + margin, 1 - margin]: k + u never sits near a rounding
    tie or a grid point, so rounding x / scale has one answer whatever order the division is done in."""
    u = rng.uniform(margin, 0.5 - margin, size=size)
    return np.where(rng.random(size) < 0.5, u, u + 0.5)
