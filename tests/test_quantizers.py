"""Quantizer state in checkpoints (review, issue 9): scale, zero point, observer ranges, LSQ step and zero
point, PACT alpha are buffers/parameters, saved by state_dict and strictly checked by load_state_dict."""
import numpy as np
import pytest

import tinyq as tq
from tinyq import models, nn, optim
from tinyq import functional as F
from tinyq.quant import QConfig, QuantConfig, QuantSpec, prepare, prepare_qat, quantize_ptq
from tinyq.quant.config import default_input_spec, default_weight_spec
from tinyq.quant.quantizers import FakeQuantize, LSQQuantizer
from tinyq.train import evaluate


def _data(seed, n=64):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, 16)) * 2 + 0.5).astype(np.float32), rng.integers(0, 4, n)


def _model():
    return models.mlp((16, 12, 4), rng=np.random.default_rng(0))


def _run(model, x):
    with tq.no_grad():
        return model(tq.tensor(x)).data


@pytest.mark.parametrize("observer", ["minmax", "moving_average", "percentile", "mse", "entropy"])
def test_ptq_model_saved_and_loaded_into_a_fresh_prepared_model_gives_bit_identical_outputs(observer, tmp_path):
    config = QuantConfig(QConfig(weight=default_weight_spec(4, observer="minmax"),
                                 input=default_input_spec(4, observer=observer)))
    calibration, _ = _data(1)
    quantized = quantize_ptq(_model(), [calibration[:32], calibration[32:]], config)
    tq.save(quantized.state_dict(), tmp_path / "q.npz")
    fresh = prepare(_model(), config)                      # never calibrated
    other = quantize_ptq(_model(), [_data(2)[0] * 5], config)   # calibrated on other data
    test, _ = _data(3)
    assert not np.array_equal(_run(other, test), _run(quantized, test))
    for target in (fresh, other):
        target.load_state_dict(tq.load(tmp_path / "q.npz"))
        np.testing.assert_array_equal(_run(target, test), _run(quantized, test))


