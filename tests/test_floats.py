"""Tests for tinyq.formats.floats: grid, rounding, overflow, subnormals, bit fields.

Oracles: NumPy's float16 and float32 casts, ml_dtypes (bf16, fp8, fp4; optional),
and a brute-force nearest search over every value of a small format.
"""
import functools
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyq.formats import floats
from tinyq.formats.floats import BF16, FP4_E2M1, FP8_E4M3, FP8_E5M2, FP16, FP32, FloatFormat, round_to

ALL_FORMATS = [FP32, FP16, BF16, FP8_E4M3, FP8_E5M2, FP4_E2M1]
SMALL_FORMATS = [FP16, FP8_E4M3, FP8_E5M2, FP4_E2M1]          # <= 16 bits: every value can be listed
FAST = settings(max_examples=60, deadline=None)
grid_of = functools.lru_cache(floats.all_values)               # every finite value of a small format


def values_near(fmt):
    """Floats (float64) spread over fmt's whole range, including subnormals and overflow."""
    in_range = st.floats(-2.5 * fmt.max, 2.5 * fmt.max, allow_nan=False)
    tiny = st.floats(-4 * fmt.min_normal, 4 * fmt.min_normal, allow_nan=False)
    exponent_spread = st.tuples(st.floats(0.5, 1.0), st.integers(fmt.emin - fmt.mantissa_bits - 2, fmt.emax + 1),
                                st.booleans()).map(lambda t: (-1) ** t[2] * np.ldexp(t[0], t[1]))
    return st.lists(st.one_of(in_range, tiny, exponent_spread), min_size=1, max_size=30).map(np.array)


def random_float32(rng, n):
    """n finite float32 values with uniformly random bit patterns: every exponent, subnormals, both signs."""
    values = rng.integers(0, 2 ** 32, size=n, dtype=np.uint64).astype(np.uint32).view(np.float32)
    return values[np.isfinite(values)]


