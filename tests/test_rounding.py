"""tinyq.formats.rounding, the one home of rounding, checked against exact references (Python ints, Fraction)."""
from fractions import Fraction

import numpy as np
import pytest

import tinyq as tq
from tinyq.formats import fixed_point, rounding
from tinyq.formats.fixed_point import QFormat
from tinyq.quant.fake_quant import lsq_fake_quantize


def test_round_half_to_even_equals_numpy_rint_on_ties_and_at_random():
    rng = np.random.default_rng(0)
    ties = np.arange(-20, 20) + 0.5
    values = np.concatenate([ties, rng.standard_normal(10_000) * 100, [0.0, -0.0, np.inf, -np.inf, 2.0 ** 52 + 1]])
    for dtype in (np.float32, np.float64):
        x = values.astype(dtype)
        out = rounding.round_half_to_even(x)
        assert out.dtype == dtype
        np.testing.assert_array_equal(out, np.rint(x))
    assert np.isnan(rounding.round_half_to_even(np.array([np.nan])))[0]
    assert rounding.nearest_even is np.rint


def test_round_stochastic_is_unbiased_seeded_and_needs_a_generator():
    x = np.array([0.25, -1.75, 3.0, 2.5])
    draws = rounding.round_stochastic(np.broadcast_to(x, (20_000, 4)), np.random.default_rng(1))
    assert set(np.unique(draws[:, 0])) == {0.0, 1.0} and np.all(draws[:, 2] == 3.0)
    np.testing.assert_allclose(draws.mean(axis=0), x, atol=0.02)
    np.testing.assert_array_equal(rounding.round_stochastic(x, np.random.default_rng(5)),
                                  rounding.round_stochastic(x, np.random.default_rng(5)))
    with pytest.raises(TypeError, match="np.random.Generator"):
        rounding.round_stochastic(x, None)


def _away_from_zero(value: int, shift: int) -> int:
    """round(value / 2^shift), ties away from zero, with Fractions."""
    exact = Fraction(value, 2 ** shift)
    magnitude = abs(exact)
    rounded = int(magnitude) + (1 if magnitude - int(magnitude) >= Fraction(1, 2) else 0)
    return rounded if exact >= 0 else -rounded


def test_rounding_right_shift_is_round_half_away_from_zero():
    rng = np.random.default_rng(2)
    values = np.concatenate([rng.integers(-2 ** 40, 2 ** 40, 2_000), np.arange(-40, 41),
                             [2 ** 62, -(2 ** 62), 2 ** 63 - 1, -(2 ** 63)]]).astype(np.int64)
    for shift in (0, 1, 2, 3, 7, 31, 62):
        out = rounding.rounding_right_shift(values, shift)
        assert out.dtype == np.int64
        assert out.tolist() == [_away_from_zero(v, shift) for v in values.tolist()], shift
    assert rounding.rounding_right_shift(np.array([-3, -5, 3, 5]), 1).tolist() == [-2, -3, 2, 3]   # ties away
    with pytest.raises(ValueError, match="0..62"):
        rounding.rounding_right_shift([1], 63)
    with pytest.raises(TypeError, match="integers"):
        rounding.rounding_right_shift([1.5], 1)


def test_one_bit_width_check_for_every_entry_point():
    from tinyq.formats.affine import QParams, calculate_qparams
    from tinyq.quant import QuantSpec, make_observer
    from tinyq.quant.quantizers import FakeQuantize, LSQQuantizer, PACTQuantizer
    entry_points = [lambda b: QParams(1.0, 0, b, True), lambda b: calculate_qparams(-1.0, 1.0, bits=b),
                    lambda b: QuantSpec(bits=b), lambda b: make_observer("minmax", bits=b),
                    lambda b: FakeQuantize(bits=b), lambda b: LSQQuantizer(bits=b), lambda b: PACTQuantizer(bits=b),
                    lambda b: lsq_fake_quantize(tq.ones(3), np.float32(0.1), b, True)]
    for bits in (1, 17, True, 8.0):
        for make in entry_points:
            with pytest.raises(ValueError, match=r"expects bits an integer in 2\.\.16"):
                make(bits)


def test_integer_range_and_the_two_dtypes_have_one_meaning_each():
    from tinyq import lowp
    from tinyq.formats import affine, floats
    assert rounding.integer_range(8, True) == (-128, 127) and rounding.integer_range(4, False, True) == (1, 15)
    assert affine.integer_range is rounding.integer_range and fixed_point.round_shift is rounding.round_shift
    assert affine.code_dtype(4, False) == np.uint8 and affine.code_dtype(12, True) == np.int16
    assert lowp.storage_dtype(floats.FP16) == np.float16 and lowp.storage_dtype(floats.BF16) == np.float32
    assert not hasattr(affine, "storage_dtype")


# ---- issue 12, numerics items on these files ----
def test_fixed_point_matmul_wraps_a_63_bit_accumulator():
    fmt = QFormat(15, 16)                                     # 32-bit words: products need 62 bits
    qa = np.array([[fmt.qmax, fmt.qmax, fmt.qmin, 12345]], dtype=np.int64)
    qb = np.array([[fmt.qmax], [fmt.qmax], [fmt.qmin], [-678]], dtype=np.int64)
    out = fixed_point.matmul(qa, fmt, qb, fmt, fmt, acc_bits=63, acc_overflow="wrap", overflow="wrap")
    exact = sum(int(a) * int(b) for a, b in zip(qa[0].tolist(), qb[:, 0].tolist()))
    assert exact >= 2 ** 62                                    # the 63-bit register really wraps
    acc = (exact + 2 ** 62) % 2 ** 63 - 2 ** 62                # two's complement wrap to 63 bits
    rounded = round(Fraction(acc, 2 ** 16))                    # Python rounds half to even
    expected = (rounded + 2 ** 31) % 2 ** 32 - 2 ** 31         # wrapped to the 32-bit output word
    assert out.tolist() == [[expected]]
    assert fixed_point.apply_overflow(np.array([2 ** 62]), -(2 ** 62), 2 ** 62 - 1, "wrap").tolist() == [-(2 ** 62)]


def test_lsq_fake_quantize_rejects_bad_bits_and_nan_like_quantize_does():
    step = np.float32(0.1)
    for bits in (1, 17):
        with pytest.raises(ValueError, match="bits an integer in 2..16"):
            lsq_fake_quantize(tq.ones(3), step, bits, True)
    with pytest.raises(ValueError, match="NaN"):
        lsq_fake_quantize(tq.tensor(np.array([1.0, np.nan], dtype=np.float32)), step, 8, True)
