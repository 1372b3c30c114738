"""Primitive differentiable ops: one Function each, one lowercase helper each.

Arithmetic and elementwise math live here; reductions and shape ops live in
shape_ops.py, activations and dropout in activations.py, and both are
re-exported, so `ops.sum`, `ops.relu`, ... work too.

Each Function states its forward and its local derivative side by side; the
chain rule (multiply by the incoming `grad`) and unbroadcasting happen here too,
so that `Tensor.backward` only has to add gradients up.
"""
from __future__ import annotations

import numbers

import numpy as np

from tinyq.activations import (GELU, Dropout, LeakyReLU, ReLU, Sigmoid, Tanh, dropout, gelu,  # noqa: F401
                               leaky_relu, relu, sigmoid, tanh)
from tinyq.function import Function, needs_grad, unbroadcast  # noqa: F401  (needs_grad: used by the exercises)
from tinyq.shape_ops import (Concatenate, Expand, GetItem, Max, Mean, Pad, Permute, Reshape, Stack, Sum,  # noqa: F401
                             Var, _as_float, _check_same_dtype, _tensor_arg, concatenate, expand, flatten, getitem, max, mean, min,
                             pad, permute, reshape, stack, sum, transpose, var)
from tinyq.tensor import FLOAT_DTYPES, Tensor


def _constant(value, dtype):
    """A non-Tensor operand: Python numbers stay weakly typed, arrays take the tensor's dtype."""
    if isinstance(value, (bool, numbers.Integral, float)) and not isinstance(value, np.generic):
        return value
    if isinstance(value, (np.ndarray, np.generic, list, tuple, numbers.Number)):
        return np.asarray(value, dtype=dtype)
    raise TypeError(f"expected a Tensor, ndarray or number, got {type(value).__name__}")


def _is_float_constant(value) -> bool:
    return isinstance(value, float) or (isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind == "f")


def _operands(name: str, a, b):
    """Check and convert the two operands of a binary op (at least one is a Tensor).

    An integer tensor meets a float constant, or is divided: it becomes float32 first (never float64).
    """
    for_float = name in ("div", "pow") or _is_float_constant(a) or _is_float_constant(b)
    if for_float:
        a = _as_float(a) if isinstance(a, Tensor) else a
        b = _as_float(b) if isinstance(b, Tensor) else b
    if isinstance(a, Tensor):
        if isinstance(b, Tensor):
            if a.data.dtype != b.data.dtype:
                if a.data.dtype in FLOAT_DTYPES and b.data.dtype in FLOAT_DTYPES:
                    raise TypeError(f"{name} expects tensors of one float dtype, got {a.data.dtype} and "
                                    f"{b.data.dtype}; convert one explicitly with .to(...)")
                if b.data.dtype not in FLOAT_DTYPES:
                    b = b.data.astype(a.data.dtype)
                else:
                    a = a.data.astype(b.data.dtype)
            return a, b
        return a, _constant(b, a.data.dtype)
    if isinstance(b, Tensor):
        return _constant(a, b.data.dtype), b
    raise TypeError(f"{name} expects at least one Tensor, got {type(a).__name__} and {type(b).__name__}")


# ------------------------------------------------------------------ arithmetic
class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (np.shape(a), np.shape(b))
        return a + b

    @staticmethod
    def backward(ctx, grad):                       # d(a+b)/da = 1, d(a+b)/db = 1
        shape_a, shape_b = ctx.shapes
        return unbroadcast(grad, shape_a), unbroadcast(grad, shape_b)


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (np.shape(a), np.shape(b))
        return a - b

    @staticmethod
    def backward(ctx, grad):                       # d(a-b)/da = 1, d(a-b)/db = -1
        shape_a, shape_b = ctx.shapes
        return unbroadcast(grad, shape_a), unbroadcast(-grad, shape_b)


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, grad):                       # d(ab)/da = b, d(ab)/db = a
        a, b = ctx.saved_tensors
        ### BEGIN SOLUTION 1.2
        grad_a = unbroadcast(grad * b, np.shape(a)) if needs_grad(ctx, 0) else None
        grad_b = unbroadcast(grad * a, np.shape(b)) if needs_grad(ctx, 1) else None
        return grad_a, grad_b
        ### END SOLUTION


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a / b

    @staticmethod
    def backward(ctx, grad):                       # d(a/b)/da = 1/b, d(a/b)/db = -a/b^2
        a, b = ctx.saved_tensors
        grad_a = unbroadcast(grad / b, np.shape(a)) if needs_grad(ctx, 0) else None
        grad_b = unbroadcast(-grad * a / (b * b), np.shape(b)) if needs_grad(ctx, 1) else None
        return grad_a, grad_b


