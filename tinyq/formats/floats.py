"""Minifloats: a binary floating-point format is (sign, exponent, mantissa) bit fields.

A finite value of a format with `e` exponent bits, `m` mantissa bits and bias `b` is

    normal     (exponent field E in 1..):  (-1)^s · 2^(E - b) · (1 + M / 2^m)
    subnormal  (E = 0):                    (-1)^s · 2^(1 - b) · (M / 2^m)

so between 2^k and 2^(k+1) the grid is evenly spaced with step 2^(k - m), and below
the smallest normal 2^emin (emin = 1 - b) the step stays 2^(emin - m) down to zero.

What the all-ones exponent field means is the format's convention:

    "ieee"    has_inf and has_nan: E = all ones is inf (M = 0) or NaN (M != 0)
              (fp32, fp16, bf16, fp8 e5m2)
    "fn"      no inf, has_nan: only the code S.1111.111 is NaN, the rest of the top
              binade holds finite values (OCP fp8 e4m3fn: max 448)
    "finite"  no inf, no NaN: every code is a finite number (OCP fp4 e2m1: max 6)

Formats are *simulated*: values are stored as float32 and `round_to` puts them on
the format's grid. Every format here must fit inside float32 (m <= 23, exponents
within float32's range), so the grid values are exact float32 numbers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyq.formats.rounding import round_half_to_even, round_stochastic

ROUNDING_MODES = ("nearest", "stochastic")


@dataclass(frozen=True)
class FloatFormat:
    """value = (-1)^s · 2^(E - bias) · (1.M)   (subnormal: 2^(1 - bias) · (0.M))"""

    name: str
    exponent_bits: int
    mantissa_bits: int
    bias: int | None = None        # None: the IEEE default 2^(exponent_bits - 1) - 1
    has_inf: bool = True
    has_nan: bool = True
    saturating: bool = False       # overflow -> ±max instead of inf/NaN (default of round_to)

    def __post_init__(self):
        for field in ("exponent_bits", "mantissa_bits"):
            value = getattr(self, field)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise TypeError(f"FloatFormat {field} must be an int, got {value!r}")
        e, m = int(self.exponent_bits), int(self.mantissa_bits)
        if e < 1:
            raise ValueError(f"FloatFormat needs exponent_bits >= 1, got {e}")
        if m < 0:
            raise ValueError(f"FloatFormat needs mantissa_bits >= 0, got {m}")
        if 1 + e + m > 32:
            raise ValueError(f"FloatFormat has at most 32 bits (1 sign + exponent + mantissa), got 1 + {e} + {m}")
        if self.bias is None:
            object.__setattr__(self, "bias", 2 ** (e - 1) - 1)
        elif not isinstance(self.bias, (int, np.integer)) or isinstance(self.bias, bool):
            raise TypeError(f"FloatFormat bias must be an int or None, got {self.bias!r}")
        if self.has_inf and not self.has_nan:
            raise ValueError("FloatFormat with has_inf=True must also have has_nan=True (the IEEE convention)")
        if self.convention == "ieee" and m < 1:
            raise ValueError("IEEE-style FloatFormat (has_inf) needs mantissa_bits >= 1 to tell inf from NaN")
        if self.emax < self.emin:
            raise ValueError(f"FloatFormat {self.name!r} has no normal numbers: emax {self.emax} < emin {self.emin}")
        if m > 23 or self.emax > 127 or self.emin - m < -149:
            raise ValueError(
                f"FloatFormat {self.name!r} does not fit inside float32 (needs mantissa_bits <= 23 and "
                f"2^-149 <= values < 2^128), got mantissa_bits={m}, emin={self.emin}, emax={self.emax}")

    # ---- conventions and bit layout ----
    @property
    def convention(self) -> str:
        """'ieee' (inf and NaN), 'fn' (NaN only at all-ones) or 'finite' (no special codes)."""
        if self.has_inf:
            return "ieee"
        return "fn" if self.has_nan else "finite"

    @property
    def total_bits(self) -> int:
        return 1 + self.exponent_bits + self.mantissa_bits

    @property
    def max_code(self) -> int:
        """The largest finite magnitude's bit pattern (exponent and mantissa fields, no sign)."""
        all_ones = 2 ** (self.exponent_bits + self.mantissa_bits) - 1
        if self.convention == "ieee":
            return ((2 ** self.exponent_bits - 1) << self.mantissa_bits) - 1   # E = all ones - 1, M = all ones
        if self.convention == "fn":
            return all_ones - 1                                              # one code below the NaN
        return all_ones

    # ---- constants ----
    @property
    def emin(self) -> int:
        """Exponent of the smallest normal number: 1 - bias."""
        return 1 - self.bias

    @property
    def emax(self) -> int:
        """Exponent of the largest finite number."""
        return (self.max_code >> self.mantissa_bits) - self.bias

    @property
    def max(self) -> float:
        """Largest finite value."""
        mantissa = self.max_code & (2 ** self.mantissa_bits - 1)
        return float(np.ldexp(1.0 + mantissa / 2.0 ** self.mantissa_bits, self.emax))

    @property
    def min_normal(self) -> float:
        """2^emin."""
        return float(np.ldexp(1.0, self.emin))

    @property
    def min_subnormal(self) -> float:
        """2^(emin - m): the smallest positive value (equals min_normal when m = 0)."""
        return float(np.ldexp(1.0, self.emin - self.mantissa_bits))

    @property
    def eps(self) -> float:
        """2^-m: the gap between 1 and the next larger value (machine epsilon)."""
        return float(np.ldexp(1.0, -self.mantissa_bits))

    @property
    def unit_roundoff(self) -> float:
        """u = 2^-(m+1) = eps / 2: |round(x) - x| <= u·|x| for normal x under round-to-nearest."""
        return float(np.ldexp(1.0, -self.mantissa_bits - 1))

    def ulp(self, x) -> np.ndarray:
        """ulp(x) = 2^(clip(floor(log2|x|), emin, emax) - m): grid spacing in x's binade (float32)."""
        ### BEGIN SOLUTION 3.4
        magnitude = np.abs(np.asarray(x, dtype=np.float64))
        _, exponent_plus_one = np.frexp(magnitude)             # |x| = f · 2^k, f in [0.5, 1)
        exponent = np.clip(np.where(magnitude > 0, exponent_plus_one - 1, self.emin), self.emin, self.emax)
        spacing = np.ldexp(1.0, exponent - self.mantissa_bits)
        return np.where(np.isfinite(magnitude), spacing, np.nan).astype(np.float32)
        ### END SOLUTION

    def __str__(self) -> str:
        return self.name


