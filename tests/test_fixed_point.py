"""Tests for tinyq.formats.fixed_point.

Oracles: exact rationals (fractions.Fraction) rounded by Python's own integer rules,
and NumPy's overflowing int8/int16/int32 arithmetic for the wrap mode.
"""
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyq.formats import fixed_point as fp
from tinyq.formats.fixed_point import QFormat

MODES = fp.ROUNDING_MODES
DETERMINISTIC = tuple(m for m in MODES if m != "stochastic")
NEAREST = ("nearest_even", "nearest_away", "nearest_up")
FAST = settings(max_examples=60, deadline=None)

formats = st.tuples(st.integers(0, 12), st.integers(0, 12), st.booleans()).filter(
    lambda t: t[0] + t[1] + t[2] >= 1).map(lambda t: QFormat(*t))


def reference_round(value: Fraction, mode: str) -> int:
    """Round an exact rational to an integer with Python's exact arithmetic."""
    if mode == "nearest_even":
        return round(value)                          # Fraction.__round__ rounds half to even
    if mode == "nearest_away":
        return int(math.copysign(math.floor(abs(value) + Fraction(1, 2)), value))
    if mode == "nearest_up":
        return math.floor(value + Fraction(1, 2))
    if mode == "floor":
        return math.floor(value)
    if mode == "toward_zero":
        return int(value)                            # int() truncates toward zero
    raise AssertionError(mode)


def reference_overflow(value: int, fmt: QFormat, mode: str) -> int:
    if mode == "saturate":
        return min(max(value, fmt.qmin), fmt.qmax)
    return (value - fmt.qmin) % 2 ** fmt.word_bits + fmt.qmin


def raw_values(fmt, size=20):
    return st.lists(st.integers(fmt.qmin, fmt.qmax), min_size=1, max_size=size).map(
        lambda v: np.array(v, dtype=np.int64))


# ---- QFormat ----
@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32])
def test_qmin_qmax_match_numpy_integer_limits(dtype):
    info = np.iinfo(dtype)
    signed = info.min < 0
    fmt = QFormat(int_bits=info.bits - 4 - int(signed), frac_bits=4, signed=signed)
    assert (fmt.word_bits, fmt.qmin, fmt.qmax) == (info.bits, info.min, info.max)
    assert fmt.range == (info.min / 16, info.max / 16)
    assert fmt.resolution == 1 / 16


def test_format_names_and_float_dtype():
    assert str(QFormat(3, 12)) == "Q3.12" and str(QFormat(4, 4, signed=False)) == "UQ4.4"
    assert QFormat(3, 12).float_dtype == np.float32          # 15 magnitude bits: exact in float32
    assert QFormat(0, 24, signed=False).float_dtype == np.float32
    assert QFormat(15, 16).float_dtype == np.float64          # 31 magnitude bits do not fit 24


@pytest.mark.parametrize("args, error, message", [
    ((3, 30), ValueError, "1..32 bits"),
    ((0, 0, False), ValueError, "1..32 bits"),
    ((3, -1), ValueError, "frac_bits must be >= 0"),
    ((3.0, 4), TypeError, "int_bits must be an int"),
    ((3, 4, 1), TypeError, "signed must be a bool"),
])
def test_bad_format_parameters_raise(args, error, message):
    with pytest.raises(error, match=message):
        QFormat(*args)


# ---- to_fixed / to_float ----
@pytest.mark.parametrize("mode", DETERMINISTIC)
@pytest.mark.parametrize("overflow", fp.OVERFLOW_MODES)
@FAST
@given(fmt=formats, x=st.lists(st.floats(-1e4, 1e4), min_size=1, max_size=20))
def test_to_fixed_matches_exact_rational_reference(mode, overflow, fmt, x):
    q = fp.to_fixed(np.array(x), fmt, rounding=mode, overflow=overflow)
    expected = [reference_overflow(reference_round(Fraction(v) * 2 ** fmt.frac_bits, mode), fmt, overflow) for v in x]
    assert q.dtype == np.int64
    assert q.tolist() == expected