class Neg(Function):
    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, grad):
        return -grad


class Pow(Function):
    @staticmethod
    def forward(ctx, a, b):
        out = a ** b
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx, grad):                       # d(a^b)/da = b a^(b-1) (0 where b = 0), d(a^b)/db = a^b ln a (0 where a^b = 0)
        a, b, out = ctx.saved_tensors
        grad_a = grad_b = None
        with np.errstate(divide="ignore", invalid="ignore"):
            if needs_grad(ctx, 0):
                local = np.where(b == 0, 0, b * a ** (b - 1))
                grad_a = unbroadcast((grad * local).astype(grad.dtype, copy=False), np.shape(a))
            if needs_grad(ctx, 1):
                local = np.where(out == 0, 0, out * np.log(a))
                grad_b = unbroadcast((grad * local).astype(grad.dtype, copy=False), np.shape(b))
        return grad_a, grad_b


class MatMul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a @ b

    @staticmethod
    def backward(ctx, grad):                       # C = AB: dA = dC B^T, dB = A^T dC (batch dims summed)
        a, b = ctx.saved_tensors
        ### BEGIN SOLUTION 1.3
        grad_a = unbroadcast(grad @ np.swapaxes(b, -1, -2), a.shape) if needs_grad(ctx, 0) else None
        grad_b = unbroadcast(np.swapaxes(a, -1, -2) @ grad, b.shape) if needs_grad(ctx, 1) else None
        return grad_a, grad_b
        ### END SOLUTION