FP32 = FloatFormat("fp32", exponent_bits=8, mantissa_bits=23)
FP16 = FloatFormat("fp16", exponent_bits=5, mantissa_bits=10)
BF16 = FloatFormat("bf16", exponent_bits=8, mantissa_bits=7)
FP8_E4M3 = FloatFormat("fp8_e4m3", exponent_bits=4, mantissa_bits=3, has_inf=False, saturating=True)
FP8_E5M2 = FloatFormat("fp8_e5m2", exponent_bits=5, mantissa_bits=2)
FP4_E2M1 = FloatFormat("fp4_e2m1", exponent_bits=2, mantissa_bits=1, has_inf=False, has_nan=False,
                       saturating=True)
FORMATS = {f.name: f for f in (FP32, FP16, BF16, FP8_E4M3, FP8_E5M2, FP4_E2M1)}


def _as_float64(x, who: str) -> np.ndarray:
    """Exact float64 copy of x (float16/32/64, ints below 2^53, bools)."""
    array = np.asarray(x)
    if array.dtype.kind not in "fiub":
        raise TypeError(f"{who} expects a real-valued array, got dtype {array.dtype}")
    return array.astype(np.float64)


def check_format(fmt, who: str) -> FloatFormat:
    """fmt itself if it is a FloatFormat, else a TypeError naming `who`."""
    if not isinstance(fmt, FloatFormat):
        raise TypeError(f"{who} expects a FloatFormat (e.g. floats.BF16), got {type(fmt).__name__}")
    return fmt


