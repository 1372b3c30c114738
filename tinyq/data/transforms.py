"""Batch transforms for data augmentation: callables ndarray (N, C, H, W) -> ndarray of the same shape."""
from __future__ import annotations

import numpy as np


class RandomShift:
    """out[i] = x[i] moved by (dy_i, dx_i), each uniform in [-max_shift, max_shift]; vacated pixels = fill."""

    def __init__(self, max_shift: int, rng: np.random.Generator, fill: float = 0.0):
        if not isinstance(max_shift, (int, np.integer)) or max_shift < 0:
            raise ValueError(f"RandomShift expects max_shift a non-negative int, got {max_shift!r}")
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"RandomShift expects rng a np.random.Generator, got {type(rng).__name__}")
        self.max_shift, self.rng, self.fill = int(max_shift), rng, fill

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if x.ndim != 4:
            raise ValueError(f"RandomShift expects images (N, C, H, W), got {x.shape}")
        m = self.max_shift
        n, _, height, width = x.shape
        padded = np.pad(x, ((0, 0), (0, 0), (m, m), (m, m)), constant_values=self.fill)
        dy = self.rng.integers(-m, m + 1, size=n)
        dx = self.rng.integers(-m, m + 1, size=n)
        out = np.empty_like(x)
        for sy in range(-m, m + 1):          # one slice per distinct shift, not one per image
            for sx in range(-m, m + 1):
                chosen = (dy == sy) & (dx == sx)
                if chosen.any():
                    out[chosen] = padded[chosen, :, m - sy:m - sy + height, m - sx:m - sx + width]
        return out

    def __repr__(self) -> str:
        return f"RandomShift(max_shift={self.max_shift})"