class VectorMatMul(Function):
    """a @ b with a 1-D operand: a (k,) is the row (1, k), b (k,) the column (k, 1); that axis is dropped after."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (a.shape, b.shape)
        a2 = a.reshape(1, -1) if a.ndim == 1 else a
        b2 = b.reshape(-1, 1) if b.ndim == 1 else b
        ctx.save_for_backward(a2, b2)              # MatMul.backward reads these
        out = a2 @ b2
        ctx.matrix_shape = out.shape
        return out.reshape(out.shape[:-2] + (() if a.ndim == 1 else out.shape[-2:-1])
                           + (() if b.ndim == 1 else out.shape[-1:]))

    @staticmethod
    def backward(ctx, grad):                       # the 2-D rule on the promoted operands, then drop the axes
        grad_a, grad_b = MatMul.backward(ctx, grad.reshape(ctx.matrix_shape))
        shape_a, shape_b = ctx.shapes
        return (None if grad_a is None else grad_a.reshape(shape_a),
                None if grad_b is None else grad_b.reshape(shape_b))


class Linear(Function):
    """y = x W^T + b fused into one op (W: (out, in)); measurably faster than matmul + transpose + add.

    dx = dy W,   dW = dy^T x (summed over leading dims),   db = sum of dy over leading dims.
    Computing dW as dy^T x gives it directly in W's (out, in) layout: no transposed copy.
    """

    @staticmethod
    def forward(ctx, x, weight, bias=None):
        ctx.save_for_backward(x, weight)
        out = x @ weight.T
        if bias is not None:
            out += bias                            # in place: out is a fresh array
        return out

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        ### BEGIN SOLUTION 2.4
        rows = grad.reshape(-1, grad.shape[-1])    # leading dims flattened: (N, out)
        grad_x = grad @ weight if needs_grad(ctx, 0) else None
        grad_w = rows.T @ x.reshape(-1, x.shape[-1]) if needs_grad(ctx, 1) else None
        grad_b = rows.sum(axis=0) if len(ctx.inputs) > 2 and needs_grad(ctx, 2) else None
        return grad_x, grad_w, grad_b
        ### END SOLUTION


# ------------------------------------------------------------- elementwise math
class Exp(Function):
    @staticmethod
    def forward(ctx, a):
        out = np.exp(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):                       # d exp(a) = exp(a)
        (out,) = ctx.saved_tensors
        return grad * out


class Log(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return np.log(a)

    @staticmethod
    def backward(ctx, grad):                       # d log(a) = 1/a
        (a,) = ctx.saved_tensors
        return grad / a


class Sqrt(Function):
    @staticmethod
    def forward(ctx, a):
        out = np.sqrt(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):                       # d sqrt(a) = 1 / (2 sqrt(a))
        (out,) = ctx.saved_tensors
        return grad / (2 * out)


class Abs(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return np.abs(a)

    @staticmethod
    def backward(ctx, grad):                       # d|a| = sign(a), 0 at 0
        (a,) = ctx.saved_tensors
        return grad * np.sign(a)


class Maximum(Function):
    """maximum(a, b) elementwise (or minimum, with largest=False)."""

    @staticmethod
    def forward(ctx, a, b, *, largest=True):
        ctx.save_for_backward(a, b)
        ctx.largest = largest
        return np.maximum(a, b) if largest else np.minimum(a, b)

    @staticmethod
    def backward(ctx, grad):                       # to the winning input; ties split evenly
        a, b = ctx.saved_tensors
        wins = (a > b) if ctx.largest else (a < b)
        share_a = np.where(a == b, grad.dtype.type(0.5), wins.astype(grad.dtype))   # in grad's dtype: no upcast
        return (unbroadcast(grad * share_a, np.shape(a)),
                unbroadcast(grad * (1 - share_a), np.shape(b)))


class Where(Function):
    @staticmethod
    def forward(ctx, a, b, *, condition):
        ctx.condition = condition
        ctx.shapes = (np.shape(a), np.shape(b))
        return np.where(condition, a, b)

    @staticmethod
    def backward(ctx, grad):                       # the gradient goes to whichever input was chosen
        zero = np.zeros((), dtype=grad.dtype)
        shape_a, shape_b = ctx.shapes
        return (unbroadcast(np.where(ctx.condition, grad, zero), shape_a),
                unbroadcast(np.where(ctx.condition, zero, grad), shape_b))


class Clip(Function):
    @staticmethod
    def forward(ctx, a, *, lo, hi):
        ctx.save_for_backward(a)
        ctx.lo, ctx.hi = lo, hi
        return np.clip(a, lo, hi)

    @staticmethod
    def backward(ctx, grad):                       # 1 inside [lo, hi] (inclusive), 0 outside
        (a,) = ctx.saved_tensors
        inside = np.ones(a.shape, dtype=bool)
        if ctx.lo is not None:
            inside &= a >= ctx.lo
        if ctx.hi is not None:
            inside &= a <= ctx.hi
        return grad * inside


class Cast(Function):
    @staticmethod
    def forward(ctx, a, *, dtype):
        ctx.in_dtype = a.dtype
        return a.astype(dtype)

    @staticmethod
    def backward(ctx, grad):                       # the gradient goes back in the input's dtype
        return grad.astype(ctx.in_dtype)


class StraightThroughRound(Function):
    """forward: y = round(x), any rounding onto a grid (the `round` option, an array function);
    backward: dy/dx := mask(ctx, x), the straight-through estimator (Bengio et al. 2013).

    Rounding has derivative 0 almost everywhere, so training passes the gradient straight
    through it. The mask says where: None (the default) everywhere, a subclass may return a
    0/1 array (e.g. 0 where a quantizer clamps). The gradient goes back in the input's dtype.
    Used for number formats (tinyq.lowp.RoundToFormat) and fake quantization (FakeQuantizeSTE).
    """

    in_dtype = None

    @staticmethod
    def forward(ctx, x, *, round):  # noqa: A002 - the rounding function
        ctx.save_for_backward(x)
        ctx.in_dtype = x.dtype
        return round(x)

    @staticmethod
    def mask(ctx, x):
        """Where the gradient passes (None: everywhere)."""
        return None

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        mask = type(ctx).mask(ctx, x)
        grad = grad if mask is None else grad * mask
        return grad if ctx.in_dtype is None else grad.astype(ctx.in_dtype, copy=False)


class LogSoftmax(Function):
    """log_softmax(x)_i = x_i - max(x) - log sum_j exp(x_j - max(x))."""

    @staticmethod
    def forward(ctx, a, *, axis=-1):
        shifted = a - np.max(a, axis=axis, keepdims=True)
        out = shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))
        ctx.save_for_backward(out)
        ctx.axis = axis
        return out

    @staticmethod
    def backward(ctx, grad):                       # dL/dx = g - softmax(x) * sum(g)
        (out,) = ctx.saved_tensors
        ### BEGIN SOLUTION 2.2
        softmax = np.exp(out)
        return grad - softmax * np.sum(grad, axis=ctx.axis, keepdims=True)
        ### END SOLUTION


# --------------------------------------------------------- lowercase helpers
def add(a, b): return Add.apply(*_operands("add", a, b))
def sub(a, b): return Sub.apply(*_operands("sub", a, b))
def mul(a, b): return Mul.apply(*_operands("mul", a, b))
def div(a, b): return Div.apply(*_operands("div", a, b))
def pow(a, b): return Pow.apply(*_operands("pow", a, b))  # noqa: A001 - mirrors the math name
def neg(a): return Neg.apply(_tensor_arg("neg", a))
def exp(a): return Exp.apply(_tensor_arg("exp", a))
def log(a): return Log.apply(_tensor_arg("log", a))
def sqrt(a): return Sqrt.apply(_tensor_arg("sqrt", a))
def abs(a): return Abs.apply(_tensor_arg("abs", a))  # noqa: A001
def maximum(a, b): return Maximum.apply(*_operands("maximum", a, b))
def minimum(a, b): return Maximum.apply(*_operands("minimum", a, b), largest=False)
def log_softmax(a, axis=-1): return LogSoftmax.apply(_tensor_arg("log_softmax", a), axis=axis)


def matmul(a, b):
    """a @ b with NumPy's rules: batched over leading dims; 1-D operands become a row / a column."""
    a, b = _operands("matmul", a, b)
    shape_a = a.data.shape if isinstance(a, Tensor) else np.shape(a)
    shape_b = b.data.shape if isinstance(b, Tensor) else np.shape(b)
    if len(shape_a) == 0 or len(shape_b) == 0:
        raise ValueError(f"matmul expects at least 1-D operands, got shapes {shape_a} and {shape_b}")
    if shape_a[-1] != shape_b[-2 if len(shape_b) > 1 else 0]:
        raise ValueError(f"matmul expects a (..., n, k) @ (..., k, m), got shapes {shape_a} and {shape_b}")
    if len(shape_a) == 1 or len(shape_b) == 1:
        return VectorMatMul.apply(a, b)
    return MatMul.apply(a, b)


