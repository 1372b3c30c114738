"""Tensor: one np.ndarray (`data`), its gradient (`grad`) and the Function that made it.

The whole of reverse-mode autodiff is `backward`: order the graph so that every
tensor comes after the tensors it was computed from, then walk that order
backwards, handing each Function the gradient of its output and adding the
gradients it returns into its inputs.

dtype rules (tested in tests/test_ops.py and tests/test_lowp.py):
- `tensor(x)`: an ndarray keeps its dtype; Python floats/lists become float32, ints int64.
- float16, float32 and float64 tensors compute in their own dtype; nothing becomes float64 silently.
- An op on two tensors of different float dtypes is a TypeError: convert explicitly with `.to(dtype)`.
- Constants (Python numbers, ndarrays) take the tensor's dtype.
- Gradients come back in each input's dtype and accumulate in the parameter's dtype.
- bf16/fp8 are float32 tensors with `fmt` set. The core only carries this tag (detach keeps it, repr shows
  it); tinyq.lowp keeps such tensors on their grid through a function mode (see tinyq/function.py).

Arithmetic operators and methods (+, @, .sum(), .astype(), .to(), ...) are installed by tinyq/ops.py,
which builds on this module: tensor.py imports no op.
"""
from __future__ import annotations

import numpy as np

from tinyq.random import default_rng


FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def _as_array(data, dtype=None) -> np.ndarray:
    """ndarrays keep their dtype; Python numbers and lists become float32 (or int64 if all integers)."""
    if isinstance(data, Tensor):
        data = data.data
    if isinstance(data, np.ndarray):
        array = data
    else:
        array = np.asarray(data)
        if array.dtype.kind == "f":
            array = array.astype(np.float32)
        elif array.dtype.kind == "b":
            pass
        elif array.dtype.kind in "iu":
            array = array.astype(np.int64)
        else:
            raise TypeError(f"tensor expects numbers or an ndarray, got {type(data).__name__} of dtype {array.dtype}")
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    return array


class Tensor:
    """An n-dimensional array that can record how it was computed."""

    __slots__ = ("data", "grad", "requires_grad", "_ctx", "fmt", "_retain_grad", "__weakref__")
    __array_ufunc__ = None  # make ndarray <op> Tensor defer to our reflected operators

    def __init__(self, data, requires_grad: bool = False, dtype=None, fmt=None):
        self.data = _as_array(data, dtype)
        if requires_grad and self.data.dtype not in FLOAT_DTYPES:
            raise TypeError(f"only float16/32/64 tensors can require gradients, got dtype {self.data.dtype}")
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._ctx = None          # the Function instance that produced this tensor (None for leaves)
        self.fmt = fmt            # simulated number format (bf16, fp8) or None
        self._retain_grad = False

    @classmethod
    def _wrap(cls, data: np.ndarray, ctx) -> "Tensor":
        """Fast constructor used by Function.apply: no conversion, no checks."""
        t = object.__new__(cls)
        t.data = data
        t.grad = None
        t.requires_grad = ctx is not None
        t._ctx = ctx
        t.fmt = None
        t._retain_grad = False
        return t

    # ----------------------------------------------------------------- properties
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return self.data.size

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    @property
    def T(self) -> "Tensor":
        return self.transpose()

    def __len__(self) -> int:
        return len(self.data)

    def __bool__(self) -> bool:
        """bool(t) of a one-element tensor; for more elements it is ambiguous, as in NumPy and PyTorch
        (comparisons are elementwise, so `a == b` is a tensor: use (a == b).all() or `a is b`)."""
        if self.data.size != 1:
            raise ValueError(f"the truth value of a tensor with {self.data.size} elements is ambiguous; "
                             f"use .any() or .all() on .data, or `is` to compare identity")
        return bool(self.data)

    def __repr__(self) -> str:
        extra = ", requires_grad=True" if self.requires_grad else ""
        if self.fmt is not None:
            extra += f", fmt={self.fmt.name}"
        body = np.array2string(self.data, separator=", ", precision=4, threshold=20, prefix="tensor(")
        return f"tensor({body}, dtype={self.data.dtype}{extra})"

    def numpy(self) -> np.ndarray:
        return self.data

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item() expects a tensor with one element, got shape {self.shape}")
        return self.data.item()

    def detach(self) -> "Tensor":
        """The same data, cut from the graph."""
        t = Tensor._wrap(self.data, None)
        t.fmt = self.fmt
        return t

    def requires_grad_(self, flag: bool = True) -> "Tensor":
        if flag and self.data.dtype not in FLOAT_DTYPES:
            raise TypeError(f"only float tensors can require gradients, got dtype {self.data.dtype}")
        self.requires_grad = flag
        return self

    def retain_grad(self) -> "Tensor":
        """Keep .grad on this non-leaf tensor after backward (leaves always keep it)."""
        self._retain_grad = True
        return self

    def zero_grad(self) -> None:
        self.grad = None

    # ------------------------------------------------------------------ autograd
    def backward(self, grad=None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's .grad that requires it."""
        if not self.requires_grad:
            raise RuntimeError("backward() called on a tensor that does not require grad "
                               "(no input had requires_grad=True, or it was computed under no_grad())")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward() without a gradient needs a scalar (one element), got shape "
                                   f"{self.shape}; pass grad= with the same shape")
            grad = np.ones_like(self.data)
        else:
            grad = _as_array(grad, self.data.dtype)
            if grad.shape != self.shape:
                raise ValueError(f"backward() grad must have shape {self.shape}, got {grad.shape}")

        grads = {id(self): grad}
        for node in reversed(topological_order(self)):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            ctx = node._ctx
            if ctx is None or node._retain_grad:
                if node.requires_grad:
                    if node.grad is None:   # a copy: backward may hand the same array to several inputs
                        node.grad = np.array(g, dtype=node.data.dtype, copy=True)
                    else:
                        node.grad = (node.grad + g).astype(node.data.dtype, copy=False)
                if ctx is None:
                    continue
            if ctx.saved_tensors is _FREED:
                raise RuntimeError("trying to backward through the graph a second time: its saved arrays were "
                                   "freed after the first backward(); call backward(retain_graph=True) the first time")
            input_grads = type(ctx).backward(ctx, g)
            if not isinstance(input_grads, tuple):
                input_grads = (input_grads,)
            if not retain_graph:
                ctx.saved_tensors = _FREED
            for t, gi in zip(ctx.inputs, input_grads):
                if gi is None or not isinstance(t, Tensor) or not t.requires_grad:
                    continue
                if gi.shape != t.data.shape:
                    raise RuntimeError(f"{type(ctx).__name__}.backward returned a gradient of shape {gi.shape} "
                                       f"for an input of shape {t.data.shape}")
                key = id(t)
                grads[key] = gi if key not in grads else grads[key] + gi