@pytest.mark.parametrize("mode", MODES)
@FAST
@given(fmt=formats, x=st.lists(st.floats(-1e4, 1e4), min_size=2, max_size=20), seed=st.integers(0, 2 ** 32))
def test_to_fixed_error_bounds_and_monotonic(mode, fmt, x, seed):
    x = np.sort(np.clip(np.array(x), fmt.min, fmt.max))
    q = fp.to_fixed(x, fmt, rounding=mode, rng=np.random.default_rng(seed))
    assert np.all((fmt.qmin <= q) & (q <= fmt.qmax))
    error = [Fraction(int(v), 2 ** fmt.frac_bits) - Fraction(xi) for v, xi in zip(q, x)]   # exact
    bound = Fraction(1, 2 ** fmt.frac_bits) / (2 if mode in NEAREST else 1)
    assert all(abs(e) <= bound for e in error)
    assert all(abs(e) < Fraction(1, 2 ** fmt.frac_bits) for e in error)   # never past a neighbour
    if mode == "floor":
        assert all(e <= 0 for e in error)
    if mode == "toward_zero":
        assert np.all(np.abs(fp.to_float(q, fmt)) <= np.abs(x))
    if mode != "stochastic":
        assert np.all(np.diff(q) >= 0)


@pytest.mark.parametrize("fmt", [QFormat(3, 4), QFormat(2, 5, signed=False), QFormat(0, 7)], ids=str)
def test_every_grid_value_round_trips_in_every_mode(fmt):
    q = np.arange(fmt.qmin, fmt.qmax + 1)
    x = fp.to_float(q, fmt)
    assert x.dtype == np.float32
    for mode in MODES:
        assert np.array_equal(fp.to_fixed(x, fmt, rounding=mode, rng=np.random.default_rng(0)), q)


def test_to_float_is_exact_for_32_bit_words():
    fmt = QFormat(15, 16)
    q = np.array([fmt.qmin, fmt.qmin + 1, -1, 0, 1, fmt.qmax - 1, fmt.qmax])
    x = fp.to_float(q, fmt)
    assert x.dtype == np.float64
    assert [Fraction(v) for v in x] == [Fraction(int(v), 2 ** 16) for v in q]


def test_to_fixed_saturates_infinities_and_large_values():
    fmt = QFormat(3, 4)
    q = fp.to_fixed(np.array([np.inf, -np.inf, 1e300, -1e300, 7.97, -8.01]), fmt)
    assert q.tolist() == [127, -128, 127, -128, 127, -128]


def test_to_fixed_wrap_equals_numpy_integer_casts():
    values = np.arange(-70_000, 70_000, 7)
    for dtype, fmt in [(np.int8, QFormat(7, 0)), (np.uint8, QFormat(8, 0, signed=False)), (np.int16, QFormat(15, 0))]:
        assert np.array_equal(fp.to_fixed(values, fmt, overflow="wrap"), values.astype(dtype))


# ---- round_shift and apply_overflow ----
@pytest.mark.parametrize("mode", DETERMINISTIC)
@FAST
@given(values=st.lists(st.integers(-2 ** 50, 2 ** 50), min_size=1, max_size=20), shift=st.integers(-8, 55))
def test_round_shift_matches_exact_rational_reference(mode, values, shift):
    result = fp.round_shift(np.array(values, dtype=np.int64), shift, mode)
    assert result.tolist() == [reference_round(Fraction(v) / Fraction(2) ** shift, mode) for v in values]


@pytest.mark.parametrize("mode", DETERMINISTIC)
@FAST
@given(values=st.lists(st.integers(-2 ** 40, 2 ** 40), min_size=1, max_size=20), shift=st.integers(0, 12))
def test_round_shift_agrees_with_round_to_integer(mode, values, shift):
    values = np.array(values, dtype=np.int64)
    as_float = fp.round_to_integer(values / 2.0 ** shift, mode)        # exact: |value| < 2^53
    assert np.array_equal(fp.round_shift(values, shift, mode), as_float.astype(np.int64))