def round_to(x, fmt: FloatFormat, mode: str = "nearest", rng: np.random.Generator | None = None,
             flush_subnormals: bool = False, saturate: bool | None = None) -> np.ndarray:
    """r = sign(x) · round(|x| / q) · q,  q = 2^(max(floor(log2|x|), emin) - m)   (float32 on fmt's grid)

    x is rounded once, exactly (float16/32/64 input is read without prior rounding).
    mode      "nearest": round half to even;  "stochastic": up with probability equal to
              the distance from the lower neighbour over the gap (needs `rng`).
    overflow  a result beyond fmt.max becomes ±max when `saturate` (None: fmt.saturating),
              else ±inf (ieee) or NaN (fn). Input ±inf stays ±inf in ieee formats, else it
              saturates to ±max or becomes NaN the same way. NaN stays NaN.
    flush_subnormals  results below min_normal become ±0 (flush-to-zero after rounding).
    """
    fmt = check_format(fmt, "round_to")
    if mode not in ROUNDING_MODES:
        raise ValueError(f"round_to mode must be one of {ROUNDING_MODES}, got {mode!r}")
    if mode == "stochastic" and not isinstance(rng, np.random.Generator):
        raise TypeError(f"round_to(mode='stochastic') needs rng=np.random.Generator, got {type(rng).__name__}")
    saturate = fmt.saturating if saturate is None else bool(saturate)
    if not saturate and fmt.convention == "finite":
        raise ValueError(f"{fmt.name} has neither inf nor NaN, so overflow must saturate; got saturate=False")
    values = _as_float64(x, "round_to")
    is_nan = np.isnan(values)
    if not fmt.has_nan and is_nan.any():
        raise ValueError(f"{fmt.name} has no NaN, but the input holds {int(is_nan.sum())} NaN values")

    magnitude = np.abs(values)
    _, exponent_plus_one = np.frexp(magnitude)                   # |x| = f · 2^k with f in [0.5, 1)
    exponent = np.maximum(exponent_plus_one - 1, fmt.emin)       # binade; subnormals share emin's step
    step_exponent = exponent - fmt.mantissa_bits                 # grid step q = 2^step_exponent
    scaled = np.ldexp(magnitude, -step_exponent)                 # |x| / q, exact (power-of-two scale)
    scaled = np.where(np.isfinite(scaled), scaled, 0.0)          # inf / NaN are handled below
    if mode == "nearest":
        steps = round_half_to_even(scaled)
    else:
        steps = round_stochastic(scaled, rng)
    result = np.ldexp(steps, step_exponent)

    overflow_value = fmt.max if saturate else (np.inf if fmt.has_inf else np.nan)
    result = np.where(result > fmt.max, overflow_value, result)
    if flush_subnormals:
        result = np.where(result < fmt.min_normal, 0.0, result)
    is_inf = np.isinf(magnitude)
    result = np.where(is_inf, np.inf if fmt.has_inf else overflow_value, result)
    result = np.where(is_nan, np.nan, result)
    return np.copysign(result, values).astype(np.float32)     # exact: the grid lies inside float32


