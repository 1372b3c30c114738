"""Weight initialisers. Each fills an ndarray drawn from an explicit np.random.Generator.

fan_in = in_channels * kernel area (in_features for Linear), fan_out likewise;
gain(relu) = sqrt(2) (He et al. 2015), gain(linear) = 1.
"""
from __future__ import annotations

import numpy as np

from tinyq.tensor import _rng


def fans(shape: tuple) -> tuple:
    """(fan_in, fan_out) of a weight of shape (out, in, *kernel)."""
    if len(shape) < 2:
        raise ValueError(f"fan_in/fan_out need a weight with at least 2 dimensions, got shape {shape}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def gain(nonlinearity: str = "linear", slope: float = 0.0) -> float:
    gains = {"linear": 1.0, "sigmoid": 1.0, "tanh": 5.0 / 3, "relu": np.sqrt(2.0),
             "leaky_relu": np.sqrt(2.0 / (1 + slope ** 2))}
    if nonlinearity not in gains:
        raise ValueError(f"unknown nonlinearity {nonlinearity!r}; expected one of {sorted(gains)}")
    return float(gains[nonlinearity])


def kaiming_uniform(shape, nonlinearity="relu", slope=0.0, rng=None, dtype=np.float32):
    """U(-b, b), b = gain sqrt(3 / fan_in)."""
    bound = gain(nonlinearity, slope) * np.sqrt(3.0 / fans(shape)[0])
    return _rng(rng).uniform(-bound, bound, size=shape).astype(dtype)


def kaiming_normal(shape, nonlinearity="relu", slope=0.0, rng=None, dtype=np.float32):
    """N(0, std^2), std = gain / sqrt(fan_in)."""
    std = gain(nonlinearity, slope) / np.sqrt(fans(shape)[0])
    return (_rng(rng).standard_normal(size=shape) * std).astype(dtype)


def xavier_uniform(shape, gain_value=1.0, rng=None, dtype=np.float32):
    """U(-b, b), b = gain sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010)."""
    fan_in, fan_out = fans(shape)
    bound = gain_value * np.sqrt(6.0 / (fan_in + fan_out))
    return _rng(rng).uniform(-bound, bound, size=shape).astype(dtype)


def xavier_normal(shape, gain_value=1.0, rng=None, dtype=np.float32):
    """N(0, std^2), std = gain sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = fans(shape)
    std = gain_value * np.sqrt(2.0 / (fan_in + fan_out))
    return (_rng(rng).standard_normal(size=shape) * std).astype(dtype)


def uniform(shape, bound, rng=None, dtype=np.float32):
    return _rng(rng).uniform(-bound, bound, size=shape).astype(dtype)


def zeros(shape, dtype=np.float32):
    return np.zeros(shape, dtype=dtype)