@FAST
@given(values=st.lists(st.integers(-2 ** 40, 2 ** 40), min_size=1, max_size=20), fmt=formats)
def test_apply_overflow_wrap_is_modular_and_saturate_clamps(values, fmt):
    wrapped = fp.apply_overflow(values, fmt.qmin, fmt.qmax, "wrap")
    clamped = fp.apply_overflow(values, fmt.qmin, fmt.qmax, "saturate")
    assert wrapped.tolist() == [reference_overflow(v, fmt, "wrap") for v in values]
    assert clamped.tolist() == [reference_overflow(v, fmt, "saturate") for v in values]


# ---- integer arithmetic ----
@FAST
@given(data=st.data())
def test_add_and_sub_wrap_like_numpy_int8_and_int16(data):
    for dtype, fmt in [(np.int8, QFormat(3, 4)), (np.int16, QFormat(5, 10))]:
        qa, qb = data.draw(raw_values(fmt)), data.draw(raw_values(fmt))
        size = min(len(qa), len(qb))
        qa, qb = qa[:size], qb[:size]
        a, b = qa.astype(dtype), qb.astype(dtype)
        assert np.array_equal(fp.add(qa, qb, fmt, overflow="wrap"), a + b)   # NumPy wraps silently
        assert np.array_equal(fp.sub(qa, qb, fmt, overflow="wrap"), a - b)


@FAST
@given(data=st.data())
def test_multiply_wraps_like_numpy_int8_and_int16(data):
    for dtype, fmt in [(np.int8, QFormat(7, 0)), (np.int16, QFormat(15, 0)), (np.uint8, QFormat(8, 0, signed=False))]:
        qa, qb = data.draw(raw_values(fmt)), data.draw(raw_values(fmt))
        size = min(len(qa), len(qb))
        expected = qa[:size].astype(dtype) * qb[:size].astype(dtype)
        assert np.array_equal(fp.multiply(qa[:size], fmt, qb[:size], fmt, fmt, overflow="wrap"), expected)


@pytest.mark.parametrize("mode", DETERMINISTIC)
@pytest.mark.parametrize("overflow", fp.OVERFLOW_MODES)
@FAST
@given(data=st.data(), fmt_a=formats, fmt_b=formats, out_fmt=formats)
def test_multiply_matches_exact_rational_reference(mode, overflow, data, fmt_a, fmt_b, out_fmt):
    qa, qb = data.draw(raw_values(fmt_a, 8)), data.draw(raw_values(fmt_b, 8))
    size = min(len(qa), len(qb))
    qa, qb = qa[:size], qb[:size]
    q = fp.multiply(qa, fmt_a, qb, fmt_b, out_fmt, rounding=mode, overflow=overflow)
    expected = []
    for a, b in zip(qa.tolist(), qb.tolist()):
        product = Fraction(a, 2 ** fmt_a.frac_bits) * Fraction(b, 2 ** fmt_b.frac_bits)
        expected.append(reference_overflow(reference_round(product * 2 ** out_fmt.frac_bits, mode), out_fmt, overflow))
    assert q.tolist() == expected


@pytest.mark.parametrize("mode", DETERMINISTIC)
@pytest.mark.parametrize("overflow", fp.OVERFLOW_MODES)
@FAST
@given(data=st.data(), from_fmt=st.sampled_from([QFormat(31, 0), QFormat(0, 31), QFormat(15, 16),
                                                 QFormat(32, 0, signed=False), QFormat(3, 4)]),
       to_fmt=st.sampled_from([QFormat(0, 31), QFormat(0, 32, signed=False), QFormat(7, 0), QFormat(20, 11)]))
def test_rescale_matches_exact_rational_reference(mode, overflow, data, from_fmt, to_fmt):
    q = data.draw(raw_values(from_fmt, 10))
    result = fp.rescale(q, from_fmt, to_fmt, rounding=mode, overflow=overflow)
    shift = from_fmt.frac_bits - to_fmt.frac_bits
    expected = [reference_overflow(reference_round(Fraction(v) / Fraction(2) ** shift, mode), to_fmt, overflow)
                for v in q.tolist()]
    assert result.tolist() == expected


