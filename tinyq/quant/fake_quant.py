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

and a Module around each (FakeQuantize with an observer, LSQQuantizer, PACTQuantizer).
"""
from __future__ import annotations

import math

import numpy as np

from tinyq.formats.affine import QParams, fake_quantize, integer_range
from tinyq.function import Function
from tinyq.nn.module import Module, Parameter
from tinyq.quant.observers import OBSERVERS, make_observer
from tinyq.tensor import Tensor

__all__ = ["FakeQuantizeSTE", "LSQFakeQuantize", "PACTFakeQuantize", "fake_quantize_ste", "lsq_fake_quantize",
           "pact_fake_quantize", "lsq_init_step_size", "FakeQuantize", "LSQQuantizer", "PACTQuantizer",
           "make_quant_observer"]


# ------------------------------------------------------------------------------ Functions

class FakeQuantizeSTE(Function):
    """x̂ = s·(clamp(round(x/s) + z, qmin, qmax) − z);  ∂x̂/∂x = 1 where qmin ≤ round(x/s) + z ≤ qmax, else 0.

    Per-tensor or per-channel, as the QParams say. The gradient mask is taken on the
    rounded code before clamping, as PyTorch's fake_quantize_per_*_affine do: a value
    up to half a step beyond the last grid point still rounds onto the grid and still
    gets gradient 1. Rounding is half-to-even (np.rint, like nearbyint). One difference:
    PyTorch multiplies by a float32 1/s where tinyq divides by s (as affine.quantize does),
    so the two can round differently when x/s is within a float32 ulp of a half-integer.
    """

    @staticmethod
    def forward(ctx, x, *, qparams):
        ctx.save_for_backward(x)
        ctx.qparams = qparams
        return fake_quantize(x, qparams).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        qparams = ctx.qparams
        scale, zero_point, _ = qparams.broadcast(x.ndim)
        ### BEGIN SOLUTION 7.1
        with np.errstate(over="ignore", invalid="ignore"):
            code = np.rint(x.astype(np.float32, copy=False) / scale) + zero_point   # the code before clamping
        inside = (code >= qparams.qmin) & (code <= qparams.qmax)
        return grad * inside
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
        return (np.rint(np.clip(ratio, qmin, qmax)) * step).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        (ratio,) = ctx.saved_tensors
        qmin, qmax, grad_scale = ctx.qmin, ctx.qmax, ctx.grad_scale
        ### BEGIN SOLUTION 7.2
        below, above = ratio <= qmin, ratio >= qmax
        grad_x = grad * ~(below | above)
        d_step = np.where(below, qmin, np.where(above, qmax, np.rint(ratio) - ratio))
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
        return (np.clip(np.rint(x / scale), 0, levels) * scale).astype(x.dtype, copy=False)

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
                      grad_scale: float | None = None, axis: int | None = None) -> Tensor:
    """x̂ = round(clamp(x/s, qmin, qmax))·s with s learnable (LSQFakeQuantize); g defaults to 1/sqrt(N·qmax)."""
    qmin, qmax = integer_range(bits, signed, narrow_range)
    x = _as_tensor(x, "lsq_fake_quantize")
    if grad_scale is None:
        grad_scale = lsq_grad_scale(x.size // max(np.size(_data(step_size)), 1), qmax)
    return LSQFakeQuantize.apply(x, step_size, qmin=qmin, qmax=qmax, grad_scale=float(grad_scale), axis=axis)


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
    if not isinstance(bits, int) or not 2 <= bits <= 16:
        raise ValueError(f"pact_fake_quantize expects bits an integer in 2..16, got {bits!r}")
    return PACTFakeQuantize.apply(_as_tensor(x, "pact_fake_quantize"), alpha, levels=(1 << bits) - 1)


class PerChannelObservers:
    """One per-tensor observer (e.g. MSE, entropy) for each slice along `axis`; their QParams stacked per channel."""

    def __init__(self, name: str, axis: int, bits: int = 8, symmetric: bool = False, signed: bool | None = None,
                 narrow_range: bool = False, **kwargs):
        make_observer(name, bits=bits, symmetric=symmetric, signed=signed, narrow_range=narrow_range, **kwargs)
        self.name, self.axis, self.kwargs = name, axis, dict(kwargs)
        self.bits, self.symmetric, self.narrow_range = bits, symmetric, narrow_range
        self.signed = symmetric if signed is None else signed
        self.reset()

    def reset(self) -> None:
        self.observers, self._channel_axis = None, None

    @property
    def has_data(self) -> bool:
        return self.observers is not None and all(o.has_data for o in self.observers)

    def observe(self, x: np.ndarray) -> np.ndarray:
        array = np.asarray(x)
        if not -array.ndim <= self.axis < array.ndim:
            raise ValueError(f"per-channel {self.name} observer: axis={self.axis} is out of range for input of "
                             f"shape {array.shape}")
        self._channel_axis = self.axis % array.ndim
        rows = np.moveaxis(array, self._channel_axis, 0)
        if self.observers is None:
            self.observers = [make_observer(self.name, bits=self.bits, symmetric=self.symmetric, signed=self.signed,
                                            narrow_range=self.narrow_range, **self.kwargs) for _ in rows]
        elif len(rows) != len(self.observers):
            raise ValueError(f"per-channel {self.name} observer expects {len(self.observers)} channels along axis "
                             f"{self.axis}, got shape {array.shape}")
        for observer, row in zip(self.observers, rows):
            observer.observe(row)
        return x

    __call__ = observe

    def calculate_qparams(self) -> QParams:
        if not self.has_data:
            raise RuntimeError(f"per-channel {self.name} observer has observed no data; "
                               "call observe(x) before calculate_qparams()")
        per_slice = [o.calculate_qparams() for o in self.observers]
        return QParams(np.array([q.scale for q in per_slice], dtype=np.float32),
                       np.array([q.zero_point for q in per_slice], dtype=np.int64),
                       self.bits, self.signed, self._channel_axis, self.narrow_range)


def make_quant_observer(name: str, bits: int = 8, symmetric: bool = False, signed: bool | None = None,
                                  axis: int | None = None, narrow_range: bool = False, **kwargs):
    """make_observer(name, ...), or PerChannelObservers when a per-tensor-only observer is asked for per channel."""
    if name not in OBSERVERS:
        raise ValueError(f"unknown observer {name!r}; known observers: {', '.join(sorted(OBSERVERS))}")
    options = dict(bits=bits, symmetric=symmetric, signed=signed, narrow_range=narrow_range, **kwargs)
    if axis is None:
        return make_observer(name, **options)
    try:
        return make_observer(name, axis=axis, **options)
    except ValueError as error:
        if "per-tensor only" not in str(error):
            raise
        return PerChannelObservers(name, axis, **options)


# ------------------------------------------------------------------------------ modules

class FakeQuantize(Module):
    """x̂ = fake_quantize_ste(x, qparams): qparams from an observer of x, or frozen.

    observer_enabled: observe every input (and recompute qparams); fake_quant_enabled: quantize
    (when off, forward returns x unchanged, as during PTQ calibration). reset_each_call: the
    observer sees only the current input (weights: the range follows the weights as they train).
    As in PyTorch, the observer runs whenever it is enabled, in eval mode too: switch it off
    (qat.set_observers(model, False)) before evaluating a model in the middle of QAT.
    """

    def __init__(self, observer: str = "minmax", bits: int = 8, symmetric: bool = False, signed: bool | None = None,
                 axis: int | None = None, narrow_range: bool = False, reset_each_call: bool = False,
                 **observer_kwargs):
        super().__init__()
        self.observer_name = observer
        self.observer = make_quant_observer(observer, bits=bits, symmetric=symmetric, signed=signed,
                                                      axis=axis, narrow_range=narrow_range, **observer_kwargs)
        self.bits, self.axis, self.reset_each_call = bits, axis, reset_each_call
        self.observer_enabled = True
        self.fake_quant_enabled = True
        self._qparams = None

    @classmethod
    def from_qparams(cls, qparams: QParams) -> "FakeQuantize":
        """A frozen FakeQuantize: no observer, always these qparams."""
        if not isinstance(qparams, QParams):
            raise TypeError(f"FakeQuantize.from_qparams expects a QParams, got {type(qparams).__name__}")
        module = cls.__new__(cls)
        Module.__init__(module)
        module.observer_name, module.observer = None, None
        module.bits, module.axis, module.reset_each_call = qparams.bits, qparams.axis, False
        module.observer_enabled, module.fake_quant_enabled = False, True
        module._qparams = qparams
        return module

    def calculate_qparams(self) -> QParams:
        """QParams from what the observer has seen (cached until it sees more)."""
        if self._qparams is None:
            if self.observer is None:
                raise RuntimeError("FakeQuantize has neither qparams nor an observer")
            self._qparams = self.observer.calculate_qparams()
        return self._qparams

    @property
    def qparams(self) -> QParams:
        return self.calculate_qparams()

    def freeze(self) -> "FakeQuantize":
        """Fix the qparams from what was observed; stop observing; quantize from now on."""
        self.calculate_qparams()
        self.observer_enabled, self.fake_quant_enabled = False, True
        return self

    def enable_observer(self, enabled: bool = True) -> "FakeQuantize":
        if enabled and self.observer is None:
            raise RuntimeError("this FakeQuantize is frozen (made from qparams) and has no observer")
        self.observer_enabled = bool(enabled)
        return self

    def enable_fake_quant(self, enabled: bool = True) -> "FakeQuantize":
        self.fake_quant_enabled = bool(enabled)
        return self

    def forward(self, x: Tensor) -> Tensor:
        if self.observer_enabled:
            if self.reset_each_call:
                self.observer.reset()
            self.observer.observe(x.data)
            self._qparams = None
        if not self.fake_quant_enabled:
            return x
        return fake_quantize_ste(x, self.calculate_qparams())

    def extra_repr(self) -> str:
        frozen = "" if self.observer is not None else ", frozen"
        return f"observer={self.observer_name}, bits={self.bits}, axis={self.axis}{frozen}"


class LSQQuantizer(Module):
    """x̂ = round(clamp(x/s, qmin, qmax))·s with a learned step s (a Parameter), Esser et al. 2019.

    s starts at 2·mean|x|/sqrt(qmax) of the first input it sees (or of `init_from(x)`).
    Gradient scale g = 1/sqrt(N·qmax): N = elements per step for weights, features per sample
    for activations (activation=True: N = x.size / batch size).
    Per-channel steps: axis and num_channels (weights, axis 0).
    """

    def __init__(self, bits: int = 8, signed: bool = True, narrow_range: bool = False, axis: int | None = None,
                 num_channels: int | None = None, activation: bool = False):
        super().__init__()
        self.qmin, self.qmax = integer_range(bits, signed, narrow_range)
        if self.qmax <= 0:
            raise ValueError(f"LSQQuantizer needs qmax > 0, got the range [{self.qmin}, {self.qmax}]")
        if axis is not None and (not isinstance(num_channels, int) or num_channels < 1):
            raise ValueError(f"per-channel LSQQuantizer (axis={axis}) needs num_channels >= 1, got {num_channels!r}")
        self.bits, self.signed, self.narrow_range = bits, signed, narrow_range
        self.axis, self.activation = axis, activation
        shape = () if axis is None else (num_channels,)
        self.step_size = Parameter(np.ones(shape, dtype=np.float32))
        self.register_buffer("initialized", np.array(False))

    def init_from(self, x: np.ndarray) -> "LSQQuantizer":
        """s ← 2·mean|x|/sqrt(qmax) (per channel if per-channel)."""
        self.step_size.data = lsq_init_step_size(np.asarray(x), self.qmax, self.axis).reshape(self.step_size.shape)
        self.initialized = np.array(True)
        return self

    def forward(self, x: Tensor) -> Tensor:
        if not bool(self.initialized):
            self.init_from(x.data)
        tiny = np.finfo(np.float32).tiny
        if np.any(self.step_size.data < tiny):          # projected gradient descent: keep s > 0
            self.step_size.data = np.maximum(self.step_size.data, tiny).astype(np.float32)
        per_step = x.size // max(self.step_size.size, 1)
        if self.activation and x.ndim > 1:
            per_step //= x.shape[0]                     # features per sample
        return lsq_fake_quantize(x, self.step_size, self.bits, self.signed, self.narrow_range,
                                 grad_scale=lsq_grad_scale(per_step, self.qmax), axis=self.axis)

    @property
    def qparams(self) -> QParams:
        """The learned grid as QParams: scale = s, zero_point = 0."""
        if not bool(self.initialized):
            raise RuntimeError("LSQQuantizer has seen no data: its step size is not initialised")
        if self.axis is None:
            return QParams(float(self.step_size.data), 0, self.bits, self.signed, None, self.narrow_range)
        return QParams(self.step_size.data.copy(), np.zeros(self.step_size.size, dtype=np.int64), self.bits,
                       self.signed, self.axis, self.narrow_range)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, signed={self.signed}, axis={self.axis}"


class PACTQuantizer(Module):
    """ŷ = round(clip(x, 0, α)/s)·s, s = α/(2^bits − 1), with a learned clip α (Choi et al. 2018).

    α starts at `alpha`, or at max(x) of the first input when alpha is None.
    regularization() = alpha_l2 · α², the paper's L2 penalty that pulls α down; add it to the loss.
    """

    def __init__(self, bits: int = 8, alpha: float | None = None, alpha_l2: float = 0.0):
        super().__init__()
        if not isinstance(bits, int) or not 2 <= bits <= 16:
            raise ValueError(f"PACTQuantizer expects bits an integer in 2..16, got {bits!r}")
        if alpha is not None and not (math.isfinite(alpha) and alpha > 0):
            raise ValueError(f"PACTQuantizer expects alpha > 0 (or None to start from the data), got {alpha!r}")
        if not alpha_l2 >= 0:
            raise ValueError(f"PACTQuantizer expects alpha_l2 >= 0, got {alpha_l2!r}")
        self.bits, self.alpha_l2 = bits, float(alpha_l2)
        self.alpha = Parameter(np.array(1.0 if alpha is None else alpha, dtype=np.float32))
        self.register_buffer("initialized", np.array(alpha is not None))

    def forward(self, x: Tensor) -> Tensor:
        if not bool(self.initialized):
            peak = float(x.data.max()) if x.size else 0.0
            self.alpha.data = np.array(peak if peak > 0 else 1.0, dtype=np.float32)
            self.initialized = np.array(True)
        return pact_fake_quantize(x, self.alpha, self.bits)

    def regularization(self) -> Tensor:
        """λ·α² (a Tensor, so its gradient 2λα reaches α)."""
        return self.alpha * self.alpha * self.alpha_l2

    @property
    def qparams(self) -> QParams:
        """The learned grid as QParams: unsigned, scale = α/(2^bits − 1), zero_point = 0."""
        levels = (1 << self.bits) - 1
        return QParams(float(np.float32(self.alpha.data) / np.float32(levels)), 0, self.bits, False)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, alpha={float(self.alpha.data):.4g}"
