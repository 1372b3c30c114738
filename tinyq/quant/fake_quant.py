"""Fake quantization that can be trained through: x̂ = s·(clamp(round(x/s) + z, qmin, qmax) − z).

The forward pass rounds onto the integer grid and back, so the network sees exactly
the values an integer model would; the backward pass needs a gradient for `round`,
which is zero almost everywhere. Three answers, one autograd Function each:

    STE   straight-through estimator: treat round as the identity inside the range,
          gradient 0 where the value is clamped (Bengio et al. 2013; PyTorch's fake_quantize)
    LSQ   learned step size: s is a parameter with its own gradient, scaled by
          g = 1/sqrt(N·qmax) (Esser et al. 2019, "Learned Step Size Quantization")
    PACT  learned clipping level α for activations: y = clip(x, 0, α) quantized on
          [0, α] (Choi et al. 2018, "PACT: Parameterized Clipping Activation")

LSQ also takes a learned zero point for asymmetric grids (LSQ+, Bhalgat et al. 2020; as
torch.ao's _LearnableFakeQuantize, the zero point is a float rounded in forward).

These are the fake-quant Functions; the Modules around them (FakeQuantize with an observer,
LSQQuantizer, PACTQuantizer) live in tinyq/quant/quantizers.py.
"""
from __future__ import annotations

import math

import numpy as np

from tinyq.formats.affine import QParams, fake_quantize
from tinyq.formats.rounding import check_bits, integer_range, nearest_even
from tinyq.function import Function
from tinyq.ops import StraightThroughRound
from tinyq.tensor import Tensor

__all__ = ["FakeQuantizeSTE", "LSQFakeQuantize", "LSQPlusFakeQuantize", "PACTFakeQuantize", "PositiveStep",
           "fake_quantize_ste", "lsq_fake_quantize", "pact_fake_quantize", "lsq_grad_scale", "lsq_init_step_size",
           "positive_step", "positive_step_value", "STEP_FLOOR"]


# ------------------------------------------------------------------------------ Functions

class FakeQuantizeSTE(StraightThroughRound):
    """x̂ = s·(clamp(round(x/s) + z, qmin, qmax) − z);  ∂x̂/∂x = 1 where qmin ≤ round(x/s) + z ≤ qmax, else 0.

    Per-tensor or per-channel, as the QParams say. The gradient mask is taken on the
    rounded code before clamping, as PyTorch's fake_quantize_per_*_affine do: a value
    up to half a step beyond the last grid point still rounds onto the grid and still
    gets gradient 1. Rounding is half-to-even (rounding.nearest_even = np.rint, like nearbyint). One difference:
    PyTorch multiplies by a float32 1/s where tinyq divides by s (as affine.quantize does),
    so the two can round differently when x/s is within a float32 ulp of a half-integer.
    """

    @staticmethod
    def forward(ctx, x, *, qparams):
        ctx.qparams = qparams
        return StraightThroughRound.forward(ctx, x, round=lambda a: fake_quantize(a, qparams).astype(a.dtype, copy=False))

    @staticmethod
    def mask(ctx, x):                              # StraightThroughRound.backward returns grad * mask
        qparams = ctx.qparams
        scale, zero_point, _ = qparams.broadcast(x.ndim)
        ### BEGIN SOLUTION 7.1
        with np.errstate(over="ignore", invalid="ignore"):
            code = nearest_even(x.astype(np.float32, copy=False) / scale) + zero_point   # the code before clamping
        inside = (code >= qparams.qmin) & (code <= qparams.qmax)
        return inside
        ### END SOLUTION


def _step_shape(step_size: np.ndarray, ndim: int, axis: int | None) -> tuple:
    """Shape that broadcasts a scalar (axis None) or a (C,) step against an ndim-dimensional input."""
    if axis is None:
        return ()
    shape = [1] * ndim
    shape[axis] = step_size.size
    return tuple(shape)