def same_bits(a, b):
    """Bitwise equality of float32 arrays, any NaN equal to any NaN."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return (a.view(np.uint32) == b.view(np.uint32)) | (np.isnan(a) & np.isnan(b))


def nearest_even_by_search(x, fmt):
    """Brute force: the value of fmt nearest to each |x|, ties to the even bit pattern (x within range)."""
    grid = grid_of(fmt).astype(np.float64)
    grid = grid[grid >= 0]
    magnitude = np.abs(x)
    upper = np.clip(np.searchsorted(grid, magnitude), 1, len(grid) - 1)
    below, above = grid[upper - 1], grid[upper]
    pick_above = (above - magnitude < magnitude - below) | (
        (above - magnitude == magnitude - below) & (floats.to_bits(above, fmt) % 2 == 0))
    return np.copysign(np.where(pick_above, above, below), x)


# ---- format constants ----
def test_constants_match_numpy_finfo():
    for fmt, dtype in [(FP16, np.float16), (FP32, np.float32)]:
        info = np.finfo(dtype)
        assert fmt.max == float(info.max)
        assert fmt.min_normal == float(info.smallest_normal)
        assert fmt.min_subnormal == float(info.smallest_subnormal)
        assert fmt.eps == float(info.eps)
        assert fmt.unit_roundoff == float(info.eps) / 2


def test_constants_match_ml_dtypes_finfo():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    pairs = [(BF16, ml_dtypes.bfloat16), (FP8_E4M3, ml_dtypes.float8_e4m3fn), (FP8_E5M2, ml_dtypes.float8_e5m2),
             (FP4_E2M1, ml_dtypes.float4_e2m1fn)]
    for fmt, dtype in pairs:
        info = ml_dtypes.finfo(dtype)
        assert fmt.max == float(info.max), fmt.name
        assert fmt.min_normal == float(info.smallest_normal), fmt.name
        assert fmt.min_subnormal == float(info.smallest_subnormal), fmt.name
        assert fmt.eps == float(info.eps), fmt.name


def test_named_maxima_from_the_specs():
    # IEEE 754 binary16 and the OCP 8-bit / MX specifications state these maxima
    assert (FP16.max, FP8_E4M3.max, FP8_E5M2.max, FP4_E2M1.max) == (65504.0, 448.0, 57344.0, 6.0)
    assert (FP8_E4M3.convention, FP8_E5M2.convention, FP4_E2M1.convention) == ("fn", "ieee", "finite")


@pytest.mark.parametrize("fmt", [FP16, FP32], ids=str)
def test_ulp_matches_numpy_spacing(fmt):
    dtype = np.float16 if fmt is FP16 else np.float32
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)                # NumPy warns when casting to inf
        x = np.abs(random_float32(rng, 20_000)).astype(dtype)
    x = x[np.isfinite(x) & (x < fmt.max)]
    np.testing.assert_array_equal(fmt.ulp(x), np.spacing(x).astype(np.float32))


@pytest.mark.parametrize("kwargs, message", [
    (dict(exponent_bits=0, mantissa_bits=3), "exponent_bits >= 1"),
    (dict(exponent_bits=4, mantissa_bits=-1), "mantissa_bits >= 0"),
    (dict(exponent_bits=8, mantissa_bits=24), "at most 32 bits"),
    (dict(exponent_bits=9, mantissa_bits=10), "does not fit inside float32"),
    (dict(exponent_bits=4, mantissa_bits=3, has_nan=False), "has_inf=True must also have has_nan"),
    (dict(exponent_bits=4, mantissa_bits=0), "mantissa_bits >= 1"),
    (dict(exponent_bits=1, mantissa_bits=2), "no normal numbers"),
])
def test_bad_format_parameters_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FloatFormat("bad", **kwargs)


def test_bad_types_raise():
    with pytest.raises(TypeError, match="exponent_bits must be an int"):
        FloatFormat("bad", 4.0, 3)
    with pytest.raises(TypeError, match="expects a FloatFormat"):
        round_to([1.0], "bf16")
    with pytest.raises(TypeError, match="real-valued"):
        round_to(np.array(["a"]), BF16)


def test_bad_round_to_options_raise():
    with pytest.raises(ValueError, match="mode must be one of"):
        round_to([1.0], BF16, mode="truncate")
    with pytest.raises(TypeError, match="needs rng=np.random.Generator"):
        round_to([1.0], BF16, mode="stochastic")
    with pytest.raises(ValueError, match="overflow must saturate"):
        round_to([1.0], FP4_E2M1, saturate=False)
    with pytest.raises(ValueError, match="has no NaN"):
        round_to([1.0, np.nan], FP4_E2M1)


# ---- properties over every format ----
@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=str)
@pytest.mark.parametrize("mode", ["nearest", "stochastic"])
@FAST
@given(data=st.data())
def test_results_lie_on_the_grid_and_are_fixed_points(fmt, mode, data):
    x = data.draw(values_near(fmt))
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32)))
    r = round_to(x, fmt, mode=mode, rng=rng, saturate=True)
    assert r.dtype == np.float32 and r.shape == x.shape
    assert np.all(np.abs(r) <= fmt.max)
    steps = r.astype(np.float64) / fmt.ulp(r).astype(np.float64)        # a multiple of its binade's step
    assert np.array_equal(steps, np.round(steps))
    assert same_bits(round_to(r, fmt, mode=mode, rng=rng, saturate=True), r).all()
    if fmt in SMALL_FORMATS:
        assert np.isin(r, grid_of(fmt)).all()


@pytest.mark.parametrize("fmt", SMALL_FORMATS, ids=str)
def test_every_grid_value_round_trips(fmt):
    grid = grid_of(fmt)
    rng = np.random.default_rng(1)
    for mode in ("nearest", "stochastic"):
        assert same_bits(round_to(grid, fmt, mode=mode, rng=rng), grid).all()
        assert same_bits(round_to(-grid, fmt, mode=mode, rng=rng), -grid).all()
    assert same_bits(floats.from_bits(floats.to_bits(grid, fmt), fmt), grid).all()


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=str)
@FAST
@given(data=st.data())
def test_nearest_error_at_most_half_ulp_and_monotonic(fmt, data):
    x = np.sort(data.draw(values_near(fmt)))
    x = x[np.abs(x) <= fmt.max]
    r = round_to(x, fmt).astype(np.float64)
    assert np.all(np.abs(r - x) <= fmt.ulp(x).astype(np.float64) / 2)
    assert np.all(np.diff(r) >= 0)


@pytest.mark.parametrize("fmt", [FP8_E4M3, FP8_E5M2, FP4_E2M1], ids=str)
@FAST
@given(data=st.data())
def test_nearest_matches_brute_force_search(fmt, data):
    x = data.draw(values_near(fmt))
    x = x[np.abs(x) <= fmt.max]
    np.testing.assert_array_equal(round_to(x, fmt), nearest_even_by_search(x, fmt))


@pytest.mark.parametrize("fmt", SMALL_FORMATS, ids=str)
def test_ties_go_to_the_even_pattern(fmt):
    grid = grid_of(fmt).astype(np.float64)
    grid = grid[grid >= 0]
    midpoints = (grid[:-1] + grid[1:]) / 2
    r = round_to(midpoints, fmt)
    assert np.all((r == grid[:-1]) | (r == grid[1:]))
    assert np.all(floats.to_bits(r, fmt) % 2 == 0)


# ---- overflow, infinities, NaN ----
def test_overflow_fp16_rounds_to_inf_above_max_plus_half_ulp():
    # 65504 + 16 = 65520 is the midpoint to 2^16: a tie, the even neighbour is 2^16 -> inf
    x = np.array([65504.0, 65519.99, 65520.0, 1e6, -65520.0, np.inf, -np.inf])
    r = round_to(x, FP16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = x.astype(np.float16).astype(np.float32)
    assert same_bits(r, expected).all()
    saturated = round_to(x, FP16, saturate=True)
    np.testing.assert_array_equal(saturated[:5], [65504, 65504, 65504, 65504, -65504])
    np.testing.assert_array_equal(saturated[5:], [np.inf, -np.inf])      # inf is a value of fp16, not an overflow


def test_overflow_e4m3fn_saturates_or_becomes_nan():
    # OCP e4m3fn: 448 = 1.75 * 2^8 is max; 480 would be the NaN pattern S.1111.111.
    # 464 is the midpoint 448 | 480 and 448 (mantissa 110) is the even one.
    x = np.array([448.0, 463.9, 464.0, 464.1, 1e4, np.inf, -1e4, -np.inf])
    np.testing.assert_array_equal(round_to(x, FP8_E4M3), [448, 448, 448, 448, 448, 448, -448, -448])
    strict = round_to(x, FP8_E4M3, saturate=False)
    np.testing.assert_array_equal(strict[:3], [448, 448, 448])
    assert np.isnan(strict[3:]).all()


def test_overflow_e5m2_goes_to_inf_unless_saturating():
    # e5m2: max 57344 = 1.75 * 2^15, its ulp is 2^13, so the overflow midpoint is 61440
    x = np.array([61439.0, 61440.0, -70000.0, np.inf])
    np.testing.assert_array_equal(round_to(x, FP8_E5M2), [57344, np.inf, -np.inf, np.inf])
    np.testing.assert_array_equal(round_to(x, FP8_E5M2, saturate=True), [57344, 57344, -57344, np.inf])


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=str)
def test_nan_propagates_and_signed_zero_is_kept(fmt):
    if not fmt.has_nan:
        return
    r = round_to(np.array([np.nan, -0.0, 0.0, -fmt.min_subnormal / 4]), fmt)
    assert np.isnan(r[0])
    assert list(np.signbit(r[1:])) == [True, False, True] and np.all(r[1:] == 0)


# ---- subnormals ----
def test_fp16_subnormals_match_numpy():
    rng = np.random.default_rng(2)
    x = rng.uniform(-2 * FP16.min_normal, 2 * FP16.min_normal, 50_000).astype(np.float32)
    assert same_bits(round_to(x, FP16), x.astype(np.float16).astype(np.float32)).all()


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=str)
@FAST
@given(data=st.data())
def test_flush_subnormals_zeroes_exactly_the_subnormal_results(fmt, data):
    x = data.draw(values_near(fmt))
    kept = round_to(x, fmt, saturate=True)
    flushed = round_to(x, fmt, saturate=True, flush_subnormals=True)
    subnormal = np.abs(kept) < fmt.min_normal
    assert np.all(flushed[subnormal] == 0)
    assert np.array_equal(np.signbit(flushed[subnormal]), np.signbit(x[subnormal]))
    assert same_bits(flushed[~subnormal], kept[~subnormal]).all()


# ---- stochastic rounding ----
@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=str)
def test_stochastic_is_unbiased_and_uses_only_the_two_neighbours(fmt):
    rng = np.random.default_rng(3)
    # points between grid neighbours |lower| and |lower| + gap: two in a normal binade, one subnormal
    lower = np.array([1.0, 1.0 + fmt.eps, fmt.min_subnormal])
    gap = fmt.ulp(lower).astype(np.float64)
    sign = np.array([1.0, -1.0, 1.0])
    x = sign * (lower + np.array([0.5, 0.1, 0.3]) * gap)
    draws = 20_000
    samples = round_to(np.broadcast_to(x, (draws, x.size)), fmt, mode="stochastic", rng=rng).astype(np.float64)
    assert np.all((samples == sign * lower) | (samples == sign * (lower + gap)))
    # Each draw is lower + gap * Bernoulli(p): its variance p(1-p) gap^2 is at most gap^2 / 4, so the
    # mean of `draws` draws has standard error <= gap / (2 sqrt(draws)). A bias-free rounding lands
    # within 5 standard errors except with probability < 1e-6 (normal tail), and the seed is fixed.
    standard_error = gap / (2 * np.sqrt(draws))
    assert np.all(np.abs(samples.mean(axis=0) - x) <= 5 * standard_error)


# ---- oracles: NumPy float16 and ml_dtypes ----
def test_fp16_bit_identical_to_numpy_on_random_float32():
    rng = np.random.default_rng(4)
    x = random_float32(rng, 200_000)
    grid = grid_of(FP16).astype(np.float64)
    ties = ((grid[:-1] + grid[1:]) / 2).astype(np.float32)             # every midpoint is exact in float32
    edges = np.array([0.0, -0.0, 65504, 65519, 65520, 65536, 2.0 ** -24, 2.0 ** -25, 2.0 ** -25 * 1.0001,
                      3 * 2.0 ** -26, 6.1e-5, np.finfo(np.float32).max], dtype=np.float32)
    x = np.concatenate([x, -x, ties, edges, -edges])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)                # NumPy warns when casting to inf
        expected = x.astype(np.float16).astype(np.float32)
    assert same_bits(round_to(x, FP16), expected).all()


def test_fp32_from_float64_matches_numpy_cast():
    rng = np.random.default_rng(5)
    x = rng.standard_normal(50_000) * np.exp2(rng.integers(-160, 140, 50_000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = x.astype(np.float32)
    assert same_bits(round_to(x, FP32), expected).all()


ML_DTYPES_NAMES = {"bf16": "bfloat16", "fp8_e4m3": "float8_e4m3fn", "fp8_e5m2": "float8_e5m2",
                   "fp4_e2m1": "float4_e2m1fn"}


@pytest.mark.parametrize("fmt", [BF16, FP8_E4M3, FP8_E5M2, FP4_E2M1], ids=str)
def test_bit_identical_to_ml_dtypes(fmt):
    """ml_dtypes rounds to nearest even and, out of range, gives inf (bf16, e5m2), NaN (e4m3fn)
    or saturates (e2m1fn, which has neither): our non-saturating mode where the format allows it."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    dtype = getattr(ml_dtypes, ML_DTYPES_NAMES[fmt.name])
    rng = np.random.default_rng(6)
    x = random_float32(rng, 100_000)
    scaled = x * np.exp2(rng.integers(-140, 0, x.size))                # many values near fmt's range
    near_max = rng.standard_normal(50_000) * fmt.max
    grid = grid_of(fmt).astype(np.float64) if fmt.total_bits <= 16 else np.zeros(1)
    ties = (grid[:-1] + grid[1:]) / 2
    x = np.concatenate([x, scaled, near_max, ties, [np.inf, -np.inf, np.nan]])
    x = x[~np.isfinite(x) | (np.abs(x) <= np.finfo(np.float32).max)].astype(np.float32)
    if not fmt.has_nan:
        x = x[~np.isnan(x)]
    saturate = fmt.convention == "finite"
    assert same_bits(round_to(x, fmt, saturate=saturate), x.astype(dtype).astype(np.float32)).all()
    if fmt is FP8_E4M3:     # saturation (our default for e4m3) agrees with ml_dtypes inside the range
        inside = np.abs(x) <= fmt.max
        assert same_bits(round_to(x[inside], fmt), x[inside].astype(dtype).astype(np.float32)).all()
        assert np.all(np.abs(round_to(x[np.isinf(x)], fmt)) == fmt.max)
    finite = np.isfinite(x) & (np.abs(x) <= fmt.max)
    expected_bits = x[finite].astype(dtype).view(np.uint16 if fmt.total_bits == 16 else np.uint8)
    if fmt is FP4_E2M1:
        expected_bits = expected_bits & 0xF
    np.testing.assert_array_equal(floats.to_bits(x[finite], fmt), expected_bits.astype(np.int64))