def linear(x, weight, bias=None):
    """y = x W^T + b with W of shape (out_features, in_features) as in PyTorch; x is (..., in_features)."""
    for name, t in (("input", x), ("weight", weight)) + ((("bias", bias),) if bias is not None else ()):
        if not isinstance(t, Tensor):
            raise TypeError(f"linear expects the {name} as a Tensor, got {type(t).__name__}")
    if weight.ndim != 2:
        raise ValueError(f"linear expects weight (out_features, in_features), got shape {weight.shape}")
    if x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear expects input (..., {weight.shape[1]}), got {x.shape}")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"linear expects bias ({weight.shape[0]},), got {bias.shape}")
    _check_same_dtype("linear", (x, weight, bias), "input, weight and bias")
    return Linear.apply(x, weight) if bias is None else Linear.apply(x, weight, bias)


def where(condition, a, b):
    """where(c, a, b)_i = a_i if c_i else b_i; the condition is a constant boolean array."""
    condition = np.asarray(condition.data if isinstance(condition, Tensor) else condition, dtype=bool)
    a, b = _operands("where", a, b)
    return Where.apply(a, b, condition=condition)


def clip(a, lo=None, hi=None):
    if lo is None and hi is None:
        raise ValueError("clip needs at least one of lo, hi")
    return Clip.apply(_tensor_arg("clip", a), lo=lo, hi=hi)