class LSQFakeQuantize(Function):
    """x̂ = round(clamp(x/s, qmin, qmax))·s, with a learned step s (Esser et al. 2019).

    ∂x̂/∂x = 1 if qmin < x/s < qmax else 0
    ∂x̂/∂s = round(x/s) − x/s   if qmin < x/s < qmax
            qmin               if x/s ≤ qmin
            qmax               if x/s ≥ qmax
    and the step's gradient is multiplied by grad_scale g = 1/sqrt(N·qmax), N = elements per step.
    step_size is a scalar, or one step per channel (shape (C,)) along `axis`.
    """

    @staticmethod
    def forward(ctx, x, step_size, *, qmin, qmax, grad_scale, axis=None):
        step_size = np.asarray(step_size)
        if axis is not None and (step_size.ndim != 1 or not -x.ndim <= axis < x.ndim
                                 or x.shape[axis] != step_size.size):
            raise ValueError(f"per-channel LSQ expects a (C,) step with C = x.shape[axis], got step shape "
                             f"{step_size.shape}, axis {axis}, input shape {x.shape}")
        if axis is None and step_size.ndim != 0:
            raise ValueError(f"per-tensor LSQ expects a scalar step size, got shape {step_size.shape}")
        if not np.all(np.isfinite(step_size) & (step_size > 0)):
            raise ValueError(f"LSQ step size must be finite and > 0, got {step_size} "
                             "(a too large learning rate can push it below zero)")
        step = step_size.reshape(_step_shape(step_size, x.ndim, axis)).astype(x.dtype, copy=False)
        ratio = x / step
        ctx.save_for_backward(ratio)
        ctx.qmin, ctx.qmax, ctx.grad_scale = qmin, qmax, grad_scale
        ctx.step_shape, ctx.step_dtype = step_size.shape, step_size.dtype
        ctx.axis = None if axis is None else axis % x.ndim
        return (nearest_even(np.clip(ratio, qmin, qmax)) * step).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        (ratio,) = ctx.saved_tensors
        qmin, qmax, grad_scale = ctx.qmin, ctx.qmax, ctx.grad_scale
        ### BEGIN SOLUTION 7.2
        below, above = ratio <= qmin, ratio >= qmax
        grad_x = grad * ~(below | above)
        d_step = np.where(below, qmin, np.where(above, qmax, nearest_even(ratio) - ratio))
        grad_step = _sum_to_step(grad * d_step * grad_scale, ctx)
        return grad_x, grad_step
        ### END SOLUTION


def _sum_to_step(values: np.ndarray, ctx) -> np.ndarray:
    """Sum a gradient over every element that shares a step: all of them (scalar step) or all but the channel axis."""
    if ctx.axis is None:
        total = values.sum()
    else:
        total = values.sum(axis=tuple(i for i in range(values.ndim) if i != ctx.axis))
    return np.asarray(total, dtype=ctx.step_dtype).reshape(ctx.step_shape)