# ---- bit fields ----
def test_from_bits_decodes_every_fp16_pattern_like_numpy():
    patterns = np.arange(2 ** 16, dtype=np.uint16)
    assert same_bits(floats.from_bits(patterns, FP16), patterns.view(np.float16).astype(np.float32)).all()


def test_from_bits_decodes_every_fp8_pattern_like_ml_dtypes():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    patterns = np.arange(256, dtype=np.uint8)
    for fmt, dtype in [(FP8_E4M3, ml_dtypes.float8_e4m3fn), (FP8_E5M2, ml_dtypes.float8_e5m2)]:
        assert same_bits(floats.from_bits(patterns, fmt), patterns.view(dtype).astype(np.float32)).all()


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=str)
@FAST
@given(data=st.data())
def test_encode_decode_round_trip(fmt, data):
    x = data.draw(values_near(fmt))
    sign, exponent, mantissa = floats.encode(x, fmt)
    assert sign.dtype == exponent.dtype == mantissa.dtype == np.int64
    assert np.all((0 <= exponent) & (exponent < 2 ** fmt.exponent_bits))
    assert np.all((0 <= mantissa) & (mantissa < 2 ** fmt.mantissa_bits))
    assert same_bits(floats.decode(sign, exponent, mantissa, fmt), round_to(x, fmt)).all()


