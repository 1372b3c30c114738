"""Check analytic gradients against central differences in float64.

    d f / d x_i  ≈  (f(x + eps e_i) - f(x - eps e_i)) / (2 eps)        error O(eps^2)

`gradcheck(fn, inputs)` reduces fn's output to a scalar with a fixed random
projection (so every output element matters), runs backward once, and compares
each input's gradient with the finite differences. `REGISTRY` lists a case for
every op so one parametrized test checks all of them.

`gradcheck_function(MyFunction, inputs)` checks one Function's `backward` by
calling it directly, without building a graph or walking it: use it while
writing a new op, before `Tensor.backward` (or anything else) is in the way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from tinyq import convolution, functional as F, ops
from tinyq.tensor import Tensor


class GradcheckError(AssertionError):
    """Analytic and numeric gradients disagree."""


def numeric_gradient(scalar_fn: Callable, arrays: list, index: int, eps: float) -> np.ndarray:
    """Central differences of the number scalar_fn(arrays) with respect to arrays[index] (changed in place)."""
    x = arrays[index]
    grad = np.zeros_like(x)
    flat, flat_grad = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + eps
        plus = scalar_fn(arrays)
        flat[i] = original - eps
        minus = scalar_fn(arrays)
        flat[i] = original
        flat_grad[i] = (plus - minus) / (2 * eps)
    return grad


def _compare(name: str, i: int, analytic, numeric: np.ndarray, atol: float, rtol: float) -> None:
    analytic = np.zeros_like(numeric) if analytic is None else np.asarray(analytic)
    if analytic.shape != numeric.shape:
        raise GradcheckError(f"{name}: gradient of input {i} has shape {analytic.shape}, expected {numeric.shape}")
    error = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
    if np.any(error > 0):
        worst = np.unravel_index(np.argmax(error), error.shape) if error.size else ()
        raise GradcheckError(
            f"{name}: gradient of input {i} (shape {numeric.shape}) is wrong at index "
            f"{tuple(int(j) for j in worst)}: analytic {analytic[worst]:.6g}, numeric {numeric[worst]:.6g} "
            f"(max abs difference {np.max(np.abs(analytic - numeric)):.3g})")


def gradcheck(fn: Callable, arrays: list, name: str = "fn", eps: float = 1e-6, atol: float = 1e-6,
              rtol: float = 1e-4, rng: np.random.Generator | None = None) -> None:
    """Raise GradcheckError naming the op, the input and the worst element if gradients disagree."""
    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    rng = rng if rng is not None else np.random.default_rng(0)
    inputs = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    out = fn(*inputs)
    if out.dtype != np.float64:
        raise GradcheckError(f"{name}: float64 inputs gave a {out.dtype} output (silent dtype change)")
    projection = rng.standard_normal(out.shape)
    (out * projection).sum().backward()

    def scalar(current):
        return np.sum(fn(*[Tensor(a) for a in current]).data * projection)
    for i, t in enumerate(inputs):
        _compare(name, i, t.grad, numeric_gradient(scalar, arrays, i, eps), atol, rtol)


def gradcheck_function(function, arrays: list, options: dict | None = None, *, name: str | None = None,
                       eps: float = 1e-6, atol: float = 1e-6, rtol: float = 1e-4,
                       rng: np.random.Generator | None = None) -> None:
    """Check function.backward(ctx, g) against central differences of function.forward, both called directly.

    Every array is an input that wants a gradient; `options` is the dict of forward's keyword options
    (kept apart from this checker's own eps/atol/rtol, so a forward option may be called `eps` too).
    """
    if options is not None and not isinstance(options, dict):
        raise TypeError(f"gradcheck_function expects options as a dict of forward's keyword options, "
                        f"got {type(options).__name__}")
    options = {} if options is None else options
    name = name or function.__name__
    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    rng = rng if rng is not None else np.random.default_rng(0)
    ctx = function()
    ctx.inputs = tuple(Tensor(a.copy(), requires_grad=True) for a in arrays)
    out = function.forward(ctx, *[a.copy() for a in arrays], **options)
    projection = rng.standard_normal(np.shape(out))
    grads = function.backward(ctx, projection)
    grads = grads if isinstance(grads, tuple) else (grads,)
    if len(grads) != len(arrays):
        raise GradcheckError(f"{name}.backward returned {len(grads)} gradients for {len(arrays)} inputs")

    def scalar(current):
        return np.sum(function.forward(function(), *[a.copy() for a in current], **options) * projection)
    for i, g in enumerate(grads):
        _compare(name, i, g, numeric_gradient(scalar, arrays, i, eps), atol, rtol)


# ------------------------------------------------------------------- registry
@dataclass(frozen=True)
class Case:
    """An op and a recipe for random float64 inputs (shapes drawn from `rng`)."""
    fn: Callable
    make_inputs: Callable


def _shape_pair(rng):
    """Two broadcast-compatible shapes, sometimes with size-1 axes and different ranks."""
    base = tuple(int(n) for n in rng.integers(1, 4, size=rng.integers(1, 4)))
    other = tuple(1 if rng.random() < 0.3 else n for n in base)
    other = other[int(rng.integers(0, len(other))):] if rng.random() < 0.5 else other
    return (base, other) if rng.random() < 0.5 else (other, base)


def _binary(rng, positive=False, apart=False):
    a_shape, b_shape = _shape_pair(rng)
    a, b = rng.standard_normal(a_shape), rng.standard_normal(b_shape)
    if positive:
        a, b = np.abs(a) + 0.5, np.abs(b) + 0.5
    if apart:                                      # keep a and b away from ties (kinks)
        b = b + np.where(np.abs(b - a.mean()) < 0.1, 0.3, 0.0)
    return [a, b]


def _away_from_zero(rng, shape):
    x = rng.standard_normal(shape)
    return x + np.sign(x) * 0.1


def _distinct(rng, shape):
    """Values with no ties (max and max-pool are differentiable there)."""
    return rng.permutation(np.prod(shape)).reshape(shape) * 0.1 + rng.uniform(0, 0.01, shape)


def _with_zeros(rng, shape):
    """Normal samples with about a third of them exactly 0 (where pow and friends have their corner cases)."""
    x = rng.standard_normal(shape)
    return np.where(rng.random(shape) < 0.35, 0.0, x)


def _tied_pair(rng):
    """Two arrays equal in some places (ties of maximum/minimum) and at least 0.3 apart elsewhere."""
    a = rng.standard_normal((2, 4))
    b = np.where(rng.random((2, 4)) < 0.5, a, a + rng.choice([-1.0, 1.0], (2, 4)) * rng.uniform(0.3, 1, (2, 4)))
    b[0, 0] = a[0, 0]
    return [a, b]


def _shape(rng, ndim=None):
    ndim = ndim or int(rng.integers(1, 4))
    return tuple(int(n) for n in rng.integers(1, 4, size=ndim))


REGISTRY = {
    "add": Case(ops.add, lambda r: _binary(r)),
    "sub": Case(ops.sub, lambda r: _binary(r)),
    "mul": Case(ops.mul, lambda r: _binary(r)),
    "div": Case(ops.div, lambda r: _binary(r, positive=True)),
    "pow": Case(ops.pow, lambda r: _binary(r, positive=True)),
    "pow_scalar": Case(lambda a: a ** 3.0, lambda r: [r.standard_normal(_shape(r))]),
    "pow_zero_exponent": Case(lambda a: a ** 0.0, lambda r: [_with_zeros(r, _shape(r))]),
    "pow_zero_base": Case(lambda b: 0.0 ** b, lambda r: [np.abs(r.standard_normal(_shape(r))) + 0.5]),
    "pow_base_with_zeros": Case(lambda a: a ** 2.0, lambda r: [_with_zeros(r, _shape(r))]),
    "neg": Case(ops.neg, lambda r: [r.standard_normal(_shape(r))]),
    "matmul": Case(ops.matmul, lambda r: [r.standard_normal((2, 3, 4)), r.standard_normal((4, 2))]),
    "matmul_batched": Case(ops.matmul, lambda r: [r.standard_normal((3, 1, 2, 4)), r.standard_normal((2, 4, 3))]),
    "matmul_vector": Case(ops.matmul, lambda r: [r.standard_normal((4,)), r.standard_normal((4, 3))]),
    "exp": Case(ops.exp, lambda r: [r.standard_normal(_shape(r))]),
    "log": Case(ops.log, lambda r: [np.abs(r.standard_normal(_shape(r))) + 0.5]),
    "sqrt": Case(ops.sqrt, lambda r: [np.abs(r.standard_normal(_shape(r))) + 0.5]),
    "abs": Case(ops.abs, lambda r: [_away_from_zero(r, _shape(r))]),
    "maximum": Case(ops.maximum, lambda r: _binary(r, apart=True)),
    "minimum": Case(ops.minimum, lambda r: _binary(r, apart=True)),
    "maximum_ties": Case(ops.maximum, lambda r: _tied_pair(r)),     # central differences at a tie: 1/2 each
    "minimum_ties": Case(ops.minimum, lambda r: _tied_pair(r)),
    "mul_zeros": Case(ops.mul, lambda r: [_with_zeros(r, (2, 3)), _with_zeros(r, (2, 3))]),
    "where": Case(lambda a, b: ops.where(np.array([True, False, True]), a, b),
                  lambda r: [r.standard_normal((2, 3)), r.standard_normal((1, 3))]),
    "clip": Case(lambda a: ops.clip(a, -0.5, 0.5), lambda r: [_away_from_zero(r, _shape(r)) * 0.7 + 0.03]),
    "relu": Case(ops.relu, lambda r: [_away_from_zero(r, _shape(r))]),
    "leaky_relu": Case(lambda a: ops.leaky_relu(a, 0.1), lambda r: [_away_from_zero(r, _shape(r))]),
    "sigmoid": Case(ops.sigmoid, lambda r: [r.standard_normal(_shape(r)) * 3]),
    "tanh": Case(ops.tanh, lambda r: [r.standard_normal(_shape(r))]),
    "gelu": Case(ops.gelu, lambda r: [r.standard_normal(_shape(r)) * 2]),
    "sum": Case(lambda a: ops.sum(a, axis=1, keepdims=True), lambda r: [r.standard_normal((2, 3, 2))]),
    "sum_all": Case(ops.sum, lambda r: [r.standard_normal(_shape(r))]),
    "mean": Case(lambda a: ops.mean(a, axis=(0, 2)), lambda r: [r.standard_normal((2, 3, 2))]),
    "max": Case(lambda a: ops.max(a, axis=1), lambda r: [_distinct(r, (2, 4, 3))]),
    "min": Case(lambda a: ops.min(a, axis=0, keepdims=True), lambda r: [_distinct(r, (3, 4))]),
    "var": Case(lambda a: ops.var(a, axis=0), lambda r: [r.standard_normal((4, 3))]),
    "var_unbiased": Case(lambda a: ops.var(a, axis=(0, 2), correction=1), lambda r: [r.standard_normal((3, 2, 2))]),
    "reshape": Case(lambda a: ops.reshape(a, (3, -1)), lambda r: [r.standard_normal((2, 3, 2))]),
    "permute": Case(lambda a: ops.permute(a, (2, 0, 1)), lambda r: [r.standard_normal((2, 3, 4))]),
    "transpose": Case(ops.transpose, lambda r: [r.standard_normal((2, 3, 4))]),
    "flatten": Case(lambda a: ops.flatten(a, 1), lambda r: [r.standard_normal((2, 3, 2))]),
    "expand": Case(lambda a: ops.expand(a, (2, 3, 4)), lambda r: [r.standard_normal((3, 1))]),
    "getitem_basic": Case(lambda a: a[1:, ::2], lambda r: [r.standard_normal((3, 5))]),
    "getitem_array": Case(lambda a: a[np.array([0, 2, 0]), np.array([1, 1, 3])], lambda r: [r.standard_normal((3, 4))]),
    "concatenate": Case(lambda a, b: ops.concatenate([a, b], axis=1),
                        lambda r: [r.standard_normal((2, 3)), r.standard_normal((2, 1))]),
    "stack": Case(lambda a, b: ops.stack([a, b], axis=1), lambda r: [r.standard_normal((2, 3))] * 1 +
                  [r.standard_normal((2, 3))]),
    "pad": Case(lambda a: ops.pad(a, ((1, 0), (2, 1)), value=0.5), lambda r: [r.standard_normal((2, 3))]),
    "dropout": Case(lambda a: ops.dropout(a, 0.4, rng=np.random.default_rng(7)), lambda r: [r.standard_normal((3, 4))]),
    "log_softmax": Case(lambda a: ops.log_softmax(a, axis=1), lambda r: [r.standard_normal((3, 5))]),
    "log_softmax_composite": Case(lambda a: a - ops.log(ops.exp(a).sum(axis=1, keepdims=True)),
                                  lambda r: [r.standard_normal((3, 5))]),
    "conv2d": Case(lambda x, w, b: convolution.conv2d(x, w, b, stride=1, padding=1),
                   lambda r: [r.standard_normal((2, 3, 5, 4)), r.standard_normal((4, 3, 3, 2)), r.standard_normal(4)]),
    "conv2d_strided_dilated": Case(lambda x, w: convolution.conv2d(x, w, stride=(2, 1), padding=(1, 2), dilation=2),
                                   lambda r: [r.standard_normal((1, 2, 6, 5)), r.standard_normal((3, 2, 2, 3))]),
    "conv2d_groups": Case(lambda x, w, b: convolution.conv2d(x, w, b, padding=1, groups=2),
                          lambda r: [r.standard_normal((2, 4, 4, 4)), r.standard_normal((6, 2, 3, 3)),
                                     r.standard_normal(6)]),
    "conv2d_depthwise": Case(lambda x, w: convolution.conv2d(x, w, stride=2, groups=3),
                             lambda r: [r.standard_normal((2, 3, 5, 5)), r.standard_normal((3, 1, 3, 3))]),
    "max_pool2d": Case(lambda x: convolution.max_pool2d(x, 2), lambda r: [_distinct(r, (2, 2, 4, 6))]),
    "max_pool2d_overlap": Case(lambda x: convolution.max_pool2d(x, 3, stride=2, padding=1),
                               lambda r: [_distinct(r, (1, 2, 5, 5))]),
    "avg_pool2d": Case(lambda x: convolution.avg_pool2d(x, 3, stride=2, padding=1),
                       lambda r: [r.standard_normal((2, 2, 5, 4))]),
    "adaptive_avg_pool2d": Case(lambda x: convolution.adaptive_avg_pool2d(x, (2, 3)),
                                lambda r: [r.standard_normal((2, 2, 5, 4))]),
    "global_avg_pool2d": Case(convolution.global_avg_pool2d, lambda r: [r.standard_normal((2, 3, 3, 2))]),
    # composites
    "softmax": Case(lambda a: F.softmax(a, axis=0), lambda r: [r.standard_normal((4, 3))]),
    "cross_entropy": Case(lambda a: F.cross_entropy(a, np.array([0, 2, 1])), lambda r: [r.standard_normal((3, 4))]),
    "cross_entropy_smooth_sum": Case(lambda a: F.cross_entropy(a, np.array([3, 0]), label_smoothing=0.1,
                                                               reduction="sum"), lambda r: [r.standard_normal((2, 4))]),
    "nll_loss": Case(lambda a: F.nll_loss(a, np.array([1, 0])), lambda r: [r.standard_normal((2, 3))]),
    "mse_loss": Case(F.mse_loss, lambda r: [r.standard_normal((3, 2)), r.standard_normal((3, 2))]),
    "kl_div": Case(lambda a, b: F.kl_div(ops.log_softmax(a), F.softmax(b)),
                   lambda r: [r.standard_normal((3, 4)), r.standard_normal((3, 4))]),
    "bce_with_logits": Case(lambda a: F.binary_cross_entropy_with_logits(a, np.array([[0.0, 1.0], [1.0, 0.2]])),
                            lambda r: [_away_from_zero(r, (2, 2))]),
    "linear": Case(F.linear, lambda r: [r.standard_normal((3, 4)), r.standard_normal((2, 4)), r.standard_normal(2)]),
}
