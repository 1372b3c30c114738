"""Quantizer modules (torch.ao's FakeQuantize family): x̂ = fake_quantize(x) with the grid kept as module state.

    FakeQuantize    an observer picks the range, x̂ = fake_quantize_ste(x, qparams)   (STE; PTQ observation)
    LSQQuantizer    learned step s (and, for an asymmetric grid, a learned zero point: LSQ+)
    PACTQuantizer   learned clipping level α for unsigned activations

Everything that decides their output is state that `state_dict` saves and strict
`load_state_dict` checks, as in torch.ao: a quantizer's grid (scale, zero_point), what its
observer has seen (min_val/max_val, the histogram), the on/off switches (observer_enabled,
fake_quant_enabled), LSQ's step and zero point, PACT's α. The buffer `qscheme` records how
the quantizer was configured (QSCHEME_FIELDS); loading a state saved under another
configuration raises a ValueError that names both.
"""
from __future__ import annotations

import math

import numpy as np

from tinyq.formats.affine import QParams
from tinyq.formats.rounding import check_bits, integer_range, nearest_even
from tinyq.nn.module import Module, Parameter
from tinyq.quant.fake_quant import fake_quantize_ste, lsq_fake_quantize, lsq_grad_scale, lsq_init_step_size, \
    pact_fake_quantize, positive_step, positive_step_value
from tinyq.quant.observers import OBSERVERS, make_observer
from tinyq.tensor import Tensor

__all__ = ["FakeQuantize", "LSQQuantizer", "PACTQuantizer", "QSCHEME_FIELDS", "QUANTIZER_KINDS"]

QSCHEME_FIELDS = ("kind", "bits", "signed", "symmetric", "narrow_range", "per_channel", "axis")
QUANTIZER_KINDS = ("frozen", *OBSERVERS, "lsq", "lsq+", "pact")   # kind = index in this tuple


def _qscheme(kind: str, bits: int, signed: bool, symmetric: bool, narrow_range: bool, axis: int | None):
    return np.array([QUANTIZER_KINDS.index(kind), bits, signed, symmetric, narrow_range, axis is not None,
                     0 if axis is None else axis], dtype=np.int64)


def _describe_qscheme(values) -> str:
    fields = dict(zip(QSCHEME_FIELDS, (int(v) for v in np.ravel(values))))
    kind = QUANTIZER_KINDS[fields.pop("kind")] if 0 <= fields.get("kind", -1) < len(QUANTIZER_KINDS) else "?"
    axis = f"axis {fields['axis']}" if fields["per_channel"] else "per tensor"
    return (f"{kind} {'int' if fields['signed'] else 'uint'}{fields['bits']}"
            f"{' symmetric' if fields['symmetric'] else ''}{' narrow' if fields['narrow_range'] else ''} {axis}")


class _Quantizer(Module):
    """What the three quantizers share: the qscheme buffer and a readable configuration mismatch."""

    def _describe_constant(self, name: str, value: np.ndarray) -> str:
        if name != "qscheme":
            return ""
        return f": saved {_describe_qscheme(value)}, this model has {_describe_qscheme(self.qscheme)}"