def cast(a, dtype):
    """a in another NumPy dtype (differentiable); casting a bf16/fp8 tensor to float32 leaves its format."""
    dtype = np.dtype(dtype)
    if a.dtype == dtype and a.fmt is None:
        return a
    return Cast.apply(a, dtype=dtype)


_CONVERSIONS: dict = {}     # type of a conversion target (other than a NumPy dtype) -> function(t, target, mode, rng)


def register_conversion(target_type: type, convert) -> None:
    """Let `t.to(target)` accept targets of target_type: it calls convert(t, target, mode=..., rng=...).

    The core knows only NumPy dtypes; tinyq.lowp registers its number formats (FloatFormat) here.
    """
    _CONVERSIONS[target_type] = convert


def to(a, target, mode="nearest", rng=None):
    """Tensor.to: a NumPy float dtype casts; a registered target type (a number format such as floats.BF16,
    registered by tinyq.lowp) converts with its own function (mode "nearest" or "stochastic" with an rng)."""
    for target_type, convert in _CONVERSIONS.items():
        if isinstance(target, target_type):
            return convert(a, target, mode=mode, rng=rng)
    if mode != "nearest" or rng is not None:
        raise ValueError(f"rounding mode {mode!r} applies to number formats, not to the NumPy dtype {target}")
    return cast(a, target)


# ------------------------------------------------------------- Tensor methods
def _install_methods():
    def reflected(fn):
        return lambda self, other: fn(other, self)

    methods = {
        "__add__": add, "__radd__": reflected(add), "__sub__": sub, "__rsub__": reflected(sub),
        "__mul__": mul, "__rmul__": reflected(mul), "__truediv__": div, "__rtruediv__": reflected(div),
        "__pow__": pow, "__rpow__": reflected(pow), "__matmul__": matmul, "__rmatmul__": reflected(matmul),
        "__neg__": neg, "__getitem__": getitem,
        "exp": exp, "log": log, "sqrt": sqrt, "abs": abs, "relu": relu, "sigmoid": sigmoid, "tanh": tanh,
        "sum": sum, "mean": mean, "max": max, "min": min, "var": var, "clip": clip,
        "reshape": reshape, "flatten": flatten, "permute": permute, "transpose": transpose,
        "expand": expand, "matmul": matmul, "log_softmax": log_softmax,
        "maximum": maximum, "minimum": minimum, "pad": pad, "astype": cast, "to": to,
    }
    for name, fn in methods.items():
        setattr(Tensor, name, fn)

    def argmax(self, axis=None):
        return np.argmax(self.data, axis=axis)

    def compare(op):
        return lambda self, other: Tensor(op(self.data, other.data if isinstance(other, Tensor) else other))

    Tensor.argmax = argmax
    Tensor.__lt__, Tensor.__le__ = compare(np.less), compare(np.less_equal)
    Tensor.__gt__, Tensor.__ge__ = compare(np.greater), compare(np.greater_equal)
    Tensor.__eq__, Tensor.__ne__ = compare(np.equal), compare(np.not_equal)     # elementwise, as in PyTorch
    Tensor.__hash__ = object.__hash__                                           # hashed by identity
    Tensor.view = reshape


_install_methods()
