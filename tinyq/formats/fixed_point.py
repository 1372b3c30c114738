"""Fixed point Qm.n: a real number x is stored as the integer q = round(x · 2^n).

A QFormat has an optional sign bit, m integer bits and n fractional bits, so a word of
w = signed + m + n bits holds q in [qmin, qmax] and means x = q · 2^-n:

    signed    qmin = -2^(w-1),  qmax = 2^(w-1) - 1     (two's complement)
    unsigned  qmin = 0,         qmax = 2^w - 1

Everything past `to_fixed` is exact integer arithmetic on raw int64 values: a product
of Qa.fa and Qb.fb numbers is exact with fa + fb fractional bits, and only a right shift
(`round_shift`) loses information, in a rounding mode you choose. Results that leave
[qmin, qmax] are clamped or wrapped (`apply_overflow`). Words are at most 32 bits, so
int64 never overflows in add, sub, multiply or rescale.

Rounding modes (the same meaning for floats in `round_to_integer` and for integer
shifts in `round_shift`):
    nearest_even   nearest, ties to the even integer (IEEE default, NumPy's rint)
    nearest_away   nearest, ties away from zero (C's round, gemmlowp's rounding shift)
    nearest_up     nearest, ties toward +inf (floor(x + 1/2): "add half, then shift")
    floor          toward -inf (an arithmetic right shift)
    toward_zero    truncation (C integer division)
    stochastic     up with probability equal to the distance from floor (needs rng)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyq.formats.rounding import (ROUNDING_MODES, check_rounding, integer_range, round_shift,  # noqa: F401
                                    round_to_integer)

OVERFLOW_MODES = ("saturate", "wrap")


@dataclass(frozen=True)
class QFormat:
    """x = q · 2^-frac_bits,  q an integer of signed + int_bits + frac_bits bits"""

    int_bits: int
    frac_bits: int
    signed: bool = True

    def __post_init__(self):
        for field in ("int_bits", "frac_bits"):
            value = getattr(self, field)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise TypeError(f"QFormat {field} must be an int, got {value!r}")
            if value < 0:
                raise ValueError(f"QFormat {field} must be >= 0, got {value}")
        if not isinstance(self.signed, (bool, np.bool_)):
            raise TypeError(f"QFormat signed must be a bool, got {self.signed!r}")
        if not 1 <= self.word_bits <= 32:
            raise ValueError(f"QFormat word (sign + int_bits + frac_bits) must have 1..32 bits, "
                             f"got {int(self.signed)} + {self.int_bits} + {self.frac_bits} = {self.word_bits}")

    @property
    def word_bits(self) -> int:
        return int(self.signed) + self.int_bits + self.frac_bits

    @property
    def resolution(self) -> float:
        """2^-frac_bits: the step between neighbouring values."""
        return 2.0 ** -self.frac_bits

    @property
    def qmin(self) -> int:
        return integer_range(self.word_bits, self.signed)[0]

    @property
    def qmax(self) -> int:
        return integer_range(self.word_bits, self.signed)[1]

    @property
    def min(self) -> float:
        return self.qmin * self.resolution

    @property
    def max(self) -> float:
        return self.qmax * self.resolution

    @property
    def range(self) -> tuple[float, float]:
        """(min, max): the smallest and largest representable values."""
        return self.min, self.max

    @property
    def float_dtype(self) -> np.dtype:
        """float32 if it holds every value of the format exactly (<= 24 magnitude bits), else float64."""
        return np.dtype(np.float32 if self.word_bits - int(self.signed) <= 24 else np.float64)

    def __str__(self) -> str:
        return f"{'' if self.signed else 'U'}Q{self.int_bits}.{self.frac_bits}"


def _check_mode(value: str, allowed: tuple, what: str) -> None:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {allowed}, got {value!r}")


def _check_raw(q, fmt: QFormat, who: str) -> np.ndarray:
    """q as int64, after checking it is integer and inside [fmt.qmin, fmt.qmax]."""
    if not isinstance(fmt, QFormat):
        raise TypeError(f"{who} expects a QFormat, got {type(fmt).__name__}")
    array = np.asarray(q)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{who} expects raw integers of {fmt}, got dtype {array.dtype}")
    array = array.astype(np.int64)
    if array.size and (array.min() < fmt.qmin or array.max() > fmt.qmax):
        raise ValueError(f"{who}: raw {fmt} integers must lie in [{fmt.qmin}, {fmt.qmax}], "
                         f"got values in [{array.min()}, {array.max()}]")
    return array


# ---- the reusable pieces: rounding and overflow ----
def apply_overflow(value, qmin: int, qmax: int, mode: str = "saturate") -> np.ndarray:
    """saturate: clamp(v, qmin, qmax);  wrap: qmin + (v - qmin) mod (qmax - qmin + 1)   (int64)."""
    _check_mode(mode, OVERFLOW_MODES, "overflow")
    value = np.asarray(value).astype(np.int64)
    ### BEGIN SOLUTION 4.3
    if mode == "saturate":
        return np.clip(value, qmin, qmax)
    span = qmax - qmin + 1                           # 2^w: wrap is two's complement (or modulo for unsigned)
    if span & (span - 1) == 0 and span <= 2 ** 63:   # a power of two: keep the low w bits (int64 arithmetic
        with np.errstate(over="ignore"):             # wraps mod 2^64, a multiple of 2^w, so nothing is lost)
            return ((value - np.int64(qmin)) & np.int64(span - 1)) + np.int64(qmin)
    return qmin + np.mod(value - qmin, span)
    ### END SOLUTION


# ---- float <-> fixed ----
def to_fixed(a, fmt: QFormat, rounding: str = "nearest_even", overflow: str = "saturate",
             rng: np.random.Generator | None = None) -> np.ndarray:
    """q = overflow(round(a · 2^frac_bits), qmin, qmax)   (int64 raw integers)"""
    if not isinstance(fmt, QFormat):
        raise TypeError(f"to_fixed expects a QFormat, got {type(fmt).__name__}")
    check_rounding(rounding, rng)
    _check_mode(overflow, OVERFLOW_MODES, "overflow")
    values = np.asarray(a)
    if values.dtype.kind not in "fiub":
        raise TypeError(f"to_fixed expects a real-valued array, got dtype {values.dtype}")
    values = values.astype(np.float64)               # exact for float16/32/64 input
    is_nan = np.isnan(values)
    if is_nan.any():
        first = tuple(int(i) for i in np.argwhere(is_nan)[0])
        raise ValueError(f"to_fixed got {int(is_nan.sum())} NaN values (first at index {first}); "
                         f"NaN has no fixed-point value")
    if overflow == "wrap" and np.isinf(values).any():
        raise ValueError(f"to_fixed(overflow='wrap') got {int(np.isinf(values).sum())} infinite values; "
                         f"inf has no wrapped value (use overflow='saturate')")
    integers = round_to_integer(np.ldexp(values, fmt.frac_bits), rounding, rng)   # a · 2^n is exact
    if overflow == "saturate":
        return np.clip(integers, fmt.qmin, fmt.qmax).astype(np.int64)
    residue = np.fmod(integers, 2.0 ** fmt.word_bits).astype(np.int64)   # fmod is exact; |residue| < 2^w
    return apply_overflow(residue, fmt.qmin, fmt.qmax, "wrap")


def to_float(q, fmt: QFormat) -> np.ndarray:
    """x = q · 2^-frac_bits, exact: float32 when the word has <= 24 magnitude bits, else float64."""
    q = _check_raw(q, fmt, "to_float")
    return np.ldexp(q.astype(fmt.float_dtype), -fmt.frac_bits).astype(fmt.float_dtype)


# ---- exact integer arithmetic on raw values ----
def add(qa, qb, fmt: QFormat, overflow: str = "saturate") -> np.ndarray:
    """q = overflow(qa + qb): a + b in the same Qm.n, exact before the overflow step."""
    qa, qb = _check_raw(qa, fmt, "add"), _check_raw(qb, fmt, "add")
    return apply_overflow(qa + qb, fmt.qmin, fmt.qmax, overflow)


def sub(qa, qb, fmt: QFormat, overflow: str = "saturate") -> np.ndarray:
    """q = overflow(qa - qb): a - b in the same Qm.n, exact before the overflow step."""
    qa, qb = _check_raw(qa, fmt, "sub"), _check_raw(qb, fmt, "sub")
    return apply_overflow(qa - qb, fmt.qmin, fmt.qmax, overflow)


def saturating_add(qa, qb, fmt: QFormat) -> np.ndarray:
    """q = clamp(qa + qb, qmin, qmax): the sum, pinned to the nearest end of the range on overflow."""
    qa, qb = _check_raw(qa, fmt, "saturating_add"), _check_raw(qb, fmt, "saturating_add")
    ### BEGIN SOLUTION 4.2
    exact_sum = qa + qb                              # int64 cannot overflow: both words have <= 32 bits
    return np.minimum(np.maximum(exact_sum, fmt.qmin), fmt.qmax)
    ### END SOLUTION


def _magnitude_bits(fmt: QFormat) -> int:
    """|q| <= 2^bits for every q of fmt."""
    return fmt.word_bits - int(fmt.signed)


def _clip_before_left_shift(value: np.ndarray, shift: int, fmt: QFormat, overflow: str) -> np.ndarray:
    """Clamp value to ±2^(w - L) before a left shift by L = -shift under saturation.

    Anything beyond that bound lands outside fmt after the shift and saturates anyway,
    so the clamp changes no result but keeps value · 2^L inside int64.
    """
    if shift >= 0 or overflow != "saturate":
        return value                                 # right shifts shrink; wrapping is exact mod 2^64
    bound = 2 ** max(fmt.word_bits + shift, 0)
    return np.clip(value, -bound, bound)


def multiply(qa, fmt_a: QFormat, qb, fmt_b: QFormat, out_fmt: QFormat, rounding: str = "nearest_even",
             overflow: str = "saturate", rng: np.random.Generator | None = None) -> np.ndarray:
    """q = overflow(round(qa · qb / 2^(fa + fb - fo))): the product (exact, fa + fb fraction bits) in out_fmt."""
    qa, qb = _check_raw(qa, fmt_a, "multiply"), _check_raw(qb, fmt_b, "multiply")
    if not isinstance(out_fmt, QFormat):
        raise TypeError(f"multiply expects out_fmt to be a QFormat, got {type(out_fmt).__name__}")
    check_rounding(rounding, rng)
    _check_mode(overflow, OVERFLOW_MODES, "overflow")
    if _magnitude_bits(fmt_a) + _magnitude_bits(fmt_b) > 62:
        raise ValueError(f"multiply: the exact product of {fmt_a} and {fmt_b} needs more than 63 bits")
    widen = out_fmt.frac_bits - fmt_a.frac_bits - fmt_b.frac_bits
    if overflow == "saturate" and widen > 0 and _magnitude_bits(fmt_a) + _magnitude_bits(fmt_b) + widen > 62:
        raise ValueError(f"multiply: shifting the {fmt_a} x {fmt_b} product left by {widen} bits into "
                         f"{out_fmt} could overflow int64; use fewer fractional bits in out_fmt")
    ### BEGIN SOLUTION 4.1
    product = qa * qb                                # exact, with fa + fb fractional bits
    shift = fmt_a.frac_bits + fmt_b.frac_bits - out_fmt.frac_bits
    rounded = round_shift(product, shift, rounding, rng)   # now out_fmt.frac_bits fractional bits
    return apply_overflow(rounded, out_fmt.qmin, out_fmt.qmax, overflow)
    ### END SOLUTION


def rescale(q, from_fmt: QFormat, to_fmt: QFormat, rounding: str = "nearest_even",
            overflow: str = "saturate", rng: np.random.Generator | None = None) -> np.ndarray:
    """q' = overflow(round(q / 2^(n_from - n_to))): the same number in another Qm.n."""
    q = _check_raw(q, from_fmt, "rescale")
    if not isinstance(to_fmt, QFormat):
        raise TypeError(f"rescale expects to_fmt to be a QFormat, got {type(to_fmt).__name__}")
    shift = from_fmt.frac_bits - to_fmt.frac_bits
    rounded = round_shift(_clip_before_left_shift(q, shift, to_fmt, overflow), shift, rounding, rng)
    return apply_overflow(rounded, to_fmt.qmin, to_fmt.qmax, overflow)


