"""The one home of rounding: every rounding rule of tinyq is written here once, and used everywhere else.

    round_half_to_even(x)        n = nearest integer, ties to the even one           (exercise 3.1)
    round_stochastic(x, rng)     n = floor(x) + [u < x − floor(x)], u ~ U[0, 1)       (exercise 3.2)
    round_to_integer(x, mode)    any ROUNDING_MODES for floats (fixed point and affine quantization use it)
    round_shift(v, s, mode)      round(v / 2^s) on int64 in any mode: the right shift of fixed point
    rounding_right_shift(v, s)   round(v / 2^s), ties away from zero, on int64: gemmlowp's
                                 RoundingDivideByPOT, the last step of integer requantization
    check_bits(bits, who)        the bit-width check (an int in 2..16) shared by every entry point
    integer_range(bits, signed)  [qmin, qmax] of a b-bit integer grid (narrow_range drops qmin)

Randomness always comes from an explicit np.random.Generator: the same seed, the same roundings.
round_half_to_even and np.rint are the same function (tests/test_rounding.py checks it on ties and
at random); the hot paths call `nearest_even = np.rint`, NumPy's C loop of this rule.

This module imports only NumPy.
"""
from __future__ import annotations

from numbers import Integral

import numpy as np

__all__ = ["ROUNDING_MODES", "nearest_even", "round_half_to_even", "round_stochastic", "round_to_integer",
           "round_shift", "rounding_right_shift", "check_rounding", "check_bits", "integer_range",
           "MIN_BITS", "MAX_BITS"]

ROUNDING_MODES = ("nearest_even", "nearest_away", "nearest_up", "floor", "toward_zero", "stochastic")
MIN_BITS, MAX_BITS = 2, 16

nearest_even = np.rint      # round half to even, as NumPy computes it (nearbyint); equals round_half_to_even


# ---- the two rounding rules of the chapters ----
def round_half_to_even(x) -> np.ndarray:
    """n = the integer nearest to x; a tie (fraction exactly 1/2) goes to the even integer.

    Float in, float out (same dtype); ±inf and NaN pass through. x − floor(x) is exact in floating point.
    """
    x = np.asarray(x)
    with np.errstate(invalid="ignore"):           # inf - inf is NaN below, and NaN > 0.5 is False
        ### BEGIN SOLUTION 3.1
        floor = np.floor(x)
        fraction = x - floor                      # exact, in [0, 1)
        is_odd = np.fmod(floor, 2.0) != 0
        round_up = (fraction > 0.5) | ((fraction == 0.5) & is_odd)
        return floor + round_up
        ### END SOLUTION


def round_stochastic(x, rng: np.random.Generator) -> np.ndarray:
    """n = floor(x) + 1 with probability x − floor(x), else floor(x)   (so E[n] = x).  Needs an explicit rng."""
    check_rounding("stochastic", rng)
    x = np.asarray(x)
    with np.errstate(invalid="ignore"):
        ### BEGIN SOLUTION 3.2
        floor = np.floor(x)
        fraction = x - floor                      # distance above the lower neighbour, in [0, 1)
        round_up = rng.random(np.shape(x)) < fraction
        return floor + round_up
        ### END SOLUTION


# ---- every mode, for floats and for integer shifts ----
def check_rounding(mode: str, rng=None) -> None:
    """mode is one of ROUNDING_MODES; stochastic rounding gets an np.random.Generator."""
    if mode not in ROUNDING_MODES:
        raise ValueError(f"rounding must be one of {ROUNDING_MODES}, got {mode!r}")
    if mode == "stochastic" and not isinstance(rng, np.random.Generator):
        raise TypeError(f"rounding='stochastic' needs rng=np.random.Generator, got {type(rng).__name__}")