@FAST
@given(data=st.data(), fmt=formats)
def test_saturating_add_clamps_the_exact_sum(data, fmt):
    qa, qb = data.draw(raw_values(fmt)), data.draw(raw_values(fmt))
    size = min(len(qa), len(qb))
    qa, qb = qa[:size], qb[:size]
    expected = [min(max(a + b, fmt.qmin), fmt.qmax) for a, b in zip(qa.tolist(), qb.tolist())]
    assert fp.saturating_add(qa, qb, fmt).tolist() == expected
    assert fp.add(qa, qb, fmt).tolist() == expected


# ---- matmul / dot ----
def _exact_matmul(qa, fmt_a, qb, fmt_b, out_fmt, mode, overflow):
    rows = [[sum(Fraction(int(a) * int(b)) for a, b in zip(row, col)) for col in qb.T] for row in qa]
    scale = Fraction(2) ** (out_fmt.frac_bits - fmt_a.frac_bits - fmt_b.frac_bits)
    return [[reference_overflow(reference_round(v * scale, mode), out_fmt, overflow) for v in row] for row in rows]


@pytest.mark.parametrize("mode", DETERMINISTIC)
def test_matmul_exact_accumulator_matches_rational_reference(mode):
    rng = np.random.default_rng(0)
    fmt_a, fmt_b, out_fmt = QFormat(3, 4), QFormat(1, 6), QFormat(5, 6)
    qa = rng.integers(fmt_a.qmin, fmt_a.qmax + 1, (4, 9))
    qb = rng.integers(fmt_b.qmin, fmt_b.qmax + 1, (9, 3))
    for overflow in fp.OVERFLOW_MODES:
        result = fp.matmul(qa, fmt_a, qb, fmt_b, out_fmt, rounding=mode, overflow=overflow)
        assert result.tolist() == _exact_matmul(qa, fmt_a, qb, fmt_b, out_fmt, mode, overflow)
    vector = fp.dot(qa[0], fmt_a, qb[:, 0], fmt_b, out_fmt, rounding=mode)
    assert int(vector) == _exact_matmul(qa[:1], fmt_a, qb[:, :1], fmt_b, out_fmt, mode, "saturate")[0][0]


def test_matmul_wrapping_accumulator_equals_numpy_int32_and_int16():
    rng = np.random.default_rng(1)
    fmt = QFormat(15, 0)
    qa, qb = rng.integers(-2 ** 15, 2 ** 15, (5, 40)), rng.integers(-2 ** 15, 2 ** 15, (40, 6))
    for acc_bits, dtype in [(32, np.int32), (16, np.int16)]:
        acc_fmt = QFormat(acc_bits - 1, 0)
        result = fp.matmul(qa, fmt, qb, fmt, acc_fmt, acc_bits=acc_bits, acc_overflow="wrap")
        assert np.array_equal(result, qa.astype(dtype) @ qb.astype(dtype))     # NumPy integer matmul wraps


def test_matmul_saturating_accumulator_clamps_after_every_addition():
    fmt = QFormat(7, 0)
    qa = np.array([[100, 100, 100, 100, -100]])
    qb = np.array([[100], [100], [100], [100], [100]])
    # 10000, 20000, 30000, then +10000 clamps at 32767, then -10000 -> 22767 (order matters)
    result = fp.matmul(qa, fmt, qb, fmt, QFormat(15, 0), acc_bits=16, acc_overflow="saturate")
    assert result.tolist() == [[22767]]
    rng = np.random.default_rng(2)
    qa, qb = rng.integers(-128, 128, (3, 30)), rng.integers(-128, 128, (30, 2))
    expected = np.zeros((3, 2), dtype=np.int64)
    for i in range(3):
        for j in range(2):
            acc = 0
            for k in range(30):
                acc = min(max(acc + int(qa[i, k]) * int(qb[k, j]), -2 ** 15), 2 ** 15 - 1)
            expected[i, j] = acc
    assert np.array_equal(fp.matmul(qa, fmt, qb, fmt, QFormat(15, 0), acc_bits=16, acc_overflow="saturate"), expected)


