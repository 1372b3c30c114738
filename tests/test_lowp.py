"""tinyq.lowp: tensors on a format's grid, and matmul / conv2d in a low-precision format.

References used here, each chosen so that it is right by construction:
- float64 sums of fp16 products whose inputs lie in [2^-6, 2^6] are exact (see `_exact_fp16_inputs`);
- NumPy's float64 -> float16 conversion rounds correctly (checked against floats.round_to in test_floats);
- `fractions.Fraction` sums are exact rational arithmetic.
"""
import functools
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import tinyq as tq
from tinyq import functional as F
from tinyq import lowp, ops
from tinyq.formats import floats

SIMULATED = [floats.BF16, floats.FP8_E4M3, floats.FP8_E5M2]
ALL = [floats.FP16] + SIMULATED


def finite_arrays(max_value=1e4):
    return arrays(np.float32, st.integers(1, 12),
                  elements=st.floats(-max_value, max_value, width=32, allow_nan=False))


# ---- to_format, keep_grid, rounded ----
@settings(max_examples=60, deadline=None)
@given(values=finite_arrays(), fmt=st.sampled_from(ALL))
def test_to_format_lands_on_the_grid_in_the_right_storage(values, fmt):
    out = lowp.to_format(tq.tensor(values), fmt)
    assert lowp.on_grid(out, fmt)
    if fmt == floats.FP16:
        assert out.dtype == np.float16 and out.fmt is None
        np.testing.assert_array_equal(out.data, values.astype(np.float16))
    else:
        assert out.dtype == np.float32 and out.fmt == fmt
        np.testing.assert_array_equal(out.data, floats.round_to(values, fmt))


@settings(max_examples=40, deadline=None)
@given(values=finite_arrays(max_value=100.0), seed=st.integers(0, 2 ** 32 - 1))
def test_stochastic_to_format_picks_one_of_the_two_neighbours(values, seed):
    """bf16 is the top 16 bits of float32: masking the low bits rounds toward zero (an independent oracle)."""
    out = lowp.to_format(tq.tensor(values), floats.BF16, mode="stochastic", rng=np.random.default_rng(seed)).data
    bits = values.view(np.uint32)
    toward_zero_bits = bits & np.uint32(0xFFFF0000)
    away_bits = np.where(bits != toward_zero_bits, toward_zero_bits + np.uint32(0x10000), toward_zero_bits)
    toward_zero, away = toward_zero_bits.view(np.float32), away_bits.astype(np.uint32).view(np.float32)
    assert np.all((out == toward_zero) | (out == away))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fmt", ALL)
def test_to_format_gradient_is_straight_through_in_the_input_dtype(fmt, dtype):
    x = tq.tensor(np.linspace(-3, 3, 7).astype(dtype), requires_grad=True)
    weights = np.arange(7, dtype=np.float32)
    (lowp.to_format(x, fmt).astype(np.float32) * tq.tensor(weights)).sum().backward()
    assert x.grad.dtype == dtype
    np.testing.assert_array_equal(x.grad, weights.astype(dtype))


def test_tensor_to_format_goes_through_lowp():
    x = tq.tensor(np.array([1.0, 1.0 + 2 ** -9, 3.3], dtype=np.float32))
    y = x.to(floats.BF16)
    assert y.fmt == floats.BF16 and "bf16" in repr(y)
    np.testing.assert_array_equal(y.data, floats.round_to(x.data, floats.BF16))
    assert x.to(floats.FP16).dtype == np.float16


def test_ops_on_a_simulated_format_keep_the_grid_and_the_format():
    rng = np.random.default_rng(0)
    a = tq.tensor(rng.standard_normal(200).astype(np.float32)).to(floats.BF16)
    b = tq.tensor(rng.standard_normal(200).astype(np.float32)).to(floats.BF16)
    assert not lowp.on_grid(a.data * b.data, floats.BF16)          # bf16 x bf16 needs 16 bits...
    product = a * b                                               # ...so the op rounds it back
    assert product.fmt == floats.BF16 and lowp.on_grid(product, floats.BF16)
    np.testing.assert_array_equal(product.data, floats.round_to(a.data * b.data, floats.BF16))
    for result in (F.relu(a), a.sum(), (a * 3.0).mean(axis=0), a.exp(), a[::2]):
        assert result.fmt == floats.BF16 and lowp.on_grid(result, floats.BF16)
    kept = lowp.rounded(ops.mul)(a, b)
    np.testing.assert_array_equal(kept.data, product.data)
    leaving = a.astype(np.float32)                                # an explicit cast leaves the format
    assert leaving.fmt is None and not lowp.on_grid(leaving * b.astype(np.float32), floats.BF16)