class LSQPlusFakeQuantize(LSQFakeQuantize):
    """x̂ = s·(round(clamp(x/s + ẑ, qmin, qmax)) − ẑ), ẑ = round(z), with learned s and z (LSQ+, Bhalgat et al.
    2020, with an integer zero point as in torch.ao's _LearnableFakeQuantize).

    Since ẑ is an integer, this is LSQ on the shifted range [qmin − ẑ, qmax − ẑ], so ∂x̂/∂x and ∂x̂/∂s are
    LSQFakeQuantize's with those bounds, and (round passed straight through)
    ∂x̂/∂z = 0 inside the range, −s where x is clamped;  scaled by the same g as the step.
    """

    @staticmethod
    def forward(ctx, x, step_size, zero_point, *, qmin, qmax, grad_scale, axis=None):
        step_size = np.asarray(step_size)
        zero = np.clip(nearest_even(np.asarray(zero_point, dtype=np.float64)), qmin, qmax)
        if zero.shape != step_size.shape:
            raise ValueError(f"LSQ+ expects a zero point shaped like the step, got {zero.shape} and "
                             f"{step_size.shape}")
        shape = _step_shape(step_size, x.ndim, axis)
        out = LSQFakeQuantize.forward(ctx, x, step_size, qmin=(qmin - zero).reshape(shape),
                                      qmax=(qmax - zero).reshape(shape), grad_scale=grad_scale, axis=axis)
        ctx.step = step_size.reshape(shape).astype(x.dtype, copy=False)
        ctx.zero_shape, ctx.zero_dtype = np.shape(zero_point), np.asarray(zero_point).dtype
        return out

    @staticmethod
    def backward(ctx, grad):
        grad_x, grad_step = LSQFakeQuantize.backward(ctx, grad)
        (ratio,) = ctx.saved_tensors
        clamped = (ratio <= ctx.qmin) | (ratio >= ctx.qmax)
        d_zero = _sum_to_step(grad * np.where(clamped, -ctx.step, 0) * ctx.grad_scale, ctx)
        return grad_x, grad_step, d_zero.astype(ctx.zero_dtype).reshape(ctx.zero_shape)


STEP_FLOOR = float(np.finfo(np.float32).eps)    # the smallest step a learned LSQ step becomes (≈ 1.19e-7)


class PositiveStep(Function):
    """ŝ = max(|s|, floor): the step LSQ quantizes with, > 0 whatever an optimizer did to s.

    ∂ŝ/∂s = sign(s) where |s| > floor, 0 below it (ŝ is then the constant floor).
    A gradient step that takes s across 0 leaves the grid as coarse as |s| says instead of
    breaking it (a step ≤ 0 has no grid); LSQ implementations clamp the step the same way.
    """

    @staticmethod
    def forward(ctx, step_size, *, floor=STEP_FLOOR):
        if not np.all(np.isfinite(step_size)):
            raise ValueError(f"LSQ step size must be finite, got {step_size}")
        ctx.save_for_backward(step_size)
        ctx.floor = floor
        return positive_step_value(step_size, floor)

    @staticmethod
    def backward(ctx, grad):
        (step_size,) = ctx.saved_tensors
        return (grad * np.sign(step_size) * (np.abs(step_size) > ctx.floor)).astype(step_size.dtype, copy=False)


def positive_step_value(step_size, floor: float = STEP_FLOOR) -> np.ndarray:
    """max(|s|, floor) on arrays (what PositiveStep computes, for reading qparams outside autograd)."""
    step_size = np.asarray(step_size)
    return np.maximum(np.abs(step_size), floor).astype(step_size.dtype, copy=False)


def positive_step(step_size) -> Tensor:
    """ŝ = max(|s|, floor) through autograd (PositiveStep)."""
    return PositiveStep.apply(_as_tensor(step_size, "positive_step"))


class PACTFakeQuantize(Function):
    """y = clip(x, 0, α), ŷ = round(y/s)·s with s = α/(2^k − 1)  (Choi et al. 2018).

    ∂ŷ/∂x = 1 if 0 ≤ x < α else 0        (straight through the rounding)
    ∂ŷ/∂α = 1 if x ≥ α else 0            (the clipped values are α itself; rounding is passed straight)
    """

    @staticmethod
    def forward(ctx, x, alpha, *, levels):
        alpha = np.asarray(alpha)
        if alpha.shape != () or not (np.isfinite(alpha) and alpha > 0):
            raise ValueError(f"PACT expects a scalar clipping level alpha > 0, got {alpha}")
        scale = (alpha / levels).astype(x.dtype)
        ctx.save_for_backward(x, alpha)
        return (np.clip(nearest_even(x / scale), 0, levels) * scale).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        x, alpha = ctx.saved_tensors
        ### BEGIN SOLUTION 7.3
        grad_x = grad * ((x >= 0) & (x < alpha))
        grad_alpha = np.sum(grad * (x >= alpha))
        return grad_x, np.asarray(grad_alpha, dtype=alpha.dtype)
        ### END SOLUTION


