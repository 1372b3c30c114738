"""Kernels: plain functions, a NumPy reference beside a numba kernel with the same signature.

numba is optional. `jit` compiles with numba (`nopython`, `cache=True`) when it is
installed; without numba, or with NUMBA_DISABLE_JIT=1, the decorated function stays
plain Python (correct, just slow). `JIT_AVAILABLE` tells callers whether the compiled
kernels are actually fast, so they can pick the NumPy reference otherwise.
This package imports only numpy and numba.
"""
from __future__ import annotations

try:
    import numba
except ImportError:  # pragma: no cover - numba is a declared dependency, but stay usable without it
    numba = None

JIT_AVAILABLE = numba is not None and not numba.config.DISABLE_JIT


def jit(function=None, **options):
    """numba.njit(cache=True, **options) when numba is installed, the function itself otherwise."""
    def decorate(fn):
        if numba is None:
            return fn
        return numba.njit(cache=True, **options)(fn)
    return decorate(function) if function is not None else decorate
