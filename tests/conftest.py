"""Shared fixtures. The `exercise(id)` marker is registered in pyproject.toml."""
import numpy as np
import pytest

# tests/fixtures holds a miniature repository (with its own tests) for test_grading.py;
# its tests are run by the grader in a subprocess, never collected as part of this suite.
collect_ignore_glob = ["fixtures/*"]


@pytest.fixture
def rng():
    """A fresh, seeded generator: np.random.default_rng(0)."""
    return np.random.default_rng(0)