class FakeQuantize(_Quantizer):
    """x̂ = fake_quantize_ste(x, qparams): qparams from an observer of x, or frozen.

    observer_enabled: observe every input (the qparams follow); fake_quant_enabled: quantize
    (when off, forward returns x unchanged, as during PTQ calibration). reset_each_call: the
    observer sees only the current input (weights: the range follows the weights as they train).
    As in PyTorch, the observer runs whenever it is enabled, in eval mode too; `Module.evaluating()`
    (used by train.evaluate) pauses it. freeze() fixes the qparams into the scale/zero_point buffers.
    Per-channel quantizers need num_channels to have their buffers before seeing data.
    """

    def __init__(self, observer: str = "minmax", bits: int = 8, symmetric: bool = False, signed: bool | None = None,
                 axis: int | None = None, narrow_range: bool = False, reset_each_call: bool = False,
                 num_channels: int | None = None, **observer_kwargs):
        super().__init__()
        bits = check_bits(bits, "FakeQuantize")
        if axis is not None and num_channels is not None and (not isinstance(num_channels, int) or num_channels < 1):
            raise ValueError(f"FakeQuantize expects num_channels a positive int or None, got {num_channels!r}")
        self.observer_name = observer
        self.observer = make_observer(observer, bits=bits, symmetric=symmetric, signed=signed, axis=axis,
                                      narrow_range=narrow_range, num_channels=num_channels, **observer_kwargs)
        signed = self.observer.signed
        self._setup(bits, signed, axis, narrow_range, reset_each_call, num_channels)
        self.register_buffer("qscheme", _qscheme(observer, bits, signed, symmetric, narrow_range, axis), constant=True)
        self._observer_keys = ()
        if axis is None or num_channels is not None:
            self._mirror_observer()

    def _setup(self, bits, signed, axis, narrow_range, reset_each_call, num_channels):
        self.bits, self.signed, self.axis, self.narrow_range = int(bits), bool(signed), axis, bool(narrow_range)
        self.reset_each_call, self.num_channels = reset_each_call, num_channels
        shape = () if axis is None else (None if num_channels is None else (num_channels,))
        self.register_buffer("scale", None if shape is None else np.full(shape, np.nan, np.float32))
        self.register_buffer("zero_point", None if shape is None else np.zeros(shape, np.int64))
        self.register_buffer("observer_enabled", np.array(True))
        self.register_buffer("fake_quant_enabled", np.array(True))
        self._cached = None                     # the observer's qparams, until it sees more

    @classmethod
    def from_qparams(cls, qparams: QParams) -> "FakeQuantize":
        """A frozen FakeQuantize: no observer, always these qparams."""
        if not isinstance(qparams, QParams):
            raise TypeError(f"FakeQuantize.from_qparams expects a QParams, got {type(qparams).__name__}")
        module = cls.__new__(cls)
        Module.__init__(module)
        module.observer_name, module.observer, module._observer_keys = None, None, ()
        channels = np.size(qparams.scale) if qparams.per_channel else None
        module._setup(qparams.bits, qparams.signed, qparams.axis, qparams.narrow_range, False, channels)
        module.register_buffer("qscheme", _qscheme("frozen", qparams.bits, qparams.signed, False,
                                                   qparams.narrow_range, qparams.axis), constant=True)
        module._store(qparams)
        module.observer_enabled = np.array(False)
        return module

    # ---- state ------------------------------------------------------------------
    def _mirror_observer(self) -> None:
        """Copy what the observer has seen into buffers (registering them the first time)."""
        state = self.observer.state(self.num_channels if self.num_channels is not None else self._seen_channels())
        for key, value in state.items():
            if key not in self._buffers:
                self.register_buffer(key, value)
            else:
                setattr(self, key, value)
        self._observer_keys = tuple(state)

    def _seen_channels(self):
        """Channels of a per-channel observer that has seen data (its min_val has one entry per channel)."""
        observers = getattr(self.observer, "observers", None)
        return len(observers) if observers is not None else np.size(self.observer.min_val)

    def _state_loaded(self) -> None:
        if self.observer is not None and self._observer_keys:
            self.observer.load_state({key: getattr(self, key) for key in self._observer_keys})
        self._cached = None

    def _store(self, qparams: QParams) -> None:
        self.scale = np.array(qparams.scale, dtype=np.float32)
        self.zero_point = np.array(qparams.zero_point, dtype=np.int64)

    def _frozen(self) -> bool:
        return not bool(self.observer_enabled) and self.scale is not None and bool(np.all(np.isfinite(self.scale)))

    # ---- qparams ----------------------------------------------------------------
    def calculate_qparams(self) -> QParams:
        """QParams from what the observer has seen (cached until it sees more)."""
        if self._cached is None:
            if self.observer is None or not self.observer.has_data:
                raise RuntimeError("FakeQuantize has observed no data, so it has no range yet "
                                   "(run data through the model, or load a calibrated state)")
            self._cached = self.observer.calculate_qparams()
        return self._cached

    @property
    def qparams(self) -> QParams:
        """The frozen qparams (scale/zero_point buffers) when frozen, else the observer's."""
        if self._frozen():
            scale = self.scale if self.axis is not None else self.scale[()]
            zero_point = self.zero_point if self.axis is not None else int(self.zero_point)
            return QParams(scale, zero_point, self.bits, self.signed, self.axis, self.narrow_range)
        return self.calculate_qparams()

    def freeze(self) -> "FakeQuantize":
        """Fix the qparams from what was observed (into the scale/zero_point buffers); stop observing; quantize."""
        self._store(self.qparams)
        self.observer_enabled, self.fake_quant_enabled = np.array(False), np.array(True)
        return self

    def enable_observer(self, enabled: bool = True) -> "FakeQuantize":
        if enabled and self.observer is None:
            raise RuntimeError("this FakeQuantize is frozen (made from qparams) and has no observer")
        if enabled and self.scale is not None:
            self.scale = np.full(self.scale.shape, np.nan, np.float32)      # no longer frozen
        self.observer_enabled = np.array(bool(enabled))
        return self

    def enable_fake_quant(self, enabled: bool = True) -> "FakeQuantize":
        self.fake_quant_enabled = np.array(bool(enabled))
        return self

    def set_state_updates(self, enabled: bool) -> bool:
        """Pause or resume observing without freezing (Module.evaluating uses it); returns the previous setting."""
        previous = bool(self.observer_enabled)
        self.observer_enabled = np.array(bool(enabled) and self.observer is not None)
        return previous

    def forward(self, x: Tensor) -> Tensor:
        if self.observer_enabled:
            if self.reset_each_call:
                self.observer.reset()
            self.observer.observe(x.data)
            self._mirror_observer()
            self._cached = None
        if not self.fake_quant_enabled:
            return x
        return fake_quantize_ste(x, self.qparams)

    def extra_repr(self) -> str:
        frozen = "" if self.observer is not None else ", frozen"
        return f"observer={self.observer_name}, bits={self.bits}, axis={self.axis}{frozen}"