# ---- stochastic rounding ----
def test_stochastic_rounding_is_unbiased():
    rng = np.random.default_rng(3)
    fmt = QFormat(3, 2)
    x = np.array([0.1, -0.1, 1.3, -2.05])
    draws = 20_000
    q = fp.to_fixed(np.broadcast_to(x, (draws, x.size)), fmt, rounding="stochastic", rng=rng)
    scaled = x * 4
    assert np.all((q == np.floor(scaled)) | (q == np.ceil(scaled)))
    # q = floor + Bernoulli(p): variance p(1-p) <= 1/4, so the mean of `draws` samples has standard
    # error <= 1 / (2 sqrt(draws)); an unbiased rounding stays within 5 of them except with
    # probability < 1e-6, and the seed is fixed.
    assert np.all(np.abs(q.mean(axis=0) - scaled) <= 5 / (2 * np.sqrt(draws)))
    values = np.array([-13, 13, 7])                   # round_shift by 3: -1.625, 1.625, 0.875
    shifted = fp.round_shift(np.broadcast_to(values, (draws, 3)), 3, "stochastic", rng)
    assert np.all(np.abs(shifted.mean(axis=0) - values / 8) <= 5 / (2 * np.sqrt(draws)))


# ---- errors ----
def test_nan_input_is_rejected_with_count_and_position():
    with pytest.raises(ValueError, match=r"2 NaN values \(first at index \(0, 1\)\)"):
        fp.to_fixed(np.array([[1.0, np.nan], [np.nan, 0.0]]), QFormat(3, 4))


def test_bad_options_raise_clear_errors():
    fmt = QFormat(3, 4)
    with pytest.raises(ValueError, match="rounding must be one of"):
        fp.to_fixed([1.0], fmt, rounding="banker")
    with pytest.raises(ValueError, match="overflow must be one of"):
        fp.to_fixed([1.0], fmt, overflow="clip")
    with pytest.raises(TypeError, match="needs rng=np.random.Generator"):
        fp.to_fixed([1.0], fmt, rounding="stochastic")
    with pytest.raises(ValueError, match="infinite values"):
        fp.to_fixed([np.inf], fmt, overflow="wrap")
    with pytest.raises(TypeError, match="expects a QFormat"):
        fp.to_fixed([1.0], (3, 4))
    with pytest.raises(ValueError, match=r"must lie in \[-128, 127\], got values in \[0, 300\]"):
        fp.add([0, 300], [1, 1], fmt)
    with pytest.raises(TypeError, match="raw integers of Q3.4, got dtype float64"):
        fp.to_float([0.5], fmt)
    with pytest.raises(ValueError, match="needs more than 63 bits"):
        fp.multiply([1], QFormat(32, 0, signed=False), [1], QFormat(32, 0, signed=False), fmt)
    with pytest.raises(ValueError, match=r"expects \(M, K\)"):
        fp.matmul(np.ones((2, 3), int), fmt, np.ones((2, 3), int), fmt, fmt)
    with pytest.raises(ValueError, match="acc_bits must be an int in"):
        fp.matmul(np.ones((2, 3), int), fmt, np.ones((3, 2), int), fmt, fmt, acc_bits=64)
    with pytest.raises(ValueError, match="shifts up to 62 bits"):
        fp.round_shift([1], 63)


# ---- exercises ----
@pytest.mark.exercise("4.1")
def test_exercise_4_1_multiply_rounds_the_exact_product():
    fmt_a, fmt_b, out_fmt = QFormat(3, 4), QFormat(1, 6), QFormat(3, 4)
    rng = np.random.default_rng(4)
    qa = np.concatenate([rng.integers(-128, 128, 200), [-128, 127, 8, -8, 24, -24]])
    qb = np.concatenate([rng.integers(-128, 128, 200), [-128, -128, 32, 32, 32, 32]])  # 8*32/64: ties at .5 too
    for mode in ("nearest_even", "nearest_away", "floor", "toward_zero"):
        for overflow in ("saturate", "wrap"):
            result = fp.multiply(qa, fmt_a, qb, fmt_b, out_fmt, rounding=mode, overflow=overflow)
            expected = [reference_overflow(reference_round(Fraction(a * b, 2 ** 6), mode), out_fmt, overflow)
                        for a, b in zip(qa.tolist(), qb.tolist())]
            assert result.tolist() == expected, (mode, overflow)