def test_mixing_a_format_with_plain_float32_is_an_error():
    a = tq.tensor(np.ones(3, dtype=np.float32)).to(floats.BF16)
    with pytest.raises(TypeError, match="one number format, got bf16 and float32"):
        a + tq.ones(3)
    with pytest.raises(TypeError, match="one number format, got bf16 and fp8_e4m3"):
        a * a.astype(np.float32).to(floats.FP8_E4M3)
    assert (a + 1.0).fmt == floats.BF16                           # constants take the tensor's format


def test_gradients_through_simulated_ops_are_straight_through():
    x = tq.tensor(np.array([1.0, 2.0, 3.0], dtype=np.float32), requires_grad=True)
    y = x.to(floats.BF16) * 1.01                                  # 1.01 x rounds to bf16 in the forward...
    y.sum().backward()
    np.testing.assert_allclose(x.grad, np.full(3, 1.01, dtype=np.float32))   # ...not in the gradient


def test_rounded_refuses_mixed_formats_and_keep_grid_needs_a_format():
    a = tq.tensor(np.ones(3, dtype=np.float32)).to(floats.BF16)
    b = tq.tensor(np.ones(3, dtype=np.float32)).to(floats.FP8_E4M3)
    with pytest.raises(ValueError, match="different formats"):
        lowp.rounded(ops.add)(a, b)
    with pytest.raises(ValueError, match="needs a format"):
        lowp.keep_grid(tq.tensor(np.ones(3, dtype=np.float32)))
    with pytest.raises(TypeError, match="FloatFormat"):
        lowp.to_format(a, "bf16")


# ---- matmul: fp32 accumulation against an exact reference ----
def _exact_fp16_inputs(rng, shape, signed=True):
    """fp16 values with |x| in [2^-6, 2^6]: multiples of 2^-16, so products are multiples of 2^-32
    below 2^12 and any sum of k <= 512 of them is an integer multiple of 2^-32 below 2^21:
    exact in float64 (53 bits), whatever the order."""
    magnitude = np.exp2(rng.uniform(-6, 6, shape))
    sign = rng.choice([-1.0, 1.0], shape) if signed else 1.0
    return (magnitude * sign).astype(np.float16)


@pytest.mark.parametrize("k, signed", [(1, True), (7, True), (64, False), (512, False)])
def test_fp16_matmul_with_fp32_accumulation_is_the_once_rounded_exact_result(k, signed):
    """C = fp16(exact sum) bit for bit, wherever fp32 accumulation provably cannot change the rounding.

    Any order of fp32 additions errs by at most gamma_{k-1} sum|p| (gamma_n = n u / (1 - n u),
    u = 2^-24). Where fp16 rounds the whole interval [s - bound, s + bound] to one value, the
    result must be that value; elsewhere it must be one of the two candidates. (Positive inputs
    for large k: with cancellation the bound, relative to the result, is too loose to certify much.)
    """
    rng = np.random.default_rng(k)
    a, b = _exact_fp16_inputs(rng, (16, k), signed), _exact_fp16_inputs(rng, (k, 16), signed)
    exact = a.astype(np.float64) @ b.astype(np.float64)
    out = lowp.lowp_matmul(a.astype(np.float32), b.astype(np.float32), floats.FP16, accumulate="fp32")
    assert out.dtype == np.float16
    u = 2.0 ** -24
    gamma = (k - 1) * u / (1 - (k - 1) * u)
    bound = 2 * gamma * (np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64)))   # 2x: slack for fl(s +- b)
    low, high = (exact - bound).astype(np.float16), (exact + bound).astype(np.float16)
    certain = low == high
    assert certain.mean() > 0.5
    np.testing.assert_array_equal(out.data[certain], exact.astype(np.float16)[certain])
    assert np.all((out.data == low) | (out.data == high))