def matmul(qa, fmt_a: QFormat, qb, fmt_b: QFormat, out_fmt: QFormat, acc_bits: int | None = None,
           acc_overflow: str = "wrap", rounding: str = "nearest_even", overflow: str = "saturate",
           rng: np.random.Generator | None = None) -> np.ndarray:
    """q = overflow(round(acc / 2^(fa + fb - fo))),  acc = sum_k qa[i,k] · qb[k,j] in an acc_bits register.

    Products are exact (fa + fb fractional bits) and are summed in a signed accumulator of
    acc_bits bits that wraps or saturates after every addition (acc_overflow); acc_bits=None
    is an exact accumulator (ValueError if int64 could overflow). The sum is rounded once.
    Shapes follow np.matmul for 1-D or 2-D operands: (M, K) @ (K, N), (K,) @ (K, N), ...
    """
    qa, qb = _check_raw(qa, fmt_a, "matmul"), _check_raw(qb, fmt_b, "matmul")
    if not isinstance(out_fmt, QFormat):
        raise TypeError(f"matmul expects out_fmt to be a QFormat, got {type(out_fmt).__name__}")
    _check_mode(acc_overflow, OVERFLOW_MODES, "acc_overflow")
    check_rounding(rounding, rng)
    _check_mode(overflow, OVERFLOW_MODES, "overflow")
    if qa.ndim not in (1, 2) or qb.ndim not in (1, 2) or qa.shape[-1] != qb.shape[0]:
        raise ValueError(f"matmul expects (M, K) or (K,) @ (K, N) or (K,), got {qa.shape} @ {qb.shape}")
    if _magnitude_bits(fmt_a) + _magnitude_bits(fmt_b) > 62:
        raise ValueError(f"matmul: the exact product of {fmt_a} and {fmt_b} needs more than 63 bits")
    depth = qa.shape[-1]
    if acc_bits is None:
        largest = depth * int(np.abs(qa).max(initial=0)) * int(np.abs(qb).max(initial=0))
        if largest >= 2 ** 63:
            raise ValueError(f"matmul: an exact sum of {depth} products may reach {largest} and overflow int64; "
                             f"pass acc_bits to model a finite accumulator")
        acc = qa @ qb
    else:
        if not isinstance(acc_bits, (int, np.integer)) or not 2 <= acc_bits <= 63:
            raise ValueError(f"matmul acc_bits must be an int in [2, 63] or None, got {acc_bits!r}")
        ### BEGIN SOLUTION 4.4
        acc_min, acc_max = -(2 ** (acc_bits - 1)), 2 ** (acc_bits - 1) - 1
        if acc_overflow == "wrap":                   # wrapping is modular, so the order of the sum is irrelevant
            acc = apply_overflow(qa @ qb, acc_min, acc_max, "wrap")   # int64 wraps mod 2^64, a multiple of 2^acc
        else:                                        # saturation depends on the order: add one k at a time
            acc = np.zeros(qa.shape[:-1] + qb.shape[1:], dtype=np.int64)
            for k in range(depth):
                product = qa[..., k, None] * qb[k] if qb.ndim == 2 else qa[..., k] * qb[k]
                acc = np.clip(acc + np.clip(product, acc_min, acc_max), acc_min, acc_max)
        ### END SOLUTION
    shift = fmt_a.frac_bits + fmt_b.frac_bits - out_fmt.frac_bits
    rounded = round_shift(_clip_before_left_shift(acc, shift, out_fmt, overflow), shift, rounding, rng)
    return apply_overflow(rounded, out_fmt.qmin, out_fmt.qmax, overflow)


def dot(qa, fmt_a: QFormat, qb, fmt_b: QFormat, out_fmt: QFormat, **options) -> np.ndarray:
    """q = round(sum_k qa[k] · qb[k]) in out_fmt: `matmul` of two vectors (same options)."""
    if np.ndim(qa) != 1 or np.ndim(qb) != 1:
        raise ValueError(f"dot expects two vectors, got shapes {np.shape(qa)} and {np.shape(qb)}")
    return matmul(qa, fmt_a, qb, fmt_b, out_fmt, **options)