def test_encode_fields_of_known_values():
    # 1.5 = 2^0 * 1.1b in bf16: exponent field = bias 127, mantissa 100 0000b
    assert tuple(int(f) for f in floats.encode(1.5, BF16)) == (0, 127, 64)
    # -2^-9 is e4m3fn's smallest subnormal: exponent field 0, mantissa 001
    assert tuple(int(f) for f in floats.encode(-(2.0 ** -9), FP8_E4M3)) == (1, 0, 1)


def test_decode_rejects_fields_out_of_range():
    with pytest.raises(ValueError, match=r"exponent field must lie in \[0, 15\]"):
        floats.decode(0, 16, 0, FP8_E4M3)
    with pytest.raises(TypeError, match="integer mantissa"):
        floats.decode(0, 1, 0.5, FP8_E4M3)
    with pytest.raises(ValueError, match="bit patterns lie in"):
        floats.from_bits(256, FP8_E5M2)


# ---- exercises ----
@pytest.mark.exercise("3.1")
def test_exercise_3_1_round_to_nearest_even_matches_float16():
    rng = np.random.default_rng(7)
    grid = grid_of(FP16).astype(np.float64)
    ties = (grid[:-1] + grid[1:]) / 2
    x = np.concatenate([rng.standard_normal(5_000) * 100, rng.uniform(-1e-4, 1e-4, 5_000), ties]).astype(np.float32)
    np.testing.assert_array_equal(round_to(x, FP16), x.astype(np.float16).astype(np.float32))
    # bf16 ties: 1 + 2^-8 lies halfway between 1 and 1 + 2^-7; the even neighbour is 1
    assert round_to(np.float32(1 + 2 ** -8), BF16) == 1.0
    assert round_to(np.float32(1 + 3 * 2 ** -8), BF16) == 1 + 2 ** -6


