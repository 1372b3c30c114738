"""Function: one differentiable op = forward(ctx, *arrays) + backward(ctx, grad).

A Function never sees Tensors: `apply` unwraps them, calls `forward` on plain
ndarrays, and wraps the result in a Tensor that remembers the Function instance
(the "ctx") so that `Tensor.backward` can call `backward` later.
"""
from __future__ import annotations

import numpy as np

from tinyq import autograd_state
from tinyq.tensor import Tensor


def unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """d(broadcast_to(x, grad.shape))/dx: sum grad over the axes that broadcasting created or stretched.

    Broadcasting copies x along new leading axes and along axes where x has size 1;
    the chain rule adds up the gradient of every copy, so we sum those axes away.
    """
    ### BEGIN SOLUTION 1.1
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:                                      # axes broadcasting prepended
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:                                      # size-1 axes broadcasting stretched
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad
    ### END SOLUTION


class Function:
    """Base class of every op. Subclasses define two static methods:

    forward(ctx, *arrays, **options) -> ndarray
    backward(ctx, grad) -> one gradient (ndarray or None) per positional input
    """

    saved_tensors = ()     # arrays kept for backward (set by save_for_backward)
    inputs = ()            # the Tensors (or constants) forward was called with
    keeps_format = True    # a result computed from bf16/fp8 tensors is rounded back onto their grid

    def save_for_backward(self, *arrays) -> None:
        self.saved_tensors = arrays

    @staticmethod
    def forward(ctx, *arrays, **options):  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad):  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **options):
        """Run forward on the inputs' arrays; record the graph edge if any input needs a gradient."""
        ctx = cls()
        arrays, any_requires_grad, fmt = [], False, None
        for t in inputs:                   # one pass: unwrap Tensors, note whether any wants a gradient
            if isinstance(t, Tensor):
                arrays.append(t.data)
                any_requires_grad = any_requires_grad or t.requires_grad
                if fmt is None and t.fmt is not None:
                    fmt = t.fmt
            else:
                arrays.append(t)
        out = cls.forward(ctx, *arrays, **options)
        if fmt is not None and cls.keeps_format:
            out = _back_on_grid(cls, inputs, out, fmt)
        result = Tensor._wrap(out, ctx if any_requires_grad and autograd_state.grad_enabled else None)
        if result._ctx is not None:
            ctx.inputs = inputs
        if fmt is not None and cls.keeps_format:
            result.fmt = fmt
        return result


def _back_on_grid(cls, inputs, out, fmt):
    """Simulated formats keep their grid: round a float32 result to nearest-even on fmt (no gradient change:
    the rounding is straight-through). Mixing a format with plain float32 or another format is an error."""
    from tinyq.formats.floats import round_to
    for t in inputs:
        if isinstance(t, Tensor) and t.data.dtype.kind == "f" and t.fmt != fmt:
            raise TypeError(f"{cls.__name__} expects tensors of one number format, got {fmt.name} and "
                            f"{t.fmt.name if t.fmt is not None else t.data.dtype}; convert one explicitly "
                            f"with .to(...)")
    return round_to(out, fmt) if out.dtype == np.float32 else out