def test_bf16_matmul_rounds_inputs_and_output():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((5, 6)).astype(np.float32)
    b = rng.standard_normal((6, 4)).astype(np.float32)
    out = lowp.lowp_matmul(tq.tensor(a), tq.tensor(b), floats.BF16)
    a_in, b_in = floats.round_to(a, floats.BF16), floats.round_to(b, floats.BF16)
    exact = a_in.astype(np.float64) @ b_in.astype(np.float64)   # bf16 products have 16 bits: exact
    assert out.fmt == floats.BF16 and lowp.on_grid(out, floats.BF16)
    # the fp32 accumulation error (<= 5 u sum|p|) is far below bf16's half step, except near a midpoint
    close = np.abs(out.data - floats.round_to(exact, floats.BF16)) > 0
    assert close.mean() < 0.1


# ---- matmul: low-precision accumulation against exact rational arithmetic ----
@functools.lru_cache(maxsize=1)
def _fp16_grid() -> np.ndarray:
    return floats.all_values(floats.FP16).astype(np.float64)


def _round_fraction_to_fp16(value: Fraction) -> Fraction:
    """Nearest fp16 value to an exact rational, ties to an even bit pattern (values inside fp16's range)."""
    grid = _fp16_grid()
    approx = float(value)
    i = int(np.clip(np.searchsorted(grid, approx), 1, len(grid) - 1))
    candidates = [Fraction(float(g)) for g in grid[max(i - 2, 0): i + 2]]
    best = min(candidates, key=lambda c: (abs(c - value), int(np.float16(float(c)).view(np.uint16)) & 1))
    return best


def test_fp16_accumulation_equals_a_rational_reference_rounding_after_every_addition():
    rng = np.random.default_rng(3)
    k = 40
    a = (rng.standard_normal((3, k)) * np.exp2(rng.integers(-8, 6, (3, k)))).astype(np.float16)
    b = (rng.standard_normal((k, 2)) * np.exp2(rng.integers(-8, 6, (k, 2)))).astype(np.float16)
    out = lowp.lowp_matmul(a.astype(np.float32), b.astype(np.float32), floats.FP16, accumulate="fp16")
    for i in range(3):
        for j in range(2):
            total = Fraction(0)
            for kk in range(k):
                total = _round_fraction_to_fp16(total + Fraction(float(a[i, kk])) * Fraction(float(b[kk, j])))
            assert Fraction(float(out.data[i, j])) == total, (i, j)


def test_low_precision_accumulation_breaks_a_tie_that_float64_drops():
    """s + p with s = 2^-120 and p = 259 / 256 (a bf16 midpoint, = 7 x 37 / 256): float64 loses s,
    but the exact sum lies above (or below) the midpoint and must round that way, not to even."""
    p = np.full(3, 7 * 37 * 2.0 ** -8)
    s = np.array([2.0 ** -120, -2.0 ** -120, 0.0])
    out = lowp.add_rounded(s, p, floats.BF16)
    np.testing.assert_array_equal(out, [1 + 2 ** -6, 1 + 2 ** -7, 1 + 2 ** -6])   # up, down, tie to even


def test_fp16_accumulation_error_grows_with_k_much_faster_than_fp32():
    rng = np.random.default_rng(4)
    errors = {}
    for k in (16, 256, 2048):
        a = rng.random((4, k)).astype(np.float16)
        b = rng.random((k, 4)).astype(np.float16)
        exact = a.astype(np.float64) @ b.astype(np.float64)
        for acc in ("fp16", "fp32"):
            out = lowp.lowp_matmul(a.astype(np.float32), b.astype(np.float32), floats.FP16, accumulate=acc,
                                   out_fmt=floats.FP32)
            errors[acc, k] = float(np.mean(np.abs(out.data - exact) / exact))
    assert errors["fp16", 2048] > 10 * errors["fp16", 16]
    assert errors["fp16", 2048] > 100 * errors["fp32", 2048]
    assert errors["fp32", 2048] < 1e-5