@pytest.mark.exercise("3.2")
def test_exercise_3_2_stochastic_rounding_is_unbiased():
    rng = np.random.default_rng(8)
    x = np.float32(1 + 0.25 * 2 ** -7)                    # a quarter of the way from 1 to the next bf16 value
    draws = 40_000
    samples = round_to(np.full(draws, x), BF16, mode="stochastic", rng=rng).astype(np.float64)
    assert set(np.unique(samples)) == {1.0, 1 + 2 ** -7}
    # up with p = 1/4: the count of ups is Binomial(draws, 1/4); 5 standard deviations of slack
    ups = np.sum(samples > 1)
    assert abs(ups - draws / 4) <= 5 * np.sqrt(draws * 0.25 * 0.75)


@pytest.mark.exercise("3.3")
def test_exercise_3_3_decode_every_fp16_pattern_matches_numpy():
    bits = np.arange(2 ** 16, dtype=np.int64)
    ours = floats.decode(bits >> 15, (bits >> 10) & 31, bits & 1023, FP16)
    numpy_half = bits.astype(np.uint16).view(np.float16).astype(np.float32)   # an independent implementation
    np.testing.assert_array_equal(ours, numpy_half)                           # NaN == NaN here


@pytest.mark.exercise("3.3")
def test_exercise_3_3_decode_bf16_and_e4m3_by_the_formula():
    bits = np.arange(2 ** 16, dtype=np.int64)
    as_float32 = (bits.astype(np.uint32) << 16).view(np.float32)             # bf16 = the top half of fp32
    np.testing.assert_array_equal(floats.decode(bits >> 15, (bits >> 7) & 255, bits & 127, BF16), as_float32)
    # e4m3fn by hand: bias 7, subnormals 2^-6 M/8, only S.1111.111 is NaN
    for s, e, m in [(0, 0, 1), (0, 0, 7), (1, 1, 0), (0, 7, 4), (0, 15, 6), (1, 15, 6), (0, 15, 7)]:
        want = (2.0 ** -6 * m / 8 if e == 0 else 2.0 ** (e - 7) * (1 + m / 8)) * (-1) ** s
        got = float(floats.decode(s, e, m, FP8_E4M3))
        assert (np.isnan(got) if (e, m) == (15, 7) else got == want), (s, e, m, got, want)