@pytest.mark.exercise("4.2")
def test_exercise_4_2_saturating_add_clamps_at_both_ends():
    fmt = QFormat(3, 4)
    qa = np.array([100, -100, 127, -128, 5, -5, 0])
    qb = np.array([100, -100, 1, -1, 7, 3, 0])
    assert fp.saturating_add(qa, qb, fmt).tolist() == [127, -128, 127, -128, 12, -2, 0]
    unsigned = QFormat(4, 4, signed=False)
    assert fp.saturating_add([250, 3], [10, 4], unsigned).tolist() == [255, 7]


@pytest.mark.exercise("4.3")
@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.uint8])
def test_exercise_4_3_wrap_is_numpys_twos_complement(dtype):
    info = np.iinfo(dtype)
    values = np.arange(-3 * 2 ** 16, 3 * 2 ** 16, 7, dtype=np.int64)
    wrapped = fp.apply_overflow(values, int(info.min), int(info.max), "wrap")
    np.testing.assert_array_equal(wrapped, values.astype(dtype).astype(np.int64))   # NumPy casts modulo 2^w


@pytest.mark.exercise("4.3")
def test_exercise_4_3_saturate_clamps_and_keeps_int64():
    values = [-1000, -129, -128, 0, 127, 128, 2 ** 40]
    got = fp.apply_overflow(values, -128, 127, "saturate")
    assert got.tolist() == [max(-128, min(127, v)) for v in values] and got.dtype == np.int64
    assert fp.apply_overflow([300, -5], 0, 255, "wrap").tolist() == [44, 251]


def _accumulate_by_hand(qa, qb, acc_bits, mode):
    """Python ints, one k at a time: wrap keeps v mod 2^w in [-2^(w-1), 2^(w-1)); saturate clamps each step."""
    lo, hi, span = -(2 ** (acc_bits - 1)), 2 ** (acc_bits - 1) - 1, 2 ** acc_bits
    out = []
    for row in qa.tolist():
        out.append([])
        for j in range(qb.shape[1]):
            acc = 0
            for k, a in enumerate(row):
                product = a * int(qb[k, j])
                if mode == "wrap":
                    acc = (acc + product - lo) % span + lo
                else:
                    acc = max(lo, min(hi, acc + max(lo, min(hi, product))))
            out[-1].append(acc)
    return out


@pytest.mark.exercise("4.4")
@pytest.mark.parametrize("mode", ["wrap", "saturate"])
@pytest.mark.parametrize("acc_bits", [12, 16])
def test_exercise_4_4_finite_accumulator_step_by_step(mode, acc_bits):
    rng = np.random.default_rng(acc_bits)
    f = QFormat(7, 0)
    qa, qb = rng.integers(-128, 128, (3, 9)), rng.integers(-128, 128, (9, 2))
    got = fp.matmul(qa, f, qb, f, QFormat(31, 0), acc_bits=acc_bits, acc_overflow=mode)
    assert got.tolist() == _accumulate_by_hand(qa, qb, acc_bits, mode)


@pytest.mark.exercise("4.4")
def test_exercise_4_4_wrap_is_exact_when_the_final_sum_fits_and_saturate_depends_on_order():
    f = QFormat(7, 0)
    qa = np.array([[120, 120, 120, -120, -120, -120]])
    qb = np.full((6, 1), 100)
    wrap = fp.matmul(qa, f, qb, f, QFormat(31, 0), acc_bits=16, acc_overflow="wrap")
    forward = fp.matmul(qa, f, qb, f, QFormat(31, 0), acc_bits=16, acc_overflow="saturate")
    backward = fp.matmul(qa[:, ::-1], f, qb[::-1], f, QFormat(31, 0), acc_bits=16, acc_overflow="saturate")
    assert int(wrap[0, 0]) == 0                               # partial sums reach 36000 > 32767, yet exact
    assert int(forward[0, 0]) == 32767 - 36000 and int(backward[0, 0]) == -32768 + 36000