# ---- backward ----
def test_matmul_backward_is_the_same_gemm_in_the_gradient_format():
    rng = np.random.default_rng(5)
    a = tq.tensor(rng.standard_normal((3, 5)).astype(np.float32), requires_grad=True)
    b = tq.tensor(rng.standard_normal((5, 2)).astype(np.float32), requires_grad=True)
    upstream = rng.standard_normal((3, 2)).astype(np.float32)
    lowp.lowp_matmul(a, b, floats.BF16).backward(upstream)
    a_in, b_in = floats.round_to(a.data, floats.BF16), floats.round_to(b.data, floats.BF16)
    g = floats.round_to(upstream, floats.BF16)
    for grad, expected in ((a.grad, g @ b_in.T), (b.grad, a_in.T @ g)):
        assert grad.dtype == np.float32 and lowp.on_grid(grad, floats.BF16)
        np.testing.assert_allclose(grad, expected, rtol=2 ** -7)


def test_fp32_format_matmul_and_conv_match_the_plain_ops_forward_and_backward():
    rng = np.random.default_rng(6)
    x = tq.tensor(rng.standard_normal((2, 4, 7, 7)).astype(np.float32), requires_grad=True)
    w = tq.tensor(rng.standard_normal((6, 2, 3, 3)).astype(np.float32), requires_grad=True)
    bias = tq.tensor(rng.standard_normal(6).astype(np.float32), requires_grad=True)
    options = dict(stride=2, padding=1, dilation=1, groups=2)
    ours = lowp.lowp_conv2d(x, w, bias, floats.FP32, **options)
    reference = F.conv2d(x, w, bias, **options)
    np.testing.assert_allclose(ours.data, reference.data, rtol=1e-5, atol=1e-5)
    upstream = rng.standard_normal(ours.shape).astype(np.float32)
    ours.backward(upstream)
    ours_grads = [t.grad for t in (x, w, bias)]
    for t in (x, w, bias):
        t.grad = None
    reference.backward(upstream)
    for mine, theirs in zip(ours_grads, (x.grad, w.grad, bias.grad)):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-4)


def test_conv2d_with_fp16_accumulation_matches_a_naive_loop():
    """Naive reference: for each output, s = fp16(s + w x) over (c, i, j) in order, then + bias.

    The float64 sum of an fp16 number and an fp16 product is exact unless one term is below
    2^-30 of the other, and then both roundings agree, so float64 + NumPy's float16 cast is exact."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float16)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float16)
    bias = rng.standard_normal(3).astype(np.float16)
    out = lowp.lowp_conv2d(tq.tensor(x), tq.tensor(w), tq.tensor(bias), floats.FP16, padding=1,
                           accumulate="fp16").data
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    expected = np.zeros((1, 3, 5, 5), dtype=np.float16)
    for o in range(3):
        for r in range(5):
            for c in range(5):
                total = np.float16(0)
                for ch in range(2):
                    for i in range(3):
                        for j in range(3):
                            total = np.float16(float(total) + float(w[o, ch, i, j]) * xp[0, ch, r + i, c + j])
                expected[0, o, r, c] = np.float16(float(total) + float(bias[o]))
    np.testing.assert_array_equal(out, expected)


# ---- bad input ----
def test_bad_arguments_give_clear_errors():
    a = tq.tensor(np.ones((2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="accumulate"):
        lowp.lowp_matmul(a, a.T, floats.FP16, accumulate="int8")
    with pytest.raises(ValueError, match=r"\(\.\.\., M, K\) @ \(\.\.\., K, N\)"):
        lowp.lowp_matmul(a, a, floats.FP16)
    with pytest.raises(TypeError, match="FloatFormat"):
        lowp.lowp_matmul(a, a.T, "fp16")
    with pytest.raises(ValueError, match="channels"):
        lowp.lowp_conv2d(tq.tensor(np.ones((1, 3, 4, 4), np.float32)), tq.tensor(np.ones((2, 2, 3, 3), np.float32)))