class LSQQuantizer(_Quantizer):
    """x̂ = round(clamp(x/ŝ, qmin, qmax))·ŝ, ŝ = max(|s|, floor), with a learned step s (a Parameter), Esser et al. 2019.

    The floor (fake_quant.STEP_FLOOR) keeps the grid valid when an optimizer pushes s to 0 or below;
    qparams report ŝ. s starts at 2·mean|x|/sqrt(qmax) of the first input it sees (or of `init_from(x)`).
    Gradient scale g = 1/sqrt(N·qmax): N = elements per step for weights, features per sample
    for activations (activation=True: N = x.size / batch size).
    Per-channel steps: axis and num_channels (weights, axis 0).
    learn_zero_point (LSQ+, Bhalgat et al. 2020): an asymmetric grid x̂ = s·(q − ẑ) with a learned zero
    point z (ẑ = round(z)); s and z start from the first input's range, s = (max − min)/(qmax − qmin),
    z = qmin − min/s, so negative inputs are quantized, not clamped to 0.
    """

    def __init__(self, bits: int = 8, signed: bool = True, narrow_range: bool = False, axis: int | None = None,
                 num_channels: int | None = None, activation: bool = False, learn_zero_point: bool = False):
        super().__init__()
        bits = check_bits(bits, "LSQQuantizer")
        self.qmin, self.qmax = integer_range(bits, signed, narrow_range)
        if self.qmax <= 0:
            raise ValueError(f"LSQQuantizer needs qmax > 0, got the range [{self.qmin}, {self.qmax}]")
        if axis is not None and (not isinstance(num_channels, int) or num_channels < 1):
            raise ValueError(f"per-channel LSQQuantizer (axis={axis}) needs num_channels >= 1, got {num_channels!r}")
        self.bits, self.signed, self.narrow_range = bits, signed, narrow_range
        self.axis, self.activation = axis, activation
        shape = () if axis is None else (num_channels,)
        self.step_size = Parameter(np.ones(shape, dtype=np.float32))
        self.register_parameter("zero_point", Parameter(np.zeros(shape, np.float32)) if learn_zero_point else None)
        self.register_buffer("initialized", np.array(False))
        self.register_buffer("qscheme", _qscheme("lsq+" if learn_zero_point else "lsq", bits, signed,
                                                 not learn_zero_point, narrow_range, axis), constant=True)

    def init_from(self, x: np.ndarray) -> "LSQQuantizer":
        """s ← 2·mean|x|/sqrt(qmax) (per channel if per-channel); with a zero point, s and z from [min, max]."""
        x = np.asarray(x, dtype=np.float32)
        if self.zero_point is None:
            self.step_size.data = lsq_init_step_size(x, self.qmax, self.axis).reshape(self.step_size.shape)
        else:
            rows = x.reshape(1, -1) if self.axis is None else np.moveaxis(x, self.axis, 0).reshape(x.shape[self.axis], -1)
            lo, hi = np.minimum(rows.min(axis=1), 0), np.maximum(rows.max(axis=1), 0)    # the grid holds 0
            step = np.maximum((hi - lo) / (self.qmax - self.qmin), np.finfo(np.float32).eps)
            self.step_size.data = step.astype(np.float32).reshape(self.step_size.shape)
            self.zero_point.data = (self.qmin - lo / step).astype(np.float32).reshape(self.zero_point.shape)
        self.initialized = np.array(True)
        return self

    def forward(self, x: Tensor) -> Tensor:
        if not bool(self.initialized):
            self.init_from(x.data)
        per_step = x.size // max(self.step_size.size, 1)
        if self.activation and x.ndim > 1:
            per_step //= x.shape[0]                     # features per sample
        return lsq_fake_quantize(x, positive_step(self.step_size), self.bits, self.signed, self.narrow_range,
                                 grad_scale=lsq_grad_scale(per_step, self.qmax), axis=self.axis,
                                 zero_point=self.zero_point)

    @property
    def qparams(self) -> QParams:
        """The learned grid as QParams: scale = s, zero_point = round(z) (0 without a learned zero point)."""
        if not bool(self.initialized):
            raise RuntimeError("LSQQuantizer has seen no data: its step size is not initialised")
        zero = np.zeros(self.step_size.shape, np.int64) if self.zero_point is None else \
            np.clip(nearest_even(self.zero_point.data), self.qmin, self.qmax).astype(np.int64)
        step = positive_step_value(self.step_size.data)       # the step forward quantizes with
        if self.axis is None:
            return QParams(float(step), int(zero), self.bits, self.signed, None, self.narrow_range)
        return QParams(step, zero, self.bits, self.signed, self.axis, self.narrow_range)

    def extra_repr(self) -> str:
        plus = ", learned zero point" if self.zero_point is not None else ""
        return f"bits={self.bits}, signed={self.signed}, axis={self.axis}{plus}"


class PACTQuantizer(_Quantizer):
    """ŷ = round(clip(x, 0, α)/s)·s, s = α/(2^bits − 1), with a learned clip α (Choi et al. 2018).

    α starts at `alpha`, or at max(x) of the first input when alpha is None.
    regularization() = alpha_l2 · α², the paper's L2 penalty that pulls α down; add it to the loss.
    """

    def __init__(self, bits: int = 8, alpha: float | None = None, alpha_l2: float = 0.0):
        super().__init__()
        bits = check_bits(bits, "PACTQuantizer")
        if alpha is not None and not (math.isfinite(alpha) and alpha > 0):
            raise ValueError(f"PACTQuantizer expects alpha > 0 (or None to start from the data), got {alpha!r}")
        if not alpha_l2 >= 0:
            raise ValueError(f"PACTQuantizer expects alpha_l2 >= 0, got {alpha_l2!r}")
        self.bits, self.alpha_l2 = bits, float(alpha_l2)
        self.alpha = Parameter(np.array(1.0 if alpha is None else alpha, dtype=np.float32))
        self.register_buffer("initialized", np.array(alpha is not None))
        self.register_buffer("qscheme", _qscheme("pact", bits, False, False, False, None), constant=True)

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