def round_to_integer(x, rounding: str = "nearest_even", rng: np.random.Generator | None = None) -> np.ndarray:
    """n = round(x) in the given mode; float array of integers (float32 stays float32, else float64).

    nearest_even   ties to even (IEEE default)      nearest_away  ties away from zero (C's round)
    nearest_up     ties toward +inf                 floor / toward_zero
    stochastic     up with probability equal to the distance from floor (needs rng)
    """
    check_rounding(rounding, rng)
    x = np.asarray(x)
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    with np.errstate(invalid="ignore"):              # inf - inf below is NaN, and NaN > y is False
        if rounding == "nearest_even":
            return nearest_even(x)
        if rounding == "floor":
            return np.floor(x)
        if rounding == "toward_zero":
            return np.trunc(x)
        if rounding == "nearest_away":
            truncated = np.trunc(x)
            return truncated + np.copysign(np.abs(x - truncated) >= 0.5, x).astype(x.dtype)
        if rounding == "nearest_up":
            floor = np.floor(x)
            return floor + (x - floor >= 0.5)
        return round_stochastic(x, rng).astype(x.dtype, copy=False)


def _as_int64(value, who: str) -> np.ndarray:
    value = np.asarray(value)
    if value.dtype.kind not in "iu":
        raise TypeError(f"{who} expects integers, got dtype {value.dtype}")
    return value.astype(np.int64)


def round_shift(value, shift: int, rounding: str = "nearest_even",
                rng: np.random.Generator | None = None) -> np.ndarray:
    """n = round(value / 2^shift) on int64 in any ROUNDING_MODES (shift <= 0: the exact value · 2^-shift)."""
    check_rounding(rounding, rng)
    value = _as_int64(value, "round_shift")
    shift = int(shift)
    if shift > 62:
        raise ValueError(f"round_shift supports shifts up to 62 bits on int64, got {shift}")
    if shift <= 0:
        return value << -shift                       # exact while it fits int64 (else wraps mod 2^64)
    floor = value >> shift                           # arithmetic shift: floor division by 2^shift
    remainder = value - (floor << shift)             # in [0, 2^shift): what the shift drops
    half = 1 << (shift - 1)
    if rounding == "floor":
        round_up = np.zeros(value.shape, dtype=bool)
    elif rounding == "toward_zero":
        round_up = (value < 0) & (remainder != 0)
    elif rounding == "nearest_even":
        round_up = (remainder > half) | ((remainder == half) & (floor % 2 == 1))
    elif rounding == "nearest_away":
        round_up = (remainder > half) | ((remainder == half) & (value >= 0))
    elif rounding == "nearest_up":
        round_up = remainder >= half
    else:                                            # stochastic: P(up) = remainder / 2^shift exactly
        round_up = rng.integers(0, 1 << shift, size=value.shape, dtype=np.int64) < remainder
    return floor + round_up


def rounding_right_shift(value, shift: int) -> np.ndarray:
    """n = round(value / 2^shift), ties away from zero, on int64: gemmlowp's RoundingDivideByPOT.

        mask = 2^shift − 1,  remainder = value & mask,  threshold = mask >> 1, plus 1 if value < 0
        n = (value >> shift) + (remainder > threshold)

    The arithmetic shift floors; the remainder (what it dropped, in [0, 2^shift)) decides: above half
    rounds up, and exactly half rounds up only for positive values (away from zero). shift in 0..62.
    """
    value = _as_int64(value, "rounding_right_shift")
    if not isinstance(shift, Integral) or isinstance(shift, bool) or not 0 <= shift <= 62:
        raise ValueError(f"rounding_right_shift expects shift an integer in 0..62, got {shift!r}")
    shift = int(shift)
    mask = np.int64((1 << shift) - 1)
    remainder = value & mask
    threshold = (mask >> 1) + (value < 0)
    return (value >> shift) + (remainder > threshold)


# ---- integer grids ----
def check_bits(bits, who: str, low: int = MIN_BITS, high: int = MAX_BITS) -> int:
    """bits as an int after checking it is an integer (not a bool) in low..high; ValueError naming `who`."""
    if not isinstance(bits, Integral) or isinstance(bits, bool) or not low <= bits <= high:
        raise ValueError(f"{who} expects bits an integer in {low}..{high}, got {bits!r}")
    return int(bits)


def integer_range(bits: int, signed: bool, narrow_range: bool = False) -> tuple[int, int]:
    """[qmin, qmax] = [-2^(b-1), 2^(b-1) - 1] signed, [0, 2^b - 1] unsigned; narrow_range raises qmin by 1."""
    bits = check_bits(bits, "integer_range", 1, 64)
    if signed:
        qmin, qmax = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    else:
        qmin, qmax = 0, (1 << bits) - 1
    return qmin + int(bool(narrow_range)), qmax
