"""Function: one differentiable op = forward(ctx, *arrays) + backward(ctx, grad).

A Function never sees Tensors: `apply` unwraps them, calls `forward` on plain
ndarrays, wraps the result in a Tensor and, if any input wants a gradient,
records the Function instance (the "ctx") on it so that `Tensor.backward` can
call `backward` later. That is all `apply` does.

Function modes: the one extension point
---------------------------------------
Layers above the core (simulated number formats in tinyq.lowp, autocast in
tinyq.amp) change what ops do without the core knowing about them, through a
stack of *function modes* (the idea of PyTorch's TorchFunctionMode). A mode is
any object with

    mode(function_cls, apply, *inputs, **options) -> Tensor

While it is active, every `SomeFunction.apply(*inputs, **options)` becomes that
call: the mode may change the inputs, call `apply(*inputs, **options)` (the
next mode out, or the plain apply above) any number of times, and change the
result. During its own call the mode is taken off the stack, so the ops it runs
itself (casts, roundings) do not come back to it. Modes nest: the innermost
(last entered) mode is called first.

    with SomeMode():          # FunctionMode.__enter__/__exit__ push and pop it
        y = model(x)
    install_mode(mode)        # a mode that stays on from now on (outermost)

Two users, as examples of the contract:
- tinyq.lowp keeps bf16/fp8 tensors on their grid: for a Function other than
  the casts, it rounds the float32 result onto the inputs' format and tags it.
- an autocast (tinyq.amp) casts the float inputs of chosen Function classes
  (ops.Linear, ops.MatMul, convolution.Conv2d) to a low-precision format, calls
  apply, and lets every other Function (sums, softmax, the loss) run in fp32:

      class Autocast(FunctionMode):
          def __call__(self, function, apply, *inputs, **options):
              if function in self.functions:
                  inputs = [to_low(t) if is_float_tensor(t) else t for t in inputs]
              return apply(*inputs, **options)
"""
from __future__ import annotations

import numpy as np

from tinyq import autograd_state
from tinyq.tensor import Tensor

_modes: list = []        # the active function modes, outermost first


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


def needs_grad(ctx, i: int) -> bool:
    """Does positional input i of this op want a gradient? (saves work for constants)."""
    inputs = ctx.inputs
    return i < len(inputs) and isinstance(inputs[i], Tensor) and inputs[i].requires_grad


class Function:
    """Base class of every op. Subclasses define two static methods:

    forward(ctx, *arrays, **options) -> ndarray
    backward(ctx, grad) -> one gradient (ndarray or None) per positional input
    """

    saved_tensors = ()     # arrays kept for backward (set by save_for_backward)
    inputs = ()            # the Tensors (or constants) forward was called with

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
        """Unwrap the Tensors, run forward on their arrays, wrap the result, record the graph edge if needed."""
        if _modes:
            return _apply_through_mode(cls, inputs, options)
        ctx = cls()
        arrays = [t.data if isinstance(t, Tensor) else t for t in inputs]
        out = cls.forward(ctx, *arrays, **options)
        record = autograd_state.grad_enabled and any(isinstance(t, Tensor) and t.requires_grad for t in inputs)
        if record:
            ctx.inputs = inputs
        return Tensor._wrap(out, ctx if record else None)


# ------------------------------------------------------------------ function modes
class FunctionMode:
    """Base class of a function mode (see the module docstring): `with mode:` makes it active.

    The default __call__ changes nothing; subclasses override it.
    """

    def __call__(self, function, apply, *inputs, **options):
        return apply(*inputs, **options)

    def __enter__(self):
        _modes.append(self)
        return self

    def __exit__(self, *exc_info):
        remove_mode(self)
        return False


def _apply_through_mode(cls, inputs, options):
    """The innermost mode handles the call; while it runs it is off the stack (so cls.apply reaches the next one)."""
    index = len(_modes) - 1
    mode = _modes.pop()
    try:
        return mode(cls, cls.apply, *inputs, **options)
    finally:
        _modes.insert(index, mode)


def install_mode(mode) -> None:
    """Keep `mode` active from now on, outermost (under every `with` mode); installing it twice does nothing."""
    if not callable(mode):
        raise TypeError(f"a function mode must be callable as mode(function, apply, *inputs, **options), "
                        f"got {type(mode).__name__}")
    if not any(m is mode for m in _modes):
        _modes.insert(0, mode)


def remove_mode(mode) -> None:
    """Take `mode` off the stack (a `with` block does this on exit)."""
    for i, m in enumerate(_modes):
        if m is mode:
            del _modes[i]
            return
    raise ValueError(f"function mode {mode!r} is not active")


def active_modes() -> tuple:
    """The active function modes, outermost first."""
    return tuple(_modes)
