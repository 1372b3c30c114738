"""Tests for tinyq.quant.qat, tinyq.quant.config and tinyq.quant.qtensor: prepare_qat, gradients into the
learned quantizer parameters, convert, model size by hand, QTensor, config errors."""
import math

import numpy as np
import pytest

import tinyq as tq
from tinyq import functional as F, models, nn, optim
from tinyq.formats.affine import QParams, fake_quantize
from tinyq.quant.config import QConfig, QuantConfig, QuantSpec, default_input_spec, default_weight_spec
from tinyq.quant.quantizers import FakeQuantize, LSQQuantizer, PACTQuantizer
from tinyq.quant.ptq import fold_batchnorm
from tinyq.quant.qat import (QuantConv2d, convert, model_size_bytes, prepare_qat, quantized_weights,
                             regularization_loss, set_fake_quant, set_observers)
from tinyq.quant.qtensor import QTensor


def run(model, x):
    with tq.no_grad():
        return model(tq.tensor(x)).data


def one_step(model, x, y, lr=0.01):
    opt = optim.SGD(list(model.parameters()), lr=lr)
    loss = F.cross_entropy(model(tq.tensor(x)), y) + regularization_loss(model)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return opt


@pytest.fixture
def data(rng):
    return rng.uniform(0, 1, (16, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, 16)


# ------------------------------------------------------------------ prepare_qat

def test_prepare_qat_swaps_layers_folds_batchnorm_and_leaves_the_original(rng, data):
    model = models.convnet8(width=4, rng=rng)
    qmodel = prepare_qat(model, QuantConfig.uniform(4))
    assert qmodel.training
    assert sum(isinstance(m, QuantConv2d) for m in qmodel.modules()) == 5
    assert not any(isinstance(m, nn.BatchNorm2d) for m in qmodel.modules())
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 5           # untouched
    set_fake_quant(qmodel, False)
    qmodel.eval()
    np.testing.assert_allclose(run(qmodel, data[0]), run(fold_batchnorm(model).eval(), data[0]), atol=1e-5)


@pytest.mark.parametrize("kind", ["ste", "lsq", "pact"])
def test_gradients_reach_weights_and_learned_quantizer_parameters(kind, rng, data):
    model = models.mlp((64, 16, 10), rng=rng)
    qmodel = prepare_qat(model, QuantConfig.uniform(3, fake_quant=kind), pact_alpha_l2=1e-3)
    before = {name: p.data.copy() for name, p in qmodel.named_parameters()}
    one_step(qmodel, *data)
    names = {name for name, _ in qmodel.named_parameters()}
    expected_extra = {"ste": set(), "lsq": {"1.weight_quant.step_size", "1.input_quant.step_size",
                                            "3.weight_quant.step_size", "3.input_quant.step_size",
                                            "1.input_quant.zero_point", "3.input_quant.zero_point"},
                      "pact": {"1.input_quant.alpha", "3.input_quant.alpha"}}[kind]
    assert names == {"1.weight", "1.bias", "3.weight", "3.bias"} | expected_extra
    for name, p in qmodel.named_parameters():
        assert p.grad is not None, name
        assert not np.array_equal(p.data, before[name]), f"{name} did not move"


def test_ste_qat_forward_is_fake_quantized_linear_with_observed_ranges(rng):
    linear = nn.Linear(5, 3, rng=rng)
    qmodel = prepare_qat(nn.Sequential(linear), QuantConfig.uniform(4))
    x = rng.uniform(-1, 1, (6, 5)).astype(np.float32)
    out = qmodel(tq.tensor(x)).data
    layer = qmodel[0]
    expected = fake_quantize(x, layer.input_quant.qparams) @ fake_quantize(linear.weight.data,
                                                                          layer.weight_quant.qparams).T
    np.testing.assert_allclose(out, expected + linear.bias.data, rtol=1e-5, atol=1e-6)
    assert layer.input_quant.qparams.scale == pytest.approx((x.max() - x.min()) / 15)


@pytest.mark.parametrize("kind", ["ste", "lsq", "pact"])
def test_convert_freezes_qparams_and_reproduces_the_trained_model(kind, rng, data):
    qmodel = prepare_qat(models.mlp((64, 16, 10), rng=rng), QuantConfig.uniform(4, fake_quant=kind))
    one_step(qmodel, *data)
    one_step(qmodel, *data)
    run(qmodel, data[0])            # weight observers see the weights after the last step; inputs: same data
    set_observers(qmodel, False)
    qmodel.eval()
    converted = convert(qmodel)
    frozen = [m for m in converted.modules() if isinstance(m, FakeQuantize)]
    assert all(not m.observer_enabled and np.all(np.isfinite(m.scale)) for m in frozen)
    assert set(converted.state_dict()) == set(qmodel.state_dict())       # the same modules, frozen in place
    np.testing.assert_allclose(run(converted, data[0]), run(qmodel, data[0]), rtol=1e-5, atol=1e-5)
    weights = quantized_weights(converted)
    assert set(weights) == {"1.weight", "3.weight"}
    assert all(isinstance(w, QTensor) and w.bits == 4 for w in weights.values())
    np.testing.assert_array_equal(weights["1.weight"].dequantize(),
                                  fake_quantize(converted[1].weight.data, converted[1].weight_quant.qparams))


def test_mixed_bit_widths_per_layer_in_qat(rng, data):
    config = QuantConfig(QConfig(weight=default_weight_spec(8), input=default_input_spec(8)),
                         layers={"3": QConfig(weight=default_weight_spec(2, fake_quant="lsq"),
                                              input=default_input_spec(4, fake_quant="pact"))})
    qmodel = prepare_qat(models.mlp((64, 16, 10), rng=rng), config)
    one_step(qmodel, *data)
    assert isinstance(qmodel[3].weight_quant, LSQQuantizer) and qmodel[3].weight_quant.bits == 2
    assert isinstance(qmodel[3].input_quant, PACTQuantizer) and qmodel[3].input_quant.bits == 4
    assert isinstance(qmodel[1].weight_quant, FakeQuantize)
    converted = convert(qmodel)
    assert converted[3].weight_quant.qparams.bits == 2 and converted[1].weight_quant.qparams.bits == 8


def test_output_quantization_when_configured(rng):
    config = QuantConfig(QConfig(output=default_input_spec(3, symmetric=True)))
    qmodel = prepare_qat(nn.Sequential(nn.Linear(4, 5, rng=rng)), config)
    out = qmodel(tq.tensor(rng.normal(size=(7, 4)).astype(np.float32))).data
    assert np.unique(out).size <= 8                                     # 3-bit output grid


def test_pact_regularization_is_added_only_when_asked(rng):
    qmodel = prepare_qat(models.mlp((4, 3, 2), rng=rng), QuantConfig.uniform(4, fake_quant="pact"), pact_alpha_l2=0.5)
    qmodel(tq.tensor(np.abs(rng.normal(size=(3, 4))).astype(np.float32)))
    alphas = [float(m.alpha.data) for m in qmodel.modules() if isinstance(m, PACTQuantizer)]
    assert float(regularization_loss(qmodel).data) == pytest.approx(0.5 * sum(a * a for a in alphas), rel=1e-6)
    assert regularization_loss(prepare_qat(models.mlp((4, 3, 2), rng=rng))) == 0.0


# ------------------------------------------------------------------ model size

def test_model_size_counts_packed_weights_qparams_and_int32_biases_by_hand(rng):
    model = models.mlp((8, 6, 3), rng=rng)                              # Linear(8, 6), Linear(6, 3)
    config = QuantConfig.uniform(4)
    # layer 1: 48 weights × 4 bits + 6 channels × (32-bit scale + 32-bit zero point) + 6 × 32-bit bias
    #          + one input scale/zero point (64 bits); layer 3 likewise with 18 weights and 3 channels
    layer1 = 48 * 4 + 6 * 64 + 6 * 32 + 64
    layer3 = 18 * 4 + 3 * 64 + 3 * 32 + 64
    expected = math.ceil((layer1 + layer3) / 8)
    assert model_size_bytes(model, config) == expected
    assert model_size_bytes(prepare_qat(model, config)) == expected
    assert model_size_bytes(model) == 4 * (48 + 6 + 18 + 3)                # float32
    per_tensor = QuantConfig.uniform(2, per_channel=False)
    assert model_size_bytes(model, per_tensor) == math.ceil((48 * 2 + 64 + 6 * 32 + 64 + 18 * 2 + 64 + 3 * 32 + 64) / 8)


def test_model_size_counts_batchnorm_as_float32(rng):
    model = models.convnet8(width=4, rng=rng)
    params = sum(p.size for p in model.parameters())
    running = sum(m.running_mean.size + m.running_var.size for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert model_size_bytes(model) == 4 * (params + running)


# ------------------------------------------------------------------ QTensor

def test_qtensor_round_trip_and_packed_size(rng):
    x = rng.normal(size=(5, 7)).astype(np.float32)
    qp = QParams(0.1, 0, bits=4, signed=True)
    qt = QTensor.quantize(x, qp)
    assert qt.values.dtype == np.int8 and qt.shape == (5, 7) and qt.nbytes == math.ceil(35 * 4 / 8)
    np.testing.assert_array_equal(qt.dequantize(), fake_quantize(x, qp))
    assert "int4" in repr(qt)


def test_qtensor_rejects_bad_codes():
    qp = QParams(0.1, 0, bits=4, signed=True)
    with pytest.raises(ValueError, match=r"codes in \[-8, 7\]"):
        QTensor(np.array([8], np.int8), qp)
    with pytest.raises(TypeError, match="integer codes"):
        QTensor(np.array([0.5]), qp)
    with pytest.raises(TypeError, match="QParams"):
        QTensor(np.array([1], np.int8), 0.1)
    per_channel = QParams(np.ones(3, np.float32), np.zeros(3, np.int64), 8, True, axis=1)
    with pytest.raises(ValueError, match="3 channels along axis 1"):
        QTensor(np.zeros((3, 2), np.int8), per_channel)


# ------------------------------------------------------------------ config errors

@pytest.mark.parametrize("bits", [1, 17, 0, 2.5, "8", True])
def test_bits_outside_2_to_16_are_rejected(bits):
    with pytest.raises(ValueError, match="bits an integer in 2..16"):
        QuantSpec(bits=bits)


def test_unknown_names_and_impossible_combinations_are_clear_errors():
    with pytest.raises(ValueError, match="unknown observer 'kl'"):
        QuantSpec(observer="kl")
    with pytest.raises(ValueError, match="unknown fake_quant 'dorefa'"):
        QuantSpec(fake_quant="dorefa")
    with pytest.raises(ValueError, match="pact quantizes unsigned"):
        QuantSpec(fake_quant="pact", symmetric=True)
    with pytest.raises(ValueError, match="pact is for activations"):
        QConfig(weight=QuantSpec(fake_quant="pact"))
    with pytest.raises(TypeError, match="QuantSpec or None"):
        QConfig(weight=8)
    with pytest.raises(TypeError, match="layer names are strings"):
        QuantConfig(layers={1: None})
    with pytest.raises(TypeError, match="QConfig or None"):
        QuantConfig(layers={"1": QuantSpec()})
    with pytest.raises(ValueError, match="unknown observer"):
        QuantConfig.uniform(8, observer="nope")


def test_per_channel_axis_out_of_range_is_a_clear_error(rng):
    config = QuantConfig(QConfig(weight=default_weight_spec(4, axis=3)))
    with pytest.raises(ValueError, match="axis=3 is out of range"):
        prepare_qat(models.mlp((4, 3, 2), rng=rng), config)(tq.tensor(np.zeros((1, 4), np.float32)))


def test_quant_spec_describes_itself_and_replaces_fields():
    spec = default_weight_spec(4)
    assert spec.describe() == "int4 sym per-channel(axis=0) minmax/ste"
    assert (spec.qmin, spec.qmax) == (-7, 7)
    assert spec.replace(bits=2).bits == 2 and spec.bits == 4
