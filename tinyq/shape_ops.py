"""Reductions and shape ops: ops that sum, pick or move elements (one Function each, one helper each).

Their backward passes route the gradient back to where each element came from:
sum broadcasts it, max sends it to the winners, reshape/permute undo themselves,
getitem scatters it (repeated indices add up).
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from tinyq.function import Function, unbroadcast
from tinyq.tensor import Tensor


def _tensor_arg(name, a) -> Tensor:
    if not isinstance(a, Tensor):
        raise TypeError(f"{name} expects a Tensor, got {type(a).__name__}")
    return a



# ------------------------------------------------------------------ reductions
def _axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis)
    for ax in axes:
        if not -ndim <= ax < ndim:
            raise ValueError(f"axis {ax} is out of range for a tensor with {ndim} dimensions")
    return tuple(sorted(ax % ndim for ax in axes))


def _expand_reduced(grad, shape, axes, keepdims):
    """Reshape a reduced gradient so it broadcasts against the input of shape `shape`."""
    if not keepdims:
        grad = np.expand_dims(grad, axes)
    return grad


class Sum(Function):
    @staticmethod
    def forward(ctx, a, *, axis=None, keepdims=False):
        ctx.shape, ctx.axes, ctx.keepdims = a.shape, _axes(axis, a.ndim), keepdims
        return a.sum(axis=ctx.axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, grad):                       # every summed element gets the same gradient
        grad = _expand_reduced(grad, ctx.shape, ctx.axes, ctx.keepdims)
        return np.broadcast_to(grad, ctx.shape)


class Mean(Function):
    @staticmethod
    def forward(ctx, a, *, axis=None, keepdims=False):
        ctx.shape, ctx.axes, ctx.keepdims = a.shape, _axes(axis, a.ndim), keepdims
        ctx.count = math.prod(a.shape[ax] for ax in ctx.axes)
        return a.mean(axis=ctx.axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, grad):                       # d mean / d a_i = 1/n
        grad = _expand_reduced(grad, ctx.shape, ctx.axes, ctx.keepdims)
        return np.broadcast_to(grad / grad.dtype.type(ctx.count), ctx.shape)


class Max(Function):
    """max (or min, with largest=False) over axes."""

    @staticmethod
    def forward(ctx, a, *, axis=None, keepdims=False, largest=True):
        ctx.axes, ctx.keepdims = _axes(axis, a.ndim), keepdims
        out = (np.max if largest else np.min)(a, axis=ctx.axes, keepdims=True)
        ctx.save_for_backward(a, out)
        return out if keepdims else np.squeeze(out, ctx.axes)

    @staticmethod
    def backward(ctx, grad):                       # to the extreme elements, ties split evenly
        a, out = ctx.saved_tensors
        grad = _expand_reduced(grad, a.shape, ctx.axes, ctx.keepdims)
        winners = (a == out)
        count = np.sum(winners, axis=ctx.axes, keepdims=True)
        return grad * winners / count.astype(grad.dtype)


class Var(Function):
    @staticmethod
    def forward(ctx, a, *, axis=None, keepdims=False, correction=0):
        ctx.axes, ctx.keepdims = _axes(axis, a.ndim), keepdims
        n = math.prod(a.shape[ax] for ax in ctx.axes)
        if n - correction <= 0:
            raise ValueError(f"var over {n} elements with correction={correction} divides by zero")
        centered = a - np.mean(a, axis=ctx.axes, keepdims=True)
        ctx.save_for_backward(centered)
        ctx.denominator = n - correction
        return np.sum(centered * centered, axis=ctx.axes, keepdims=keepdims) / a.dtype.type(n - correction)

    @staticmethod
    def backward(ctx, grad):                       # d var / d a_i = 2 (a_i - mean) / (n - correction)
        (centered,) = ctx.saved_tensors
        grad = _expand_reduced(grad, centered.shape, ctx.axes, ctx.keepdims)
        return grad * centered * grad.dtype.type(2 / ctx.denominator)


# ---------------------------------------------------------------------- shapes
class Reshape(Function):
    @staticmethod
    def forward(ctx, a, *, shape):
        ctx.shape = a.shape
        try:
            return a.reshape(shape)
        except ValueError:
            raise ValueError(f"cannot reshape a tensor of shape {a.shape} ({a.size} elements) "
                             f"into shape {tuple(shape)}") from None

    @staticmethod
    def backward(ctx, grad):
        return grad.reshape(ctx.shape)


class Permute(Function):
    @staticmethod
    def forward(ctx, a, *, axes):
        if sorted(ax % a.ndim for ax in axes) != list(range(a.ndim)):
            raise ValueError(f"permute expects a permutation of {a.ndim} axes, got {tuple(axes)}")
        ctx.axes = axes
        return np.transpose(a, axes)

    @staticmethod
    def backward(ctx, grad):                       # apply the inverse permutation
        return np.transpose(grad, np.argsort([ax % grad.ndim for ax in ctx.axes]))


class Expand(Function):
    @staticmethod
    def forward(ctx, a, *, shape):
        ctx.shape = a.shape
        return np.broadcast_to(a, shape)

    @staticmethod
    def backward(ctx, grad):
        return unbroadcast(grad, ctx.shape)


def _is_basic_index(index) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(p, (slice, numbers.Integral, type(None), type(Ellipsis))) for p in parts)


class GetItem(Function):
    @staticmethod
    def forward(ctx, a, *, index):
        ctx.shape, ctx.dtype, ctx.index = a.shape, a.dtype, index
        return a[index]

    @staticmethod
    def backward(ctx, grad):                       # scatter the gradient back; repeated indices add up
        full = np.zeros(ctx.shape, dtype=grad.dtype)
        if _is_basic_index(ctx.index):
            full[ctx.index] = grad
        else:
            np.add.at(full, ctx.index, grad)
        return full


class Concatenate(Function):
    @staticmethod
    def forward(ctx, *arrays, axis=0):
        ctx.axis = axis
        ctx.splits = np.cumsum([a.shape[axis] for a in arrays])[:-1]
        return np.concatenate(arrays, axis=axis)

    @staticmethod
    def backward(ctx, grad):
        return tuple(np.split(grad, ctx.splits, axis=ctx.axis))


class Stack(Function):
    @staticmethod
    def forward(ctx, *arrays, axis=0):
        ctx.axis, ctx.count = axis, len(arrays)
        return np.stack(arrays, axis=axis)

    @staticmethod
    def backward(ctx, grad):
        return tuple(np.take(grad, i, axis=ctx.axis) for i in range(ctx.count))


class Pad(Function):
    @staticmethod
    def forward(ctx, a, *, pad_width, value=0.0):
        ctx.slices = tuple(slice(before, before + n) for (before, _), n in zip(pad_width, a.shape))
        return np.pad(a, pad_width, mode="constant", constant_values=value)

    @staticmethod
    def backward(ctx, grad):                       # keep the part that came from the input
        return grad[ctx.slices]


# --------------------------------------------------------- lowercase helpers
def sum(a, axis=None, keepdims=False):  # noqa: A001
    return Sum.apply(_tensor_arg("sum", a), axis=axis, keepdims=keepdims)


def _as_float(a: Tensor) -> Tensor:
    """An integer or boolean tensor becomes float32 (the default float dtype), never float64."""
    return a if a.data.dtype.kind in "fc" else Tensor(a.data.astype(np.float32))


def mean(a, axis=None, keepdims=False):
    return Mean.apply(_as_float(_tensor_arg("mean", a)), axis=axis, keepdims=keepdims)


def max(a, axis=None, keepdims=False):  # noqa: A001
    return Max.apply(_tensor_arg("max", a), axis=axis, keepdims=keepdims)


def min(a, axis=None, keepdims=False):  # noqa: A001
    return Max.apply(_tensor_arg("min", a), axis=axis, keepdims=keepdims, largest=False)


def var(a, axis=None, keepdims=False, correction=0):
    """Variance; correction=0 is the biased (population) estimate, 1 the unbiased one."""
    return Var.apply(_as_float(_tensor_arg("var", a)), axis=axis, keepdims=keepdims, correction=correction)


def reshape(a, *shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return Reshape.apply(_tensor_arg("reshape", a), shape=tuple(shape))


def flatten(a, start_dim=0, end_dim=-1):
    shape = a.shape
    start, end = start_dim % len(shape), end_dim % len(shape)
    new = shape[:start] + (int(np.prod(shape[start:end + 1])),) + shape[end + 1:]
    return reshape(a, new)


def permute(a, *axes):
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    return Permute.apply(_tensor_arg("permute", a), axes=tuple(axes))


def transpose(a, axis0=-2, axis1=-1):
    """Swap two axes (the last two by default; a 1-D tensor is returned as is)."""
    if a.ndim < 2:
        return a
    axes = list(range(a.ndim))
    axes[axis0], axes[axis1] = axes[axis1], axes[axis0]
    return permute(a, axes)


def expand(a, *shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    try:
        np.broadcast_shapes(a.shape, shape)
    except ValueError:
        raise ValueError(f"cannot expand shape {a.shape} to {tuple(shape)}") from None
    return Expand.apply(_tensor_arg("expand", a), shape=tuple(shape))


def getitem(a, index):
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return GetItem.apply(_tensor_arg("getitem", a), index=index)


def concatenate(tensors, axis=0):
    tensors = list(tensors)
    _check_same_dtype("concatenate", tensors)
    return Concatenate.apply(*tensors, axis=axis)


def stack(tensors, axis=0):
    tensors = list(tensors)
    _check_same_dtype("stack", tensors)
    return Stack.apply(*tensors, axis=axis)


def _check_same_dtype(name, tensors, what="tensors"):
    """One dtype among the Tensors (None and constants are skipped), else a TypeError naming them."""
    if not tensors:
        raise ValueError(f"{name} expects at least one tensor")
    dtypes = {t.dtype for t in tensors if isinstance(t, Tensor)}
    if len(dtypes) > 1:
        raise TypeError(f"{name} expects {what} of one dtype, got {sorted(str(d) for d in dtypes)}; "
                        f"convert one explicitly with .to(...)")


def pad(a, pad_width, value=0.0):
    """Constant padding; pad_width as in np.pad: ((before, after), ...) per axis."""
    pad_width = tuple((int(p[0]), int(p[1])) for p in np.broadcast_to(np.asarray(pad_width), (a.ndim, 2)))
    return Pad.apply(_tensor_arg("pad", a), pad_width=pad_width, value=value)
