"""The global seeded np.random.Generator used when a function is given rng=None."""
import numpy as np

_generator = np.random.default_rng(0)


def manual_seed(seed: int) -> np.random.Generator:
    """Reset the global generator: the same seed gives the same numbers."""
    global _generator
    _generator = np.random.default_rng(seed)
    return _generator


def default_rng() -> np.random.Generator:
    return _generator
