"""Affine (uniform) integer quantization: q = clamp(round(x / scale) + zero_point, qmin, qmax).

A real value x is stored as an integer q on a uniform grid of step `scale`
whose integer `zero_point` stands for the real 0.0, so x ≈ scale · (q − zero_point).
The grid is per-tensor (one scale) or per-channel (one scale per slice along
`axis`), symmetric (zero_point in the middle of the integer range) or
asymmetric, for any bit-width 2..16.

Conventions (the same as PyTorch's `torch.ao.quantization` observers):
- all arithmetic is float32; a per-tensor scale is kept as a Python float that
  holds a float32 value exactly;
- rounding is round-half-to-even (`np.rint`, like `torch.round`/`nearbyint`);
- asymmetric: the range [lo, hi] is first widened to contain 0, then
  scale = (hi − lo) / (qmax − qmin), zero_point = qmin − round(lo / scale);
- symmetric:  scale = max(|lo|, |hi|) / ((qmax − qmin) / 2), zero_point = 0 for
  signed, (qmin + qmax + 1) // 2 for unsigned (128 for uint8, as PyTorch);
- scale is at least `eps` (float32 machine epsilon), so an all-zero range is valid;
- narrow_range drops the lowest code: int8 becomes [-127, 127] (TFLite/PyTorch
  symmetric weights), uint8 becomes [1, 255] (TensorFlow's narrow_range).

This module imports only NumPy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np

from tinyq.formats.rounding import check_bits, integer_range, nearest_even

FLOAT32_EPS = float(np.finfo(np.float32).eps)   # 2**-23, PyTorch observers' default eps

__all__ = ["QParams", "calculate_qparams", "quantize", "dequantize", "fake_quantize",
           "quantization_error", "quantization_mse", "quantize_multiplier",
           "integer_range", "code_dtype", "FLOAT32_EPS"]


def code_dtype(bits: int, signed: bool) -> np.dtype:
    """Smallest NumPy integer dtype that holds every b-bit code: int8/uint8 up to 8 bits, else int16/uint16."""
    if bits <= 8:
        return np.dtype(np.int8 if signed else np.uint8)
    return np.dtype(np.int16 if signed else np.uint16)


def _is_integer(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


@dataclass(frozen=True, eq=False)
class QParams:
    """x ≈ scale · (q − zero_point), q ∈ [qmin, qmax]; per-tensor (axis=None) or per-channel along `axis`.

    scale:        float (per-tensor) or 1-D float32 array of length C (per-channel)
    zero_point:   int (per-tensor) or 1-D int64 array of length C (per-channel)
    bits:         2..16
    signed:       codes in [-2^(b-1), 2^(b-1) - 1] (True) or [0, 2^b - 1] (False)
    axis:         None for per-tensor, the channel axis for per-channel
    narrow_range: drop the lowest code (int8 → [-127, 127])
    Arrays are copied and made read-only, so a QParams is immutable.
    """

    scale: float | np.ndarray
    zero_point: int | np.ndarray
    bits: int = 8
    signed: bool = False
    axis: int | None = None
    narrow_range: bool = False

    def __post_init__(self):
        check_bits(self.bits, "QParams")
        if self.axis is not None and not _is_integer(self.axis):
            raise ValueError(f"QParams expects axis None (per-tensor) or an int (per-channel), got {self.axis!r}")
        object.__setattr__(self, "bits", int(self.bits))
        object.__setattr__(self, "signed", bool(self.signed))
        object.__setattr__(self, "narrow_range", bool(self.narrow_range))
        if self.axis is None:
            self._init_per_tensor()
        else:
            object.__setattr__(self, "axis", int(self.axis))
            self._init_per_channel()

    def _init_per_tensor(self):
        if np.ndim(self.scale) != 0 or not isinstance(self.scale, (Real, np.floating, np.integer, np.ndarray)):
            raise ValueError(f"per-tensor QParams (axis=None) expects a scalar scale, got {self.scale!r}")
        scale = float(np.float32(self.scale))
        if not (math.isfinite(scale) and scale > 0.0):
            raise ValueError(f"QParams expects a finite scale > 0 (as float32), got {self.scale!r}")
        zero_point = self.zero_point.item() if isinstance(self.zero_point, np.ndarray) and self.zero_point.ndim == 0 \
            else self.zero_point
        if not _is_integer(zero_point):
            raise ValueError(f"QParams expects an integer zero_point, got {self.zero_point!r}")
        zero_point = int(zero_point)
        if not self.qmin <= zero_point <= self.qmax:
            raise ValueError(f"QParams expects zero_point in [{self.qmin}, {self.qmax}] for "
                             f"{self.bits}-bit {'signed' if self.signed else 'unsigned'}, got {zero_point}")
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "zero_point", zero_point)

    def _init_per_channel(self):
        scale = np.array(self.scale, dtype=np.float32)          # copy, float32
        if scale.ndim != 1 or scale.size == 0:
            raise ValueError(f"per-channel QParams (axis={self.axis}) expects scale of shape (C,), "
                             f"got shape {scale.shape}")
        if not np.all(np.isfinite(scale) & (scale > 0)):
            raise ValueError(f"QParams expects every scale finite and > 0, got {scale}")
        zero_point = np.array(self.zero_point)
        if zero_point.dtype.kind not in "iu":
            raise ValueError(f"QParams expects an integer zero_point array, got dtype {zero_point.dtype}")
        if zero_point.shape != scale.shape:
            raise ValueError(f"per-channel QParams expects zero_point of shape {scale.shape} (like scale), "
                             f"got {zero_point.shape}")
        zero_point = zero_point.astype(np.int64)
        if zero_point.min() < self.qmin or zero_point.max() > self.qmax:
            raise ValueError(f"QParams expects zero_point in [{self.qmin}, {self.qmax}], "
                             f"got values in [{zero_point.min()}, {zero_point.max()}]")
        scale.setflags(write=False)
        zero_point.setflags(write=False)
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "zero_point", zero_point)

    @property
    def qmin(self) -> int:
        return integer_range(self.bits, self.signed, self.narrow_range)[0]

    @property
    def qmax(self) -> int:
        return integer_range(self.bits, self.signed, self.narrow_range)[1]

    @property
    def per_channel(self) -> bool:
        return self.axis is not None

    @property
    def dtype(self) -> np.dtype:
        """The integer dtype `quantize` returns."""
        return code_dtype(self.bits, self.signed)

    def __eq__(self, other):
        if not isinstance(other, QParams):
            return NotImplemented
        return (self.bits, self.signed, self.axis, self.narrow_range) == \
            (other.bits, other.signed, other.axis, other.narrow_range) \
            and np.array_equal(self.scale, other.scale) and np.array_equal(self.zero_point, other.zero_point)

    __hash__ = None

    def broadcast(self, ndim: int) -> tuple[np.ndarray, np.ndarray, int | None]:
        """(scale, zero_point, axis) shaped to broadcast against an ndim-dimensional array."""
        if self.axis is None:
            return np.float32(self.scale), np.int64(self.zero_point), None
        if not -ndim <= self.axis < ndim:
            raise ValueError(f"per-channel axis {self.axis} is out of range for a {ndim}-d array")
        axis = self.axis % ndim
        shape = [1] * ndim
        shape[axis] = self.scale.size
        return self.scale.reshape(shape), self.zero_point.reshape(shape), axis


def _as_range_array(value, name: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"calculate_qparams expects real numbers for {name}, got dtype {arr.dtype}")
    arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"calculate_qparams expects finite {name}, got {value!r}")
    return arr


def calculate_qparams(lo, hi, bits: int = 8, symmetric: bool = False, signed: bool | None = None,
                      axis: int | None = None, narrow_range: bool = False, eps: float = FLOAT32_EPS) -> QParams:
    """scale = (hi − lo) / (qmax − qmin), zero_point = qmin − round(lo / scale), after widening [lo, hi] to contain 0.

    lo, hi: the real range to cover; scalars (axis=None) or 1-D arrays of one value per channel.
    symmetric: scale = max(|lo|, |hi|) / ((qmax − qmin) / 2) and a fixed zero_point (0 when signed).
    signed: None means signed = symmetric (int8 symmetric weights, uint8 affine activations).
    eps: smallest scale allowed, so that lo == hi == 0 still gives a valid grid.
    """
    signed = bool(symmetric) if signed is None else bool(signed)
    check_bits(bits, "calculate_qparams")
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"calculate_qparams expects eps > 0, got {eps!r}")
    lo, hi = _as_range_array(lo, "lo"), _as_range_array(hi, "hi")
    expected_ndim = 0 if axis is None else 1
    if lo.ndim != expected_ndim or hi.shape != lo.shape:
        want = "scalars" if axis is None else "1-D arrays of one value per channel"
        raise ValueError(f"calculate_qparams with axis={axis} expects lo and hi {want} of equal shape, "
                         f"got shapes {lo.shape} and {hi.shape}")
    if np.any(lo > hi):
        raise ValueError(f"calculate_qparams expects lo <= hi, got lo={lo} and hi={hi}")
    qmin, qmax = integer_range(bits, signed, narrow_range)
    eps = np.float32(eps)
    lo = np.minimum(lo, np.float32(0.0))     # widen to contain 0, so 0.0 is exactly representable
    hi = np.maximum(hi, np.float32(0.0))

    def make(scale, zero_point):
        if axis is None:
            return QParams(float(scale), int(zero_point), bits, signed, None, narrow_range)
        return QParams(scale.astype(np.float32), zero_point.astype(np.int64), bits, signed, axis, narrow_range)

    if symmetric:
        ### BEGIN SOLUTION 5.3
        amax = np.maximum(-lo, hi)
        scale = np.maximum(amax / np.float32((qmax - qmin) / 2), eps)
        zero_point = np.full(scale.shape, 0 if signed else (qmin + qmax + 1) // 2, dtype=np.int64)
        return make(scale, zero_point)
        ### END SOLUTION
    ### BEGIN SOLUTION 5.1
    scale = np.maximum((hi - lo) / np.float32(qmax - qmin), eps)
    zero_point = qmin - nearest_even(lo / scale).astype(np.int64)
    zero_point = np.clip(zero_point, qmin, qmax)
    return make(scale, zero_point)
    ### END SOLUTION


def _check_input(x, qp: QParams, who: str) -> np.ndarray:
    if not isinstance(qp, QParams):
        raise TypeError(f"{who} expects a QParams, got {type(qp).__name__}")
    x = np.asarray(x)
    if x.dtype.kind not in "fiub":
        raise TypeError(f"{who} expects a real-valued array, got dtype {x.dtype}")
    x = x.astype(np.float32, copy=False)
    if np.isnan(x).any():
        raise ValueError(f"{who} got NaN input; NaN has no integer code")
    return x


def quantize(x, qp: QParams) -> np.ndarray:
    """q = clamp(round_half_even(x / scale) + zero_point, qmin, qmax), in the smallest integer dtype that fits.

    The dtype is int8/uint8 up to 8 bits, int16/uint16 up to 16 (QParams.dtype).

    x is cast to float32; ±inf saturates to qmin/qmax; NaN raises ValueError.
    Per-channel: scale and zero_point broadcast along qp.axis.
    """
    x = _check_input(x, qp, "quantize")
    scale, zero_point, _ = qp.broadcast(x.ndim)
    if qp.per_channel and x.shape[qp.axis] != qp.scale.size:
        raise ValueError(f"quantize expects x.shape[{qp.axis}] == {qp.scale.size} channels, got shape {x.shape}")
    ### BEGIN SOLUTION 5.2
    with np.errstate(over="ignore"):                                 # |x / scale| > float32 max: inf, clamped below
        q = nearest_even(x / scale)                                      # float32, round half to even
    lower = np.float32(qp.qmin) - zero_point.astype(np.float32)      # clamp before the integer cast,
    upper = np.float32(qp.qmax) - zero_point.astype(np.float32)      # so huge x cannot overflow it
    q = np.clip(q, lower, upper)
    return (q.astype(np.int64) + zero_point).astype(qp.dtype)
    ### END SOLUTION


def dequantize(q, qp: QParams) -> np.ndarray:
    """x = scale · (q − zero_point), float32."""
    if not isinstance(qp, QParams):
        raise TypeError(f"dequantize expects a QParams, got {type(qp).__name__}")
    q = np.asarray(q)
    if q.dtype.kind not in "iu":
        raise TypeError(f"dequantize expects an integer array, got dtype {q.dtype}")
    if q.size and (q.min() < qp.qmin or q.max() > qp.qmax):
        raise ValueError(f"dequantize expects codes in [{qp.qmin}, {qp.qmax}], got values in [{q.min()}, {q.max()}]")
    scale, zero_point, _ = qp.broadcast(q.ndim)
    if qp.per_channel and q.shape[qp.axis] != qp.scale.size:
        raise ValueError(f"dequantize expects q.shape[{qp.axis}] == {qp.scale.size} channels, got shape {q.shape}")
    ### BEGIN SOLUTION 5.4
    return (q.astype(np.int64) - zero_point).astype(np.float32) * scale
    ### END SOLUTION


def fake_quantize(x, qp: QParams) -> np.ndarray:
    """x̂ = scale · (clamp(round(x / scale) + zero_point, qmin, qmax) − zero_point), float32 (no autograd)."""
    return dequantize(quantize(x, qp), qp)


def quantization_error(x, qp: QParams) -> np.ndarray:
    """e = fake_quantize(x) − x, float32, elementwise."""
    x = _check_input(x, qp, "quantization_error")
    return fake_quantize(x, qp) - x


def quantization_mse(x, qp: QParams) -> float:
    """mean((fake_quantize(x) − x)²), accumulated in float64 for a stable mean."""
    error = quantization_error(x, qp).astype(np.float64)
    return float(np.mean(error * error)) if error.size else 0.0


def quantize_multiplier(real_multiplier):
    """M = m0 · 2^-31 · 2^shift with m0 an int32 in [2^30, 2^31) (gemmlowp/TFLite QuantizeMultiplier).

    M = f · 2^shift with f in [0.5, 1) (frexp), m0 = round_half_away(f · 2^31); if the rounding
    reaches 2^31 then m0 halves and shift grows by one. M = 0 gives (0, 0); M < 2^-32, below what a
    31-bit mantissa with shift >= -31 covers, also gives (0, 0) as TFLite does. Relative error of
    the representation is at most 2^-31.
    A scalar gives (int, int); an array gives (int32 array, int32 array) for per-channel multipliers.
    """
    values = np.asarray(real_multiplier, dtype=np.float64)   # float64: a 31-bit mantissa needs more than float32
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(f"quantize_multiplier expects finite multipliers >= 0, got {real_multiplier!r}")
    fraction, shift = np.frexp(values)                       # values = fraction · 2^shift, fraction in [0.5, 1)
    m0 = np.floor(fraction * 2.0**31 + 0.5).astype(np.int64)  # exact product; round half away from zero
    carry = m0 == (1 << 31)
    m0 = np.where(carry, m0 // 2, m0)
    shift = np.where(carry, shift + 1, shift).astype(np.int64)
    underflow = (shift < -31) | (values == 0)
    m0 = np.where(underflow, 0, m0).astype(np.int32)
    shift = np.where(underflow, 0, shift).astype(np.int32)
    if values.ndim == 0:
        return int(m0), int(shift)
    return m0, shift