class _Freed(tuple):
    """Marker for saved arrays released after backward."""


_FREED = _Freed()


def topological_order(root: Tensor) -> list:
    """Every tensor that `root` depends on (and root), each after all of its inputs.

    Only tensors that require grad are visited; constants contribute no gradient.
    """
    ### BEGIN SOLUTION 1.4
    order, visited = [], set()
    stack = [(root, False)]                 # iterative depth-first search, no recursion limit
    while stack:
        node, children_done = stack.pop()
        if children_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))          # emit after all inputs are emitted
        if node._ctx is not None:
            for parent in node._ctx.inputs:
                if isinstance(parent, Tensor) and parent.requires_grad and id(parent) not in visited:
                    stack.append((parent, False))
    return order
    ### END SOLUTION


# ---------------------------------------------------------------------- creation
def tensor(data, requires_grad: bool = False, dtype=None) -> Tensor:
    """A new leaf Tensor; ndarrays keep their dtype, Python floats become float32."""
    if isinstance(data, Tensor):
        data = data.data.copy()
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


def zeros(*shape, dtype=np.float32, requires_grad=False) -> Tensor:
    return Tensor(np.zeros(_shape(shape), dtype=dtype), requires_grad=requires_grad)


def ones(*shape, dtype=np.float32, requires_grad=False) -> Tensor:
    return Tensor(np.ones(_shape(shape), dtype=dtype), requires_grad=requires_grad)


def full(shape, value, dtype=np.float32, requires_grad=False) -> Tensor:
    return Tensor(np.full(_shape((shape,)), value, dtype=dtype), requires_grad=requires_grad)


def arange(*args, dtype=np.float32) -> Tensor:
    return Tensor(np.arange(*args, dtype=dtype))


def randn(*shape, rng: np.random.Generator | None = None, dtype=np.float32, requires_grad=False) -> Tensor:
    """Standard normal samples drawn from `rng` (the global generator if None)."""
    rng = _rng(rng)
    return Tensor(rng.standard_normal(_shape(shape), dtype=np.float32).astype(dtype, copy=False),
                  requires_grad=requires_grad)


def rand(*shape, rng: np.random.Generator | None = None, dtype=np.float32, requires_grad=False) -> Tensor:
    """Uniform samples in [0, 1) drawn from `rng` (the global generator if None)."""
    rng = _rng(rng)
    return Tensor(rng.random(_shape(shape), dtype=np.float32).astype(dtype, copy=False),
                  requires_grad=requires_grad)


def zeros_like(t, requires_grad=False) -> Tensor:
    return Tensor(np.zeros_like(_as_array(t)), requires_grad=requires_grad)


def ones_like(t, requires_grad=False) -> Tensor:
    return Tensor(np.ones_like(_as_array(t)), requires_grad=requires_grad)


def randn_like(t, rng=None, requires_grad=False) -> Tensor:
    a = _as_array(t)
    return randn(*a.shape, rng=rng, dtype=a.dtype, requires_grad=requires_grad)


def rand_like(t, rng=None, requires_grad=False) -> Tensor:
    a = _as_array(t)
    return rand(*a.shape, rng=rng, dtype=a.dtype, requires_grad=requires_grad)


def _shape(shape) -> tuple:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(n) for n in shape)


def _rng(rng):
    if rng is None:
        return default_rng()
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng
