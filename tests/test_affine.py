"""Tests for tinyq.formats.affine: properties (hypothesis), hand-derived cases, torch as an optional oracle."""
import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tinyq.formats import affine
from tinyq.formats.affine import QParams, calculate_qparams, dequantize, fake_quantize, quantize

F32_EPS = float(np.finfo(np.float32).eps)
bits_st = st.integers(2, 16)
real_st = st.floats(-1e4, 1e4, allow_nan=False, width=32)


@st.composite
def range_qparams(draw, per_channel=False):
    """QParams from calculate_qparams on a random range, together with the (lo, hi) it was made from."""
    bits, symmetric = draw(bits_st), draw(st.booleans())
    signed, narrow = draw(st.booleans()), draw(st.booleans())
    a, b = draw(real_st), draw(real_st)
    lo, hi = min(a, b), max(a, b)
    return calculate_qparams(lo, hi, bits=bits, symmetric=symmetric, signed=signed, narrow_range=narrow), lo, hi


def representable_interval(qp):
    """[scale·(qmin − zero_point), scale·(qmax − zero_point)] as float64 numbers."""
    return qp.scale * (qp.qmin - qp.zero_point), qp.scale * (qp.qmax - qp.zero_point)


# ---------------------------------------------------------------- QParams

@pytest.mark.parametrize("bits", [1, 17, 0, 8.0])
def test_qparams_rejects_bits_outside_2_to_16(bits):
    with pytest.raises(ValueError, match="bits an integer in 2..16"):
        QParams(scale=0.1, zero_point=0, bits=bits)


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan"), float("inf"), 1e-50])
def test_qparams_rejects_bad_scale(scale):
    with pytest.raises(ValueError, match="finite scale > 0"):
        QParams(scale=scale, zero_point=0)


def test_qparams_rejects_bad_zero_point():
    with pytest.raises(ValueError, match=r"zero_point in \[0, 255\].*got 256"):
        QParams(scale=0.1, zero_point=256)
    with pytest.raises(ValueError, match=r"zero_point in \[-127, 127\].*got -128"):
        QParams(scale=0.1, zero_point=-128, signed=True, narrow_range=True)
    with pytest.raises(ValueError, match="integer zero_point"):
        QParams(scale=0.1, zero_point=1.5)


def test_qparams_per_channel_shapes_are_checked():
    with pytest.raises(ValueError, match=r"scale of shape \(C,\), got shape \(2, 2\)"):
        QParams(scale=np.ones((2, 2)), zero_point=np.zeros((2, 2), np.int64), axis=0)
    with pytest.raises(ValueError, match=r"zero_point of shape \(3,\) \(like scale\), got \(2,\)"):
        QParams(scale=np.ones(3), zero_point=np.zeros(2, np.int64), axis=0)
    with pytest.raises(ValueError, match="integer zero_point array"):
        QParams(scale=np.ones(3), zero_point=np.zeros(3), axis=0)
    with pytest.raises(ValueError, match="scalar scale"):
        QParams(scale=np.ones(3), zero_point=0)
    with pytest.raises(ValueError, match="every scale finite and > 0"):
        QParams(scale=np.array([1.0, 0.0]), zero_point=np.zeros(2, np.int64), axis=1)


@pytest.mark.parametrize("bits", range(2, 17))
@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("narrow_range", [False, True])
def test_integer_range_and_code_dtype(bits, signed, narrow_range):
    qp = QParams(scale=1.0, zero_point=0 if signed else 2**bits - 1, bits=bits, signed=signed,
                 narrow_range=narrow_range)
    assert qp.qmax - qp.qmin + 1 == 2**bits - int(narrow_range)
    assert (qp.qmin < 0) == signed and qp.qmax > 0
    info = np.iinfo(qp.dtype)
    assert info.min <= qp.qmin and qp.qmax <= info.max
    assert qp.dtype.itemsize == (1 if bits <= 8 else 2)


def test_qparams_is_immutable_and_compares_by_value():
    qp = calculate_qparams(np.array([-1.0, -2.0]), np.array([1.0, 3.0]), axis=0)
    with pytest.raises(ValueError):
        qp.scale[0] = 5.0                      # read-only array
    with pytest.raises(AttributeError):
        qp.bits = 4
    assert qp == calculate_qparams(np.array([-1.0, -2.0]), np.array([1.0, 3.0]), axis=0)
    assert qp != calculate_qparams(np.array([-1.0, -2.0]), np.array([1.0, 3.5]), axis=0)


# ---------------------------------------------------------------- calculate_qparams

@pytest.mark.exercise("5.1")
def test_asymmetric_qparams_hand_example():
    # [-1, 3] on uint8: scale = 4/255, zero_point = 0 - round(-1 / (4/255)) = round(63.75) = 64
    qp = calculate_qparams(-1.0, 3.0, bits=8)
    assert qp.scale == np.float32(4.0) / np.float32(255.0)
    assert qp.zero_point == 64 and qp.signed is False
    # the same range on int8: zero_point = -128 + 64 = -64
    assert calculate_qparams(-1.0, 3.0, bits=8, signed=True).zero_point == -64


@pytest.mark.exercise("5.1")
def test_asymmetric_qparams_widen_to_zero():
    positive = calculate_qparams(2.0, 5.0, bits=4)          # range becomes [0, 5]
    assert positive.zero_point == 0 and positive.scale == np.float32(5.0) / np.float32(15.0)
    negative = calculate_qparams(-6.0, -2.0, bits=4)        # range becomes [-6, 0]
    assert negative.zero_point == 15 and negative.scale == np.float32(6.0) / np.float32(15.0)


@pytest.mark.exercise("5.1")
@settings(max_examples=150, deadline=None, derandomize=True)   # graded: the same examples on every run
@given(bits=bits_st, signed=st.booleans(), a=real_st, b=real_st)
@example(bits=14, signed=False, a=0.0, b=0.0011)   # (hi - lo)/(qmax - qmin) < eps: the scale sits at its floor
@example(bits=16, signed=True, a=-0.003, b=0.004)
def test_asymmetric_qparams_cover_the_range(bits, signed, a, b):
    """The grid [scale (qmin - z), scale (qmax - z)] holds 0 exactly and covers [lo, hi] to within half a
    step. It spans [lo, hi] itself unless the scale sits at its eps floor, where the grid is wider."""
    lo, hi = min(a, b, 0.0), max(a, b, 0.0)
    qp = calculate_qparams(lo, hi, bits=bits, signed=signed)
    assert isinstance(qp.zero_point, int) and qp.qmin <= qp.zero_point <= qp.qmax
    codes = np.array([qp.qmin, qp.zero_point, qp.qmax], dtype=np.int64)
    lowest, zero, highest = dequantize(codes, qp).astype(np.float64)
    assert zero == 0.0
    assert qp.scale >= F32_EPS
    slack = qp.scale / 2 + 4 * F32_EPS * (hi - lo)
    assert lowest <= lo + slack and highest >= hi - slack
    if (hi - lo) / (qp.qmax - qp.qmin) > 2 * F32_EPS:     # clear of the floor: the grid spans [lo, hi]
        assert abs(lowest - lo) <= slack and abs(highest - hi) <= slack
        assert qp.scale == pytest.approx((hi - lo) / (qp.qmax - qp.qmin), rel=1e-6)


@pytest.mark.exercise("5.1")
def test_asymmetric_qparams_per_channel_equals_per_tensor():
    lo, hi = np.array([-1.0, 0.5, -7.0, 0.0]), np.array([2.0, 4.0, -1.0, 0.0])
    qp = calculate_qparams(lo, hi, bits=6, axis=1)
    assert qp.axis == 1 and qp.scale.dtype == np.float32 and qp.scale.shape == (4,)
    for c in range(4):
        one = calculate_qparams(lo[c], hi[c], bits=6)
        assert qp.scale[c] == one.scale and qp.zero_point[c] == one.zero_point


@settings(max_examples=150, deadline=None)
@given(bits=bits_st, narrow=st.booleans(), a=real_st, b=real_st)
def test_symmetric_signed_has_zero_point_zero(bits, narrow, a, b):
    qp = calculate_qparams(min(a, b), max(a, b), bits=bits, symmetric=True, narrow_range=narrow)
    assert qp.signed and qp.zero_point == 0
    amax = max(abs(a), abs(b))
    assert qp.scale == pytest.approx(max(amax / ((qp.qmax - qp.qmin) / 2), F32_EPS), rel=1e-6)


def test_symmetric_unsigned_zero_point_is_the_middle_code():
    assert calculate_qparams(-1.0, 1.0, symmetric=True, signed=False).zero_point == 128
    assert calculate_qparams(-1.0, 1.0, bits=4, symmetric=True, signed=False, narrow_range=True).zero_point == 8


@pytest.mark.parametrize("symmetric", [False, True])
def test_degenerate_range_gives_eps_scale(symmetric):
    qp = calculate_qparams(0.0, 0.0, symmetric=symmetric)
    assert qp.scale == np.float32(F32_EPS)
    assert fake_quantize(np.zeros(3, np.float32), qp).tolist() == [0.0, 0.0, 0.0]


def test_calculate_qparams_rejects_bad_ranges():
    with pytest.raises(ValueError, match="lo <= hi"):
        calculate_qparams(1.0, -1.0)
    with pytest.raises(ValueError, match="finite lo"):
        calculate_qparams(float("nan"), 1.0)
    with pytest.raises(ValueError, match="bits an integer in 2..16"):
        calculate_qparams(-1.0, 1.0, bits=17)
    with pytest.raises(ValueError, match="axis=0 expects lo and hi 1-D arrays"):
        calculate_qparams(-1.0, 1.0, axis=0)
    with pytest.raises(ValueError, match="axis=None expects lo and hi scalars"):
        calculate_qparams(np.array([-1.0]), np.array([1.0]))


# ---------------------------------------------------------------- quantize / dequantize

@pytest.mark.exercise("5.2")
def test_quantize_rounds_half_to_even_and_clamps():
    qp = QParams(scale=1.0, zero_point=0, bits=4, signed=True)        # codes -8..7
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 0.49, 6.5, 7.6, -8.5, 100.0, -np.inf, np.inf], np.float32)
    assert quantize(x, qp).tolist() == [0, 2, 2, 0, -2, 0, 6, 7, -8, 7, -8, 7]
    assert quantize(x, qp).dtype == np.int8


@pytest.mark.exercise("5.2")
def test_quantize_adds_zero_point_after_rounding():
    qp = QParams(scale=0.5, zero_point=10, bits=8, signed=False)
    x = np.array([0.0, 0.25, 0.75, -5.0, -5.25, -6.0, 122.5, 123.0], np.float32)
    # x / 0.5 = 0, 0.5, 1.5, -10, -10.5, -12, 245, 246 -> rounded, +10, clamped to [0, 255]
    assert quantize(x, qp).tolist() == [10, 10, 12, 0, 0, 0, 255, 255]
    assert quantize(x, qp).dtype == np.uint8
    wide = QParams(scale=2.0**-10, zero_point=-3, bits=12, signed=True)
    assert quantize(np.array([1.0, -2.0, 3.0]), wide).tolist() == [1021, -2048, 2047]
    assert quantize(np.array([1.0]), wide).dtype == np.int16


@pytest.mark.exercise("5.2")
def test_quantize_per_channel_uses_each_channels_params():
    qp = QParams(scale=np.array([1.0, 0.25]), zero_point=np.array([0, -4]), bits=8, signed=True, axis=1)
    x = np.array([[1.0, 1.0], [-2.0, 0.5], [2.5, 40.0]], np.float32)
    # column 0: x / 1 + 0; column 1: x / 0.25 - 4
    assert quantize(x, qp).tolist() == [[1, 0], [-2, -2], [2, 127]]


@settings(max_examples=200, deadline=None)
@given(params=range_qparams(), data=st.data())
def test_round_trip_error_is_at_most_half_a_step_inside_the_range(params, data):
    qp, _, _ = params
    low, high = representable_interval(qp)
    low32, high32 = np.float32(low), np.float32(high)       # round the bounds inward onto float32
    low32 = low32 if low32 >= low else np.nextafter(low32, np.float32(np.inf))
    high32 = high32 if high32 <= high else np.nextafter(high32, np.float32(-np.inf))
    elements = st.floats(float(low32), float(high32), width=32)
    x = np.array(data.draw(st.lists(elements, min_size=1, max_size=20)), np.float32)
    error = np.abs(fake_quantize(x, qp).astype(np.float64) - x)
    # float32 rounding of x / scale and of scale · (q − z) adds at most ~2 ulp of |x| on top of scale / 2
    tolerance = qp.scale / 2 * (1 + 4 * F32_EPS) + 4 * F32_EPS * np.abs(x.astype(np.float64))
    assert np.all(error <= tolerance)


@settings(max_examples=100, deadline=None)
@given(params=range_qparams(), x=st.lists(st.floats(allow_nan=False, width=32), min_size=1, max_size=20))
def test_quantize_stays_in_qmin_qmax_and_zero_is_exact(params, x):
    qp, _, _ = params
    q = quantize(np.array(x, np.float32), qp)
    assert q.dtype == qp.dtype and q.min() >= qp.qmin and q.max() <= qp.qmax
    assert fake_quantize(np.float32(0.0), qp) == 0.0
    assert quantize(np.float32(0.0), qp) == qp.zero_point


@settings(max_examples=100, deadline=None)
@given(params=range_qparams(), x=st.lists(st.floats(-1e5, 1e5, width=32), min_size=2, max_size=30))
def test_quantize_is_monotonic(params, x):
    qp, _, _ = params
    x = np.sort(np.array(x, np.float32))
    assert np.all(np.diff(quantize(x, qp).astype(np.int64)) >= 0)


@pytest.mark.parametrize("bits", range(2, 17))
@pytest.mark.parametrize("signed, symmetric", [(False, False), (True, False), (True, True), (False, True)])
def test_every_code_round_trips_for_every_bit_width(bits, signed, symmetric):
    qp = calculate_qparams(-0.7, 1.3, bits=bits, symmetric=symmetric, signed=signed)
    codes = np.arange(qp.qmin, qp.qmax + 1).astype(qp.dtype)
    grid = dequantize(codes, qp)
    assert grid.dtype == np.float32 and np.all(np.diff(grid) > 0)
    assert np.array_equal(quantize(grid, qp), codes)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), axis=st.integers(-3, 2), bits=bits_st, symmetric=st.booleans())
def test_per_channel_equals_per_tensor_on_each_slice(seed, axis, bits, symmetric):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((3, 4, 5)) * rng.uniform(0.01, 10)).astype(np.float32)
    moved = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)
    qp = calculate_qparams(moved.min(axis=1), moved.max(axis=1), bits=bits, symmetric=symmetric, axis=axis)
    q, x_hat = quantize(x, qp), fake_quantize(x, qp)
    for c in range(x.shape[axis]):
        one = calculate_qparams(moved[c].min(), moved[c].max(), bits=bits, symmetric=symmetric)
        index = [slice(None)] * 3
        index[axis] = c
        assert np.array_equal(q[tuple(index)], quantize(x[tuple(index)], one))
        assert np.array_equal(x_hat[tuple(index)], fake_quantize(x[tuple(index)], one))


def test_quantize_and_dequantize_reject_bad_input():
    qp = calculate_qparams(-1.0, 1.0)
    with pytest.raises(ValueError, match="NaN"):
        quantize(np.array([0.0, np.nan]), qp)
    with pytest.raises(TypeError, match="QParams"):
        quantize(np.zeros(2), (0.1, 0))
    with pytest.raises(TypeError, match="integer array"):
        dequantize(np.zeros(2, np.float32), qp)
    with pytest.raises(ValueError, match=r"codes in \[0, 255\]"):
        dequantize(np.array([256]), qp)
    per_channel = calculate_qparams(np.zeros(3), np.ones(3), axis=2)
    with pytest.raises(ValueError, match="axis 2 is out of range for a 2-d array"):
        quantize(np.zeros((3, 3)), per_channel)
    with pytest.raises(ValueError, match=r"x.shape\[2\] == 3 channels, got shape \(1, 1, 4\)"):
        quantize(np.zeros((1, 1, 4)), per_channel)


def test_quantization_error_helpers():
    qp = calculate_qparams(-1.0, 1.0, bits=4)
    x = np.linspace(-1, 1, 101, dtype=np.float32)
    error = affine.quantization_error(x, qp)
    assert error.dtype == np.float32 and np.max(np.abs(error)) <= qp.scale / 2 * (1 + 1e-6)
    assert affine.quantization_mse(x, qp) == pytest.approx(np.mean(error.astype(np.float64) ** 2))


# ---------------------------------------------------------------- quantize_multiplier

def test_quantize_multiplier_hand_cases():
    assert affine.quantize_multiplier(0.5) == (2**30, 0)          # 0.5 = 2^30 · 2^-31 · 2^0
    assert affine.quantize_multiplier(1.0) == (2**30, 1)
    assert affine.quantize_multiplier(0.75) == (3 * 2**29, 0)
    assert affine.quantize_multiplier(0.0) == (0, 0)
    assert affine.quantize_multiplier(1 - 2.0**-40) == (2**30, 1)  # rounds up to 2^31, renormalised


@settings(max_examples=200, deadline=None)
@given(st.floats(2.0**-31, 2.0**20))
def test_quantize_multiplier_round_trip(real_multiplier):
    m0, shift = affine.quantize_multiplier(real_multiplier)
    assert 2**30 <= m0 < 2**31
    represented = math.ldexp(m0, shift - 31)                    # exact in float64
    assert abs(represented - real_multiplier) <= 2.0**-31 * real_multiplier


def test_quantize_multiplier_arrays_and_errors():
    values = np.array([0.0, 0.001, 0.3, 1.0, 7.5, 1e-12])
    m0, shift = affine.quantize_multiplier(values)
    assert m0.dtype == np.int32 and shift.dtype == np.int32
    assert [(int(a), int(b)) for a, b in zip(m0, shift)] == [affine.quantize_multiplier(float(v)) for v in values]
    assert (int(m0[-1]), int(shift[-1])) == (0, 0)              # below 2^-32: flushed to zero as TFLite does
    with pytest.raises(ValueError, match="finite multipliers >= 0"):
        affine.quantize_multiplier(-0.5)
    with pytest.raises(ValueError, match="finite multipliers >= 0"):
        affine.quantize_multiplier(float("nan"))


# ---------------------------------------------------------------- torch oracle

def _near_tie(x, scale):
    """x / scale within float32 rounding of a .5 tie, where our x / scale and torch's x · (1 / scale) may round
    apart (torch multiplies by a float32 reciprocal; about 1 value in a million lands on the other side)."""
    ratio = x.astype(np.float64) / scale
    return np.abs(np.abs(ratio - np.floor(ratio)) - 0.5) < 1e-5 * np.maximum(1.0, np.abs(ratio))


@pytest.mark.filterwarnings("ignore:.*quantized tensor creation functions.*:UserWarning")
@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_quantize_matches_torch_quantize_per_tensor(signed, seed):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(2000) * 3).astype(np.float32)
    x[:20] = np.round(x[:20] * 4) / 4                      # some exact ties
    qp = calculate_qparams(-4.0, 6.0, bits=8, signed=signed)
    dtype = torch.qint8 if signed else torch.quint8
    expected = torch.quantize_per_tensor(torch.from_numpy(x), qp.scale, qp.zero_point, dtype)
    ours = quantize(x, qp)
    agree = ours.astype(np.int64) == expected.int_repr().numpy().astype(np.int64)
    assert np.all(agree | _near_tie(x, qp.scale))
    assert np.array_equal(dequantize(ours, qp)[agree], expected.dequantize().numpy()[agree])


@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8])
@pytest.mark.parametrize("signed", [False, True])
def test_fake_quantize_matches_torch_for_other_bit_widths(bits, signed):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(bits)
    x = (rng.standard_normal(1000) * 2).astype(np.float32)
    qp = calculate_qparams(-1.5, 2.5, bits=bits, signed=signed)
    expected = torch.fake_quantize_per_tensor_affine(torch.from_numpy(x), qp.scale, qp.zero_point,
                                                     qp.qmin, qp.qmax).numpy()
    ours = fake_quantize(x, qp)
    assert np.all((ours == expected) | _near_tie(x, qp.scale))


@pytest.mark.filterwarnings("ignore:.*quantized tensor creation functions.*:UserWarning")
@pytest.mark.parametrize("axis", [0, 1])
def test_per_channel_matches_torch(axis):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(axis)
    x = (rng.standard_normal((6, 5, 3)) * rng.uniform(0.1, 4, size=(6, 1, 1))).astype(np.float32)
    moved = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)
    qp = calculate_qparams(moved.min(axis=1), moved.max(axis=1), bits=8, symmetric=True, axis=axis)
    scale, zero_point = torch.from_numpy(np.array(qp.scale)), torch.from_numpy(np.array(qp.zero_point))
    expected = torch.quantize_per_channel(torch.from_numpy(x), scale.double(), zero_point, axis, torch.qint8)
    ours = quantize(x, qp)
    per_channel_scale = np.expand_dims(qp.scale, [d for d in range(3) if d != axis])
    ties = _near_tie(x, per_channel_scale)
    assert np.all((ours == expected.int_repr().numpy()) | ties)
    fake = torch.fake_quantize_per_channel_affine(torch.from_numpy(x), scale, zero_point.int(), axis, -128, 127)
    assert np.all((fake_quantize(x, qp) == fake.numpy()) | ties)


@pytest.mark.exercise("5.3")
@pytest.mark.parametrize("bits, narrow", [(8, False), (8, True), (4, False), (3, True)])
def test_symmetric_qparams_by_hand(bits, narrow):
    lo, hi = -1.5, 3.0
    qp = calculate_qparams(lo, hi, bits=bits, symmetric=True, narrow_range=narrow)
    qmin = -(2 ** (bits - 1)) + int(narrow)
    qmax = 2 ** (bits - 1) - 1
    assert qp.zero_point == 0 and qp.signed
    assert qp.scale == pytest.approx(3.0 / ((qmax - qmin) / 2), rel=1e-6)
    unsigned = calculate_qparams(lo, hi, bits=bits, symmetric=True, signed=False)
    assert unsigned.zero_point == 2 ** (bits - 1)                      # the middle code of [0, 2^b - 1]
    assert unsigned.scale == pytest.approx(3.0 / ((2 ** bits - 1) / 2), rel=1e-6)


@pytest.mark.exercise("5.3")
def test_symmetric_qparams_per_channel_and_all_zero():
    qp = calculate_qparams(np.array([-2.0, 0.0, -0.5]), np.array([1.0, 0.0, 4.0]), bits=8, symmetric=True, axis=0)
    np.testing.assert_allclose(qp.scale, [2.0 / 127.5, np.finfo(np.float32).eps, 4.0 / 127.5], rtol=1e-6)
    assert qp.zero_point.tolist() == [0, 0, 0] and qp.scale.dtype == np.float32


@pytest.mark.exercise("5.4")
def test_dequantize_uint8_codes_below_the_zero_point():
    qp = QParams(scale=0.5, zero_point=200, bits=8, signed=False)
    q = np.array([0, 199, 200, 255], dtype=np.uint8)                   # q - z < 0: must not wrap in uint8
    x = dequantize(q, qp)
    assert x.dtype == np.float32 and x.tolist() == [0.5 * (v - 200) for v in [0, 199, 200, 255]]


@pytest.mark.exercise("5.4")
def test_dequantize_per_channel_uses_each_channels_params():
    qp = QParams(scale=np.array([0.5, 2.0], dtype=np.float32), zero_point=np.array([1, -3]), bits=8, signed=True,
                 axis=1)
    q = np.array([[[-128, 127], [0, 5]]], dtype=np.int8)               # (1, 2 channels, 2)
    want = [[[0.5 * (-128 - 1), 0.5 * (127 - 1)], [2.0 * (0 + 3), 2.0 * (5 + 3)]]]
    assert dequantize(q, qp).tolist() == want
