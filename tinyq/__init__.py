"""tinyq: a from-scratch deep-learning engine in NumPy for learning how networks are made small and fast."""
from tinyq import ops  # noqa: F401  (installs the Tensor operators)
from tinyq.autograd_state import enable_grad, is_grad_enabled, no_grad  # noqa: F401
from tinyq.function import Function, unbroadcast  # noqa: F401
from tinyq.random import default_rng, manual_seed  # noqa: F401
from tinyq.serialize import load, save  # noqa: F401
from tinyq.tensor import (Tensor, arange, full, ones, ones_like, rand, rand_like, randn, randn_like,  # noqa: F401
                          tensor, zeros, zeros_like)
from tinyq import functional, nn, optim  # noqa: F401,E402
from tinyq import lowp  # noqa: F401,E402  (registers number formats for t.to(floats.BF16))

__version__ = "0.1.0"
from tinyq import allocator as _allocator  # noqa: F401,E402  (glibc malloc thresholds: no page faults per step)