# ------------------------------------------------------------------------------ helpers

def _as_tensor(x, who: str) -> Tensor:
    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.ndarray):
        return Tensor(x)
    raise TypeError(f"{who} expects a Tensor or an ndarray, got {type(x).__name__}")


def fake_quantize_ste(x, qparams: QParams) -> Tensor:
    """x̂ = s·(clamp(round(x/s) + z, qmin, qmax) − z), gradient straight through inside the range (FakeQuantizeSTE)."""
    if not isinstance(qparams, QParams):
        raise TypeError(f"fake_quantize_ste expects a QParams, got {type(qparams).__name__}")
    x = _as_tensor(x, "fake_quantize_ste")
    if qparams.per_channel:
        _, _, axis = qparams.broadcast(x.ndim)          # raises for an axis out of range
        if x.shape[axis] != qparams.scale.size:
            raise ValueError(f"fake_quantize_ste expects x.shape[{qparams.axis}] == {qparams.scale.size} "
                             f"channels, got shape {x.shape}")
    return FakeQuantizeSTE.apply(x, qparams=qparams)


def lsq_grad_scale(elements_per_step: int, qmax: int) -> float:
    """g = 1 / sqrt(N · qmax): keeps the step's update in proportion to the weights' (Esser et al. 2019, §2.2)."""
    ### BEGIN SOLUTION 7.4
    return 1.0 / math.sqrt(max(int(elements_per_step), 1) * max(qmax, 1))
    ### END SOLUTION


def lsq_fake_quantize(x, step_size, bits: int, signed: bool, narrow_range: bool = False,
                      grad_scale: float | None = None, axis: int | None = None, zero_point=None) -> Tensor:
    """x̂ = round(clamp(x/s, qmin, qmax))·s with s learnable (LSQFakeQuantize); g defaults to 1/sqrt(N·qmax).

    zero_point (a learnable float, rounded in forward): the asymmetric grid of LSQ+ (LSQPlusFakeQuantize).
    """
    qmin, qmax = integer_range(check_bits(bits, "lsq_fake_quantize"), signed, narrow_range)
    x = _as_tensor(x, "lsq_fake_quantize")
    if not np.all(np.isfinite(x.data)):
        raise ValueError("lsq_fake_quantize got NaN or inf input; it has no integer code")
    if grad_scale is None:
        grad_scale = lsq_grad_scale(x.size // max(np.size(_data(step_size)), 1), qmax)
    options = dict(qmin=qmin, qmax=qmax, grad_scale=float(grad_scale), axis=axis)
    if zero_point is None:
        return LSQFakeQuantize.apply(x, step_size, **options)
    return LSQPlusFakeQuantize.apply(x, step_size, zero_point, **options)


def _data(value):
    return value.data if isinstance(value, Tensor) else value


def lsq_init_step_size(x: np.ndarray, qmax: int, axis: int | None = None) -> np.ndarray:
    """s₀ = 2·mean(|x|)/sqrt(qmax) (Esser et al. 2019), per channel along `axis` if given; float32, > 0."""
    ### BEGIN SOLUTION 7.4
    x = np.abs(np.asarray(x, dtype=np.float32))
    if axis is None:
        mean = x.mean() if x.size else np.float32(0)
    else:
        mean = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1).mean(axis=1)
    step = 2.0 * mean / math.sqrt(max(qmax, 1))
    return np.maximum(step, np.finfo(np.float32).eps).astype(np.float32)
    ### END SOLUTION


def pact_fake_quantize(x, alpha, bits: int) -> Tensor:
    """ŷ = round(clip(x, 0, α)/s)·s, s = α/(2^bits − 1), α learnable (PACTFakeQuantize)."""
    bits = check_bits(bits, "pact_fake_quantize")
    return PACTFakeQuantize.apply(_as_tensor(x, "pact_fake_quantize"), alpha, levels=(1 << bits) - 1)
