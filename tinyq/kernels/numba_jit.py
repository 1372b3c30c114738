"""jit: numba.njit(cache=True) when numba is installed and enabled, else the plain Python function.

Its own module so that the kernel modules can import it without importing the kernels package,
whose __init__ re-exports those kernels (an import circle otherwise). Imports only numba.
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