# ---- bit fields ----
def encode(x, fmt: FloatFormat) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(s, E, M) with x = (-1)^s · 2^(E - bias) · (1 + M/2^m)  (E = 0: 2^emin · M/2^m); int64 arrays.

    x is first rounded to fmt (round_to, nearest-even, the format's overflow default).
    NaN is encoded as E = all ones with M = 2^(m-1) (ieee, the quiet NaN) or M = all ones (fn).
    """
    fmt = check_format(fmt, "encode")
    values = round_to(x, fmt).astype(np.float64)
    m = fmt.mantissa_bits
    sign = np.signbit(values).astype(np.int64)
    magnitude = np.abs(values)
    finite = np.isfinite(magnitude)
    _, exponent_plus_one = np.frexp(np.where(finite, magnitude, 0.0))
    is_normal = finite & (magnitude >= fmt.min_normal)
    exponent = np.where(is_normal, exponent_plus_one - 1, fmt.emin)
    steps = np.ldexp(np.where(finite, magnitude, 0.0), m - exponent).astype(np.int64)   # exact integers
    exponent_field = np.where(is_normal, exponent + fmt.bias, 0).astype(np.int64)
    mantissa_field = np.where(is_normal, steps - 2 ** m, steps).astype(np.int64)
    top_exponent = 2 ** fmt.exponent_bits - 1
    nan_mantissa = 2 ** (m - 1) if fmt.convention == "ieee" else 2 ** m - 1
    exponent_field = np.where(finite, exponent_field, top_exponent)
    mantissa_field = np.where(np.isinf(magnitude), 0, mantissa_field)
    mantissa_field = np.where(np.isnan(magnitude), nan_mantissa, mantissa_field)
    return sign, exponent_field.astype(np.int64), mantissa_field.astype(np.int64)


def decode(sign, exponent, mantissa, fmt: FloatFormat) -> np.ndarray:
    """x = (-1)^s · 2^(E - bias) · (1 + M/2^m), or 2^emin · M/2^m when E = 0; specials per convention (float32)."""
    fmt = check_format(fmt, "decode")
    fields = {}
    limits = {"sign": 1, "exponent": 2 ** fmt.exponent_bits - 1, "mantissa": 2 ** fmt.mantissa_bits - 1}
    for name, value in (("sign", sign), ("exponent", exponent), ("mantissa", mantissa)):
        array = np.asarray(value)
        if array.dtype.kind not in "iub":
            raise TypeError(f"decode expects integer {name} fields, got dtype {array.dtype}")
        array = array.astype(np.int64)
        if array.size and (array.min() < 0 or array.max() > limits[name]):
            raise ValueError(f"decode: {fmt.name} {name} field must lie in [0, {limits[name]}], "
                             f"got values in [{array.min()}, {array.max()}]")
        fields[name] = array
    ### BEGIN SOLUTION 3.3
    s, e, mant = np.broadcast_arrays(fields["sign"], fields["exponent"], fields["mantissa"])
    m = fmt.mantissa_bits
    significand = np.where(e > 0, mant + 2 ** m, mant).astype(np.float64)   # integer steps of 2^(exp - m)
    magnitude = np.ldexp(significand, np.maximum(e - fmt.bias, fmt.emin) - m)
    top = e == 2 ** fmt.exponent_bits - 1
    if fmt.convention == "ieee":
        magnitude = np.where(top, np.where(mant == 0, np.inf, np.nan), magnitude)
    elif fmt.convention == "fn":
        magnitude = np.where(top & (mant == 2 ** m - 1), np.nan, magnitude)
    return np.where(s == 1, -magnitude, magnitude).astype(np.float32)
    ### END SOLUTION


def to_bits(x, fmt: FloatFormat) -> np.ndarray:
    """bits = s << (e + m) | E << m | M   (int64; x is rounded to fmt first)."""
    sign, exponent, mantissa = encode(x, fmt)
    return (sign << (fmt.exponent_bits + fmt.mantissa_bits)) | (exponent << fmt.mantissa_bits) | mantissa


def from_bits(bits, fmt: FloatFormat) -> np.ndarray:
    """x = decode(bits >> (e + m), (bits >> m) & (2^e - 1), bits & (2^m - 1))   (float32)."""
    fmt = check_format(fmt, "from_bits")
    array = np.asarray(bits)
    if array.dtype.kind not in "iu":
        raise TypeError(f"from_bits expects integer bit patterns, got dtype {array.dtype}")
    array = array.astype(np.int64)
    if array.size and (array.min() < 0 or array.max() >= 2 ** fmt.total_bits):
        raise ValueError(f"from_bits: {fmt.name} bit patterns lie in [0, 2^{fmt.total_bits}), "
                         f"got values in [{array.min()}, {array.max()}]")
    m, e = fmt.mantissa_bits, fmt.exponent_bits
    return decode(array >> (e + m), (array >> m) & (2 ** e - 1), array & (2 ** m - 1), fmt)


def all_values(fmt: FloatFormat) -> np.ndarray:
    """Every finite value of fmt, sorted, ±0 counted once (float32; formats of at most 16 bits)."""
    fmt = check_format(fmt, "all_values")
    if fmt.total_bits > 16:
        raise ValueError(f"all_values lists formats of at most 16 bits, {fmt.name} has {fmt.total_bits}")
    values = from_bits(np.arange(2 ** fmt.total_bits), fmt)
    return np.unique(values[np.isfinite(values)])