@pytest.mark.exercise("3.4")
def test_exercise_3_4_ulp_equals_numpy_spacing_in_fp16():
    half = np.arange(1, 0x7BFF, dtype=np.uint16).view(np.float16)             # every positive fp16 below max
    spacing = np.spacing(half).astype(np.float64)                             # gap to the next one up
    np.testing.assert_array_equal(FP16.ulp(half.astype(np.float32)).astype(np.float64), spacing)
    np.testing.assert_array_equal(FP16.ulp(-half.astype(np.float32)).astype(np.float64), spacing)


@pytest.mark.exercise("3.4")
def test_exercise_3_4_ulp_of_bf16_and_e4m3_by_hand():
    assert float(BF16.ulp(1.0)) == 2.0 ** -7 and float(BF16.ulp(3.0)) == 2.0 ** -6
    assert float(BF16.ulp(0.0)) == 2.0 ** (-126 - 7)                          # subnormal spacing at 0
    assert float(FP8_E4M3.ulp(448.0)) == 32.0 and float(FP8_E4M3.ulp(2.0 ** -9)) == 2.0 ** -9
    assert float(FP8_E4M3.ulp(1000.0)) == 32.0                                 # beyond the range: emax's spacing
    assert np.isnan(FP16.ulp(np.nan)) and np.isnan(FP16.ulp(np.inf))
    assert FP16.ulp(np.array([1.0, 1.5])).dtype == np.float32