@pytest.mark.parametrize("fake_quant", ["ste", "lsq", "pact"])
def test_qat_checkpoint_restores_every_quantizer(fake_quant, tmp_path):
    weight_quant = "ste" if fake_quant == "pact" else fake_quant
    config = QuantConfig(QConfig(weight=default_weight_spec(4, fake_quant=weight_quant),
                                 input=default_input_spec(4, fake_quant=fake_quant)))
    model = prepare_qat(_model(), config)
    opt = optim.SGD(model.parameters(), lr=0.05)
    x, y = _data(4)
    for _ in range(3):
        loss = F.cross_entropy(model(tq.tensor(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    tq.save(model.state_dict(), tmp_path / "qat.npz")
    fresh = prepare_qat(_model(), config)
    fresh.load_state_dict(tq.load(tmp_path / "qat.npz"))
    test, _ = _data(5)
    model.eval(), fresh.eval()
    np.testing.assert_array_equal(_run(fresh, test), _run(model, test))


def test_loading_a_state_from_another_configuration_is_a_clear_error():
    calibration, _ = _data(1)
    int8 = quantize_ptq(_model(), [calibration], QuantConfig.uniform(8))
    int4 = prepare(_model(), QuantConfig.uniform(4))
    with pytest.raises(ValueError, match=r"another configuration.*saved minmax uint8.*this model has minmax uint4"):
        int4.load_state_dict(int8.state_dict())
    entropy = prepare(_model(), QuantConfig(QConfig(input=default_input_spec(8, observer="moving_average"))))
    with pytest.raises(ValueError, match="saved minmax uint8 per tensor, this model has moving_average"):
        entropy.load_state_dict(int8.state_dict())


def test_a_per_channel_weight_quantizer_has_its_buffers_before_seeing_data():
    fq = FakeQuantize("minmax", bits=4, symmetric=True, axis=0, num_channels=3)
    state = fq.state_dict()
    assert state["scale"].shape == (3,) and state["min_val"].shape == (3,)
    assert np.all(np.isnan(state["scale"])) and np.all(state["min_val"] == np.inf)


# ---- bug 4: LSQ with an asymmetric spec learns a zero point (LSQ+) instead of clamping negatives ----
def test_lsq_with_an_asymmetric_spec_keeps_negative_inputs():
    config = QuantConfig.uniform(8, fake_quant="lsq")
    layer = prepare_qat(nn.Sequential(nn.Linear(4, 2, rng=np.random.default_rng(0))), config)[0]
    x = np.array([[-1.0, -0.5, 0.5, 1.0]], dtype=np.float32)
    quantized = layer.input_quant(tq.tensor(x)).data
    np.testing.assert_allclose(quantized, x, atol=2.0 / 255)      # one step of an 8-bit grid over [-1, 1]
    qp = layer.input_quant.qparams
    assert not qp.signed and 0 < qp.zero_point < 255                # an unsigned grid with its zero inside


def test_lsq_plus_gradients_match_finite_differences_away_from_kinks():
    from tinyq.quant.fake_quant import LSQPlusFakeQuantize
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, 40)
    step, zero = np.array(0.37), np.array(2.3)
    ratio = x / step + np.rint(zero)
    x = x[np.abs(ratio - np.rint(ratio)) > 0.05]                  # away from rounding jumps
    options = dict(qmin=0, qmax=7, grad_scale=1.0)
    out = LSQPlusFakeQuantize.forward(LSQPlusFakeQuantize(), x, step, zero, **options)
    codes = np.clip(np.rint(x / step) + 2, 0, 7)
    np.testing.assert_allclose(out, (codes - 2) * step, rtol=1e-12)   # the affine fake-quantize, z = round(2.3)
    ctx = LSQPlusFakeQuantize()
    ctx.inputs = (tq.tensor(x, requires_grad=True), tq.tensor(step, requires_grad=True),
                  tq.tensor(zero, requires_grad=True))
    LSQPlusFakeQuantize.forward(ctx, x, step, zero, **options)
    upstream = rng.standard_normal(x.shape)
    _, _, grad_zero = LSQPlusFakeQuantize.backward(ctx, upstream)
    clamped = (x / step + 2 <= 0) | (x / step + 2 >= 7)
    assert grad_zero == pytest.approx(np.sum(upstream * np.where(clamped, -step, 0.0)))
    # the step's gradient is LSQ's on the shifted range [qmin - 2, qmax - 2]
    _, grad_step, _ = LSQPlusFakeQuantize.backward(ctx, upstream)
    r = x / step
    local = np.where(r + 2 <= 0, 0 - 2, np.where(r + 2 >= 7, 7 - 2, np.rint(r) - r))
    assert grad_step == pytest.approx(np.sum(upstream * local))


def test_lsq_plus_matches_torch_learnable_fake_quantize():
    torch = pytest.importorskip("torch")
    from tinyq.quant.fake_quant import lsq_fake_quantize
    rng = np.random.default_rng(1)
    x = rng.uniform(-2, 4, 50).astype(np.float32)
    step, zero = np.float32(0.05), np.float32(40.3)
    ratio = x / step
    x = x[(np.abs(ratio - np.rint(ratio)) > 0.05) & (np.abs(ratio + 40) > 0.6) & (np.abs(ratio + 40 - 255) > 0.6)]
    xt = torch.tensor(x, requires_grad=True)
    st = torch.tensor([step], requires_grad=True)
    zt = torch.tensor([zero], requires_grad=True)
    out_t = torch._fake_quantize_learnable_per_tensor_affine(xt, st, zt, 0, 255, 0.5)
    upstream = rng.standard_normal(x.shape).astype(np.float32)
    out_t.backward(torch.tensor(upstream))
    xs = tq.tensor(x, requires_grad=True)
    ss = tq.tensor(np.array(step), requires_grad=True)
    zs = tq.tensor(np.array(zero), requires_grad=True)
    out = lsq_fake_quantize(xs, ss, 8, False, grad_scale=0.5, zero_point=zs)
    out.backward(upstream)
    np.testing.assert_allclose(out.data, out_t.detach().numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(xs.grad, xt.grad.numpy())
    assert float(ss.grad) == pytest.approx(float(st.grad), rel=1e-4)
    assert float(zs.grad) == pytest.approx(float(zt.grad), rel=1e-5)


# ---- bug 5: evaluating changes no state ----
def test_evaluate_during_qat_leaves_ranges_modes_and_statistics_alone():
    model = prepare_qat(models.mlp((16, 12, 4), rng=np.random.default_rng(0), batch_norm=True), fold_bn=False)
    model.train()
    x, y = _data(6)
    model(tq.tensor(x))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.eval()                                              # a frozen BatchNorm
    before = {k: v.copy() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    evaluate(model, [(x * 40, y)])                                # far outside the observed range
    after = model.state_dict()
    for key, value in before.items():
        np.testing.assert_array_equal(after[key], value, err_msg=key)
    assert [m.training for m in model.modules()] == modes


def test_fake_quantize_keeps_observing_outside_evaluate():
    fq = FakeQuantize("minmax", bits=8)
    fq(tq.tensor(np.array([0.0, 1.0], dtype=np.float32)))
    with fq.evaluating():
        fq(tq.tensor(np.array([0.0, 50.0], dtype=np.float32)))
    assert float(fq.max_val) == 1.0
    fq(tq.tensor(np.array([0.0, 50.0], dtype=np.float32)))
    assert float(fq.max_val) == 50.0


def test_lsq_quantizer_checkpoint_has_its_zero_point():
    lsq = LSQQuantizer(bits=4, signed=False, activation=True, learn_zero_point=True)
    lsq(tq.tensor(np.linspace(-1, 3, 20, dtype=np.float32)))
    assert set(lsq.state_dict()) == {"step_size", "zero_point", "initialized", "qscheme"}
    QuantSpec(bits=4)  # (QuantSpec stays importable from tinyq.quant)


def test_qat_checkpoints_written_by_fit_are_complete(tmp_path):
    from tinyq.data import ArrayDataset, DataLoader
    from tinyq.train import fit
    config = QuantConfig.uniform(4, fake_quant="lsq")
    model = prepare_qat(_model(), config)
    x, y = _data(7, n=48)
    loader = DataLoader(ArrayDataset(x, y), batch_size=16, shuffle=True, rng=np.random.default_rng(0))
    fit(model, loader, optim.SGD(model.parameters(), lr=0.05), 1, val_loader=loader, checkpoint_dir=tmp_path,
        progress=False)
    fresh = prepare_qat(_model(), config)
    fresh.load_state_dict(tq.load(tmp_path / "last.npz"))
    assert any(key.endswith("input_quant.zero_point") for key in tq.load(tmp_path / "last.npz"))
    model.eval(), fresh.eval()
    np.testing.assert_array_equal(_run(fresh, _data(8)[0]), _run(model, _data(8)[0]))


def _lsq_reference(x, step, qmin, qmax):
    """round(clamp(x/s, qmin, qmax))·s in float64, half to even (the LSQ forward, by hand)."""
    return np.rint(np.clip(np.asarray(x, np.float64) / step, qmin, qmax)) * step


@pytest.mark.parametrize("axis", [None, 0])
def test_lsq_step_pushed_to_zero_or_below_keeps_a_valid_grid(axis):
    """An optimizer step can take s across 0: forward and qparams use ŝ = max(|s|, floor) > 0."""
    rng = np.random.default_rng(21)
    w = rng.normal(0, 0.1, (3, 8)).astype(np.float32)
    quantizer = LSQQuantizer(8, signed=True, axis=axis, num_channels=None if axis is None else 3).init_from(w)
    learned = np.full(quantizer.step_size.shape, 0.004, np.float32)
    quantizer.step_size.data = -learned                             # as if the last update overshot 0
    qparams = quantizer.qparams                                     # raised "every scale finite and > 0" before
    np.testing.assert_allclose(qparams.scale, learned)
    steps = learned if axis is None else learned.reshape(3, 1)
    np.testing.assert_allclose(quantizer(tq.tensor(w)).data, _lsq_reference(w, steps, -128, 127), rtol=1e-6)
    np.testing.assert_array_equal(quantizer.step_size.data, -learned)   # the parameter itself is left alone
    from tinyq.quant.fake_quant import STEP_FLOOR
    quantizer.step_size.data = np.zeros(quantizer.step_size.shape, np.float32)
    assert np.all(quantizer.qparams.scale == np.float32(STEP_FLOOR))
    out = quantizer(tq.tensor(w)).data
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, _lsq_reference(w, np.float32(STEP_FLOOR), -128, 127), rtol=1e-6)


def test_positive_step_gradient_matches_finite_differences():
    from tinyq.gradcheck import gradcheck
    from tinyq.quant.fake_quant import STEP_FLOOR, positive_step
    gradcheck(positive_step, [np.array([-0.8, -0.03, 0.02, 1.5])], name="positive_step")
    s = tq.tensor(np.array([0.0, STEP_FLOOR / 2, -STEP_FLOOR / 2]), requires_grad=True)
    out = positive_step(s)
    out.sum().backward()
    np.testing.assert_array_equal(out.data, STEP_FLOOR)            # the constant floor: no gradient there
    np.testing.assert_array_equal(s.grad, 0.0)


def test_lsq_gradient_at_a_negative_step_is_the_mirror_of_the_positive_one():
    """dL/ds at s = −a equals −dL/ds at s = a (chain rule through |s|); both finite."""
    rng = np.random.default_rng(22)
    x = rng.normal(0, 1, (4, 16)).astype(np.float32)
    upstream = rng.normal(size=x.shape).astype(np.float32)
    grads = []
    for sign in (1.0, -1.0):
        quantizer = LSQQuantizer(4, signed=True).init_from(x)
        quantizer.step_size.data = np.array(sign * 0.3, np.float32)
        (quantizer(tq.tensor(x)) * tq.tensor(upstream)).sum().backward()
        grads.append(float(quantizer.step_size.grad))
    assert grads[0] != 0 and grads[1] == pytest.approx(-grads[0], rel=1e-6)


def test_lsq_qat_with_a_large_adam_step_keeps_valid_qparams():
    """A small version of the reported failure: Adam at a high lr drives weight steps below zero."""
    from tinyq.quant.qat import convert, quantized_weights
    rng = np.random.default_rng(23)
    model = prepare_qat(models.mlp((8, 8, 3), rng=rng), QuantConfig.uniform(8, fake_quant="lsq"))
    x, y = rng.normal(size=(32, 8)).astype(np.float32), rng.integers(0, 3, 32)
    opt = optim.Adam(list(model.parameters()), lr=0.05)
    crossed = False
    for _ in range(40):
        loss = F.cross_entropy(model(tq.tensor(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        crossed |= any(np.any(m.step_size.data <= 0) for m in model.modules() if isinstance(m, LSQQuantizer))
    assert crossed                                                  # the situation of the bug report
    for module in model.modules():
        if isinstance(module, LSQQuantizer):
            assert np.all(np.asarray(module.qparams.scale) > 0)
    assert all(np.all(np.isfinite(q.dequantize())) for q in quantized_weights(convert(model)).values())
