"""Tests for tinyq.quant.fake_quant: STE against torch's fake_quantize, LSQ and PACT gradients against
finite differences (where the function is differentiable), the papers' formulas (where it is not) and
torch's learnable fake-quant; the quantizer modules; bad input."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyq as tq
from tinyq.formats.affine import QParams, calculate_qparams, fake_quantize, integer_range
from tinyq.quant.observers import PerChannelObservers, make_observer as make_quant_observer
from tinyq.quant.quantizers import FakeQuantize, LSQQuantizer, PACTQuantizer
from tinyq.quant.fake_quant import (fake_quantize_ste, lsq_fake_quantize, lsq_grad_scale, lsq_init_step_size,
                                    pact_fake_quantize)
from tinyq.quant.observers import MSEObserver


def backward_of(fn, *arrays, upstream=None):
    """(output, [grad of each input]) of sum(fn(*tensors) * upstream)."""
    tensors = [tq.tensor(a, requires_grad=True) for a in arrays]
    out = fn(*tensors)
    out.backward(np.ones_like(out.data) if upstream is None else upstream)
    return out.data, [t.grad for t in tensors]


def away_from_ties(x, scale):
    """x/s and x·(1/s) round to the same integer: torch multiplies by 1/s, tinyq divides (see FakeQuantizeSTE)."""
    scale = np.asarray(scale, dtype=np.float32)
    return np.rint(x / scale) == np.rint(x * (np.float32(1) / scale))


# ------------------------------------------------------------------ STE (exercise 7.1)

@pytest.mark.exercise("7.1")
def test_ste_gradient_passes_where_the_rounded_code_is_inside_the_range():
    # int4 signed [-8, 7], scale 0.1: codes round(x/0.1) = -9, -8, 0, 7, 8 (7.5 ties to even), 8, 50
    qp = QParams(0.1, 0, bits=4, signed=True)
    x = np.array([-0.86, -0.84, 0.0, 0.74, 0.75, 0.76, 5.0], np.float32)
    upstream = np.arange(1, 8, dtype=np.float32)
    out, (grad,) = backward_of(lambda t: fake_quantize_ste(t, qp), x, upstream=upstream)
    np.testing.assert_array_equal(grad, upstream * np.array([0, 1, 1, 1, 0, 0, 0], np.float32))
    np.testing.assert_array_equal(out, fake_quantize(x, qp))


@pytest.mark.exercise("7.1")
def test_ste_gradient_per_channel_uses_each_channels_range():
    # channel 0: unsigned 2-bit, scale 1, zero_point 1 → codes x+1 in [0, 3], i.e. x in [-1.5, 2.5)
    # channel 1: scale 0.5, zero_point 0 → codes 2x in [0, 3], i.e. x in [-0.25, 1.75)
    qp = QParams(np.array([1.0, 0.5], np.float32), np.array([1, 0]), bits=2, signed=False, axis=0)
    x = np.array([[-1.4, -1.6, 2.4, 2.6], [-0.2, -0.3, 1.7, 1.8]], np.float32)
    _, (grad,) = backward_of(lambda t: fake_quantize_ste(t, qp), x)
    np.testing.assert_array_equal(grad, [[1, 0, 1, 0], [1, 0, 1, 0]])


@given(st.integers(2, 8), st.booleans(), st.floats(0.01, 2.0), st.integers(0, 2**31 - 1))
@settings(max_examples=60, deadline=None)
def test_ste_forward_is_affine_fake_quantize_and_gradient_a_mask(bits, signed, scale, seed):
    rng = np.random.default_rng(seed)
    qmin, qmax = integer_range(bits, signed)
    qp = QParams(scale, int(rng.integers(qmin, qmax + 1)), bits, signed)
    x = (rng.standard_normal((5, 7)) * scale * 2 ** bits).astype(np.float32)
    out, (grad,) = backward_of(lambda t: fake_quantize_ste(t, qp), x)
    np.testing.assert_array_equal(out, fake_quantize(x, qp))
    assert set(np.unique(grad)) <= {0.0, 1.0}
    lo, hi = out.min(), out.max()
    assert np.all(grad[(x > lo) & (x < hi)] == 1)          # strictly inside the grid: gradient 1


@pytest.mark.parametrize("bits", [8, 4, 2])
@pytest.mark.parametrize("signed", [True, False])
def test_ste_matches_torch_per_tensor(bits, signed, rng):
    torch = pytest.importorskip("torch")
    qmin, qmax = integer_range(bits, signed)
    for _ in range(5):
        scale = float(np.float32(rng.uniform(0.05, 0.5)))
        zero_point = int(rng.integers(qmin, qmax + 1))
        x = (rng.standard_normal((6, 9)) * scale * (qmax - qmin) / 2).astype(np.float32)
        x = np.where(away_from_ties(x, scale), x, 0.0).astype(np.float32)
        upstream = rng.standard_normal(x.shape).astype(np.float32)
        out, (grad,) = backward_of(lambda t: fake_quantize_ste(t, QParams(scale, zero_point, bits, signed)), x,
                                   upstream=upstream)
        tx = torch.tensor(x, requires_grad=True)
        ty = torch.fake_quantize_per_tensor_affine(tx, scale, zero_point, qmin, qmax)
        ty.backward(torch.tensor(upstream))
        np.testing.assert_array_equal(out, ty.detach().numpy())
        np.testing.assert_array_equal(grad, tx.grad.numpy())


@pytest.mark.parametrize("bits", [8, 4, 2])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_ste_matches_torch_per_channel(bits, axis, rng):
    torch = pytest.importorskip("torch")
    signed = axis != 1
    qmin, qmax = integer_range(bits, signed)
    x = (rng.standard_normal((4, 3, 5)) * 2).astype(np.float32)
    channels = x.shape[axis]
    scale = rng.uniform(0.05, 0.6, channels).astype(np.float32)
    zero_point = rng.integers(qmin, qmax + 1, channels)
    shape = [1, 1, 1]
    shape[axis] = channels
    x = np.where(away_from_ties(x, scale.reshape(shape)), x, 0.0).astype(np.float32)
    upstream = rng.standard_normal(x.shape).astype(np.float32)
    qp = QParams(scale, zero_point, bits, signed, axis=axis)
    out, (grad,) = backward_of(lambda t: fake_quantize_ste(t, qp), x, upstream=upstream)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.fake_quantize_per_channel_affine(tx, torch.tensor(scale), torch.tensor(zero_point, dtype=torch.int32),
                                                axis, qmin, qmax)
    ty.backward(torch.tensor(upstream))
    np.testing.assert_array_equal(out, ty.detach().numpy())
    np.testing.assert_array_equal(grad, tx.grad.numpy())


def test_ste_keeps_the_input_dtype_and_rejects_bad_input():
    qp = QParams(0.25, 0, 8, True)
    out = fake_quantize_ste(tq.tensor(np.array([0.3, -0.4])), qp)      # float64 data stays float64
    assert out.dtype == np.float64
    with pytest.raises(TypeError, match="QParams"):
        fake_quantize_ste(tq.tensor([1.0]), 0.25)
    per_channel = QParams(np.ones(3, np.float32), np.zeros(3, np.int64), 8, True, axis=3)
    with pytest.raises(ValueError, match="axis 3 is out of range"):
        fake_quantize_ste(tq.tensor(np.zeros((3, 2), np.float32)), per_channel)
    with pytest.raises(ValueError, match="3 channels"):
        fake_quantize_ste(tq.tensor(np.zeros((2, 3), np.float32)), QParams(np.ones(3), np.zeros(3, int), axis=0))


# ------------------------------------------------------------------ LSQ (exercise 7.2)

@pytest.mark.exercise("7.2")
def test_lsq_step_gradient_follows_the_paper():
    # 3-bit signed: qmin -4, qmax 3; s = 0.5. x/s = -6 (clamped low), 0.6, 1.4 (inside), 4 (clamped high)
    x = np.array([-3.0, 0.3, 0.7, 2.0], np.float32)
    g = 0.125
    out, (grad_x, grad_s) = backward_of(
        lambda t, s: lsq_fake_quantize(t, s, bits=3, signed=True, grad_scale=g), x, np.array(0.5, np.float32))
    np.testing.assert_allclose(out, [-2.0, 0.5, 0.5, 1.5])
    np.testing.assert_array_equal(grad_x, [0, 1, 1, 0])
    # ∂/∂s: qmin, round(v) − v, round(v) − v, qmax  = -4 + 0.4 - 0.4 + 3, times g
    np.testing.assert_allclose(grad_s, g * (-4 + (1 - 0.6) + (1 - 1.4) + 3), rtol=1e-5)
    assert grad_s.shape == () and grad_s.dtype == np.float32


@pytest.mark.exercise("7.2")
def test_lsq_per_channel_step_gradient_sums_each_channel():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 2)).astype(np.float32)
    steps = np.array([0.3, 0.5, 0.7], np.float32)
    upstream = rng.standard_normal(x.shape).astype(np.float32)
    _, (grad_x, grad_s) = backward_of(
        lambda t, s: lsq_fake_quantize(t, s, bits=3, signed=True, grad_scale=0.5, axis=0), x, steps,
        upstream=upstream)
    for c in range(3):
        _, (gx, gs) = backward_of(lambda t, s: lsq_fake_quantize(t, s, bits=3, signed=True, grad_scale=0.5),
                                  x[c], steps[c], upstream=upstream[c])
        np.testing.assert_allclose(grad_s[c], gs, rtol=1e-5)
        np.testing.assert_array_equal(grad_x[c], gx)


def central_difference(fn, value, eps):
    return (fn(value + eps) - fn(value - eps)) / (2 * eps)


def test_lsq_gradients_match_finite_differences_where_clamped(rng):
    # outside the range the output is qmin·s or qmax·s: ∂/∂s = qmin or qmax exactly, ∂/∂x = 0
    bits, step = 4, 0.2
    qmin, qmax = integer_range(bits, True)
    x = np.concatenate([rng.uniform(-5, -2, 6), rng.uniform(2, 5, 6)])          # |x/s| ≥ 10 > 8
    _, (grad_x, grad_s) = backward_of(
        lambda t, s: lsq_fake_quantize(t, s, bits, True, grad_scale=1.0), x, np.array(step))
    for i in range(x.size):
        def f_of_s(s, i=i):
            return lsq_fake_quantize(tq.tensor(x[i:i + 1]), np.array(s), bits, True).data.sum()
        def f_of_x(v):
            return lsq_fake_quantize(tq.tensor(np.array([v])), np.array(step), bits, True).data.sum()
        assert central_difference(f_of_x, x[i], 1e-6) == grad_x[i] == 0
    numeric_s = central_difference(
        lambda s: lsq_fake_quantize(tq.tensor(x), np.array(s), bits, True).data.sum(), step, 1e-7)
    np.testing.assert_allclose(grad_s, numeric_s, rtol=1e-6)
    np.testing.assert_allclose(grad_s, 6 * qmin + 6 * qmax)


def test_lsq_inside_the_range_differs_from_finite_differences_by_the_ste_term(rng):
    # inside, the true derivative wrt s is round(x/s) (round is locally constant); LSQ adds −x/s,
    # the term the straight-through estimator gives the rounding (the paper's eq. 3)
    step, x = 0.25, rng.uniform(-1.5, 1.5, 40)
    ratio = x / step
    x = x[np.abs(ratio - np.rint(ratio)) > 0.05]                                # away from rounding jumps
    _, (_, grad_s) = backward_of(lambda t, s: lsq_fake_quantize(t, s, 4, True, grad_scale=1.0), x, np.array(step))
    numeric = central_difference(lambda s: lsq_fake_quantize(tq.tensor(x), np.array(s), 4, True).data.sum(),
                                 step, 1e-7)
    np.testing.assert_allclose(numeric, np.rint(x / step).sum(), rtol=1e-6)
    np.testing.assert_allclose(grad_s, numeric - (x / step).sum(), rtol=1e-6)


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_lsq_matches_torch_learnable_fake_quantize(bits, rng):
    torch = pytest.importorskip("torch")
    qmin, qmax = integer_range(bits, True)
    step = np.float32(0.3)
    x = (rng.standard_normal(200) * step * qmax).astype(np.float32)
    ratio = x / step
    # torch's mask is on the rounded code, LSQ's on x/s: they differ within half a step of qmin/qmax
    x = x[(np.abs(ratio - qmin) > 0.5) & (np.abs(ratio - qmax) > 0.5) & away_from_ties(x, step)]
    grad_scale = 1.0 / np.sqrt(x.size * qmax)
    out, (grad_x, grad_s) = backward_of(lambda t, s: lsq_fake_quantize(t, s, bits, True), x, np.array(step))
    tx, ts = torch.tensor(x, requires_grad=True), torch.tensor([step], requires_grad=True)
    ty = torch._fake_quantize_learnable_per_tensor_affine(tx, ts, torch.zeros(1), qmin, qmax, float(grad_scale))
    ty.sum().backward()
    np.testing.assert_array_equal(out, ty.detach().numpy())
    np.testing.assert_array_equal(grad_x, tx.grad.numpy())
    np.testing.assert_allclose(grad_s, ts.grad.numpy()[0], rtol=1e-4, atol=1e-6)


def test_lsq_forward_equals_affine_fake_quantize_with_the_step_as_scale(rng):
    x = rng.standard_normal((8, 8)).astype(np.float32)
    for bits, signed in [(2, True), (4, False), (8, True)]:
        out = lsq_fake_quantize(tq.tensor(x), np.array(0.1, np.float32), bits, signed).data
        np.testing.assert_array_equal(out, fake_quantize(x, QParams(0.1, 0, bits, signed)))


def test_lsq_init_and_grad_scale_are_the_papers():
    x = np.array([[1.0, -3.0], [0.5, 0.5]], np.float32)
    np.testing.assert_allclose(lsq_init_step_size(x, qmax=7), 2 * 1.25 / np.sqrt(7), rtol=1e-6)
    np.testing.assert_allclose(lsq_init_step_size(x, qmax=4, axis=0), [2.0, 0.5], rtol=1e-6)
    assert lsq_grad_scale(1000, 127) == pytest.approx(1 / np.sqrt(127000))


def test_lsq_rejects_a_non_positive_step_and_a_wrong_step_shape():
    with pytest.raises(ValueError, match="step size must be finite and > 0"):
        lsq_fake_quantize(tq.tensor([1.0]), np.array(-0.1, np.float32), 4, True)
    with pytest.raises(ValueError, match="scalar step size"):
        lsq_fake_quantize(tq.tensor([1.0, 2.0]), np.ones(2, np.float32), 4, True)
    with pytest.raises(ValueError, match="per-channel LSQ"):
        lsq_fake_quantize(tq.tensor(np.ones((2, 3))), np.ones(2, np.float32), 4, True, axis=1)


# ------------------------------------------------------------------ PACT (exercise 7.3)

@pytest.mark.exercise("7.3")
def test_pact_alpha_gradient_counts_the_clipped_values():
    # α = 2, 2 bits: levels {0, 2/3, 4/3, 2}
    x = np.array([-1.0, 0.5, 1.9, 2.0, 3.0], np.float32)
    upstream = np.array([1.0, 2.0, 3.0, 4.0, 5.0], np.float32)
    out, (grad_x, grad_alpha) = backward_of(lambda t, a: pact_fake_quantize(t, a, bits=2), x,
                                            np.array(2.0, np.float32), upstream=upstream)
    np.testing.assert_allclose(out, [0.0, 2 / 3, 2.0, 2.0, 2.0], rtol=1e-6)
    np.testing.assert_array_equal(grad_x, [0.0, 2.0, 3.0, 0.0, 0.0])
    assert grad_alpha == 4.0 + 5.0 and grad_alpha.shape == ()


@pytest.mark.exercise("7.3")
def test_pact_gradients_match_finite_differences_where_clipped(rng):
    alpha = 1.5
    x = np.concatenate([rng.uniform(-2, -0.1, 5), rng.uniform(1.6, 4, 5)])       # clipped at 0 or at α
    _, (grad_x, grad_alpha) = backward_of(lambda t, a: pact_fake_quantize(t, a, 3), x, np.array(alpha))
    numeric = central_difference(lambda a: pact_fake_quantize(tq.tensor(x), np.array(a), 3).data.sum(),
                                 alpha, 1e-6)
    np.testing.assert_allclose(grad_alpha, numeric, rtol=1e-6)
    assert grad_alpha == pytest.approx(5.0)
    np.testing.assert_array_equal(grad_x, 0.0)


def test_pact_forward_is_unsigned_affine_fake_quantize_on_zero_alpha(rng):
    x = (rng.standard_normal(100) * 2).astype(np.float32)
    for bits in (2, 4, 8):
        out = pact_fake_quantize(tq.tensor(x), np.array(1.7, np.float32), bits).data
        qp = QParams(float(np.float32(1.7) / np.float32(2 ** bits - 1)), 0, bits, signed=False)
        np.testing.assert_array_equal(out, fake_quantize(x, qp))


def test_pact_rejects_bad_alpha_and_bits():
    with pytest.raises(ValueError, match="alpha > 0"):
        pact_fake_quantize(tq.tensor([1.0]), np.array(0.0, np.float32), 4)
    with pytest.raises(ValueError, match="bits"):
        pact_fake_quantize(tq.tensor([1.0]), np.array(1.0, np.float32), 1)
    with pytest.raises(ValueError, match="alpha > 0"):
        PACTQuantizer(4, alpha=-1.0)


# ------------------------------------------------------------------ modules

def test_fake_quantize_module_observes_then_quantizes(rng):
    fq = FakeQuantize("minmax", bits=4)
    x = tq.tensor(rng.uniform(-1, 3, (4, 5)).astype(np.float32))
    out = fq(x)
    expected_qp = calculate_qparams(x.data.min(), x.data.max(), bits=4)
    assert fq.qparams == expected_qp
    np.testing.assert_array_equal(out.data, fake_quantize(x.data, expected_qp))
    fq.enable_fake_quant(False)
    assert fq(x) is x                                          # calibration mode: identity
    fq.freeze()
    assert not fq.observer_enabled and fq.fake_quant_enabled
    fq(tq.tensor(np.full((2, 2), 100.0, np.float32)))            # a frozen range does not move
    assert fq.qparams == expected_qp


def test_fake_quantize_reset_each_call_follows_the_current_tensor():
    fq = FakeQuantize("minmax", bits=8, symmetric=True, axis=0, reset_each_call=True)
    fq(tq.tensor(np.array([[4.0, -1.0], [1.0, 2.0]], np.float32)))
    fq(tq.tensor(np.array([[1.0, -0.5], [0.5, 0.25]], np.float32)))
    np.testing.assert_allclose(fq.qparams.scale, np.array([1.0, 0.5]) / 127.5, rtol=1e-6)


def test_fake_quantize_from_qparams_is_frozen():
    qp = QParams(0.5, 3, 4, False)
    fq = FakeQuantize.from_qparams(qp)
    assert fq.qparams == qp and not fq.observer_enabled
    with pytest.raises(RuntimeError, match="frozen"):
        fq.enable_observer()


def test_per_channel_histogram_observer_equals_one_observer_per_slice(rng):
    x = rng.standard_normal((3, 50)).astype(np.float32)
    observer = make_quant_observer("mse", bits=4, symmetric=True, axis=0, bins=128)
    assert isinstance(observer, PerChannelObservers)
    observer.observe(x)
    qp = observer.calculate_qparams()
    for c in range(3):
        single = MSEObserver(bits=4, symmetric=True, bins=128)
        single.observe(x[c])
        expected = single.calculate_qparams()
        assert qp.scale[c] == np.float32(expected.scale) and qp.zero_point[c] == expected.zero_point
    assert qp.axis == 0 and qp.bits == 4


def test_observers_that_saw_no_data_and_unknown_names_are_clear_errors():
    with pytest.raises(RuntimeError, match="observed no data"):
        FakeQuantize("minmax").qparams
    with pytest.raises(RuntimeError, match="observed no data"):
        make_quant_observer("entropy", axis=0).calculate_qparams()
    with pytest.raises(ValueError, match="unknown observer 'maxmin'"):
        FakeQuantize("maxmin")
    with pytest.raises(ValueError, match="axis=2 is out of range"):
        FakeQuantize("minmax", axis=2)(tq.tensor(np.zeros((2, 2), np.float32)))
    with pytest.raises(ValueError, match="axis=-3 is out of range"):
        make_quant_observer("percentile", axis=-3).observe(np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="bits"):
        FakeQuantize("minmax", bits=17)
    with pytest.raises(RuntimeError, match="seen no data"):
        LSQQuantizer(4).qparams


def test_lsq_quantizer_initialises_once_and_survives_a_state_dict_round_trip(rng):
    x = rng.standard_normal((6, 10)).astype(np.float32)
    lsq = LSQQuantizer(bits=4, signed=True)
    out = lsq(tq.tensor(x))
    np.testing.assert_allclose(lsq.step_size.data, lsq_init_step_size(x, 7))
    np.testing.assert_array_equal(out.data, fake_quantize(x, lsq.qparams))
    state = lsq.state_dict()
    assert set(state) == {"step_size", "initialized", "qscheme"}
    other = LSQQuantizer(bits=4, signed=True)
    other.load_state_dict(state)
    other(tq.tensor(x * 10))                                    # does not re-initialise
    np.testing.assert_array_equal(other.step_size.data, lsq.step_size.data)


def test_lsq_activation_grad_scale_uses_features_per_sample(rng):
    x = np.abs(rng.standard_normal((8, 16))).astype(np.float32)
    lsq = LSQQuantizer(bits=4, signed=False, activation=True)
    t = tq.tensor(x, requires_grad=True)
    lsq(t).sum().backward()
    _, (_, raw) = backward_of(lambda a, s: lsq_fake_quantize(a, s, 4, False, grad_scale=1.0), x, lsq.step_size.data)
    np.testing.assert_allclose(lsq.step_size.grad, raw / np.sqrt(16 * 15), rtol=1e-5)


def test_lsq_quantizer_per_channel_needs_its_channel_count():
    with pytest.raises(ValueError, match="num_channels"):
        LSQQuantizer(4, axis=0)


def test_pact_quantizer_starts_at_the_max_and_regularization_pulls_alpha(rng):
    x = np.abs(rng.standard_normal((4, 6))).astype(np.float32)
    pact = PACTQuantizer(bits=4, alpha_l2=0.01)
    pact(tq.tensor(x))
    assert float(pact.alpha.data) == x.max()
    pact.regularization().backward()
    np.testing.assert_allclose(pact.alpha.grad, 2 * 0.01 * x.max(), rtol=1e-6)
    assert pact.qparams == QParams(float(np.float32(x.max()) / np.float32(15)), 0, 4, False)


@pytest.mark.exercise("7.4")
@pytest.mark.parametrize("elements, qmax", [(1000, 127), (9, 7), (1, 1), (4096, 255)])
def test_lsq_grad_scale_is_one_over_sqrt_n_qp(elements, qmax):
    assert lsq_grad_scale(elements, qmax) == pytest.approx(1 / np.sqrt(elements * qmax), rel=1e-12)


@pytest.mark.exercise("7.4")
def test_lsq_init_step_size_is_twice_the_mean_magnitude_over_sqrt_qp():
    x = np.array([[1.0, -3.0, 0.5, 0.0], [-0.25, 0.25, 0.5, 0.0]], dtype=np.float32)
    assert float(lsq_init_step_size(x, qmax=15)) == pytest.approx(2 * (5.5 / 8) / np.sqrt(15), rel=1e-6)
    per_row = lsq_init_step_size(x, qmax=3, axis=0)
    np.testing.assert_allclose(per_row, [2 * 1.125 / np.sqrt(3), 2 * 0.25 / np.sqrt(3)], rtol=1e-6)
    per_column = lsq_init_step_size(x, qmax=3, axis=1)
    assert per_column.dtype == np.float32 and per_column.shape == (4,)
    assert per_column[3] == np.finfo(np.float32).eps                  # an all-zero channel still gets a step > 0
