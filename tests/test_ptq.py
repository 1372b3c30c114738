"""Tests for tinyq.quant.ptq: BatchNorm folding (exercise 6.2) against the unfolded model, calibration and
convert against hand-built fake quantization, configs per layer, bad input."""
import numpy as np
import pytest

import tinyq as tq
from tinyq import models, nn
from tinyq.data import ArrayDataset, DataLoader
from tinyq.formats.affine import QParams, calculate_qparams, fake_quantize
from tinyq.quant.config import QConfig, QuantConfig, default_input_spec, default_weight_spec
from tinyq.quant.ptq import calibrate, convert, fold_batchnorm, fold_bn_params, prepare, quantize_ptq
from tinyq.quant.qat import QuantConv2d, QuantLinear, quantized_weights


def randomize_batchnorm(model, rng):
    """Non-trivial running statistics and affine parameters in every BatchNorm."""
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            c = module.num_features
            module.running_mean = rng.normal(0, 0.5, c).astype(np.float32)
            module.running_var = rng.uniform(0.2, 3.0, c).astype(np.float32)
            module.weight.data = rng.uniform(0.5, 2.0, c).astype(np.float32)
            module.bias.data = rng.normal(0, 0.5, c).astype(np.float32)
    return model


def outputs(model, x):
    model.eval()
    with tq.no_grad():
        return model(tq.tensor(x)).data


# ------------------------------------------------------------------ BN folding (exercise 6.2)

@pytest.mark.exercise("6.2")
def test_fold_bn_params_by_hand():
    # σ = sqrt(var + eps) = sqrt([3, 0] + 1) = [2, 1]; γ/σ = [4/2, 1/1] = [2, 1]
    weight = np.array([[2.0, -1.0], [1.0, 3.0]], np.float32)
    bias = np.array([1.0, 0.0], np.float32)
    folded_w, folded_b = fold_bn_params(weight, bias, running_mean=np.array([0.5, -1.0], np.float32),
                                        running_var=np.array([3.0, 0.0], np.float32),
                                        gamma=np.array([4.0, 1.0], np.float32), beta=np.array([1.0, 2.0], np.float32),
                                        eps=1.0)
    np.testing.assert_allclose(folded_w, [[4.0, -2.0], [1.0, 3.0]])
    np.testing.assert_allclose(folded_b, [(1.0 - 0.5) * 2 + 1.0, (0.0 + 1.0) * 1 + 2.0])
    assert folded_w.dtype == np.float32 and folded_b.dtype == np.float32


@pytest.mark.exercise("6.2")
def test_folded_convnet_equals_unfolded_in_eval_mode():
    rng = np.random.default_rng(0)
    model = randomize_batchnorm(models.convnet8(width=8, rng=rng), rng)
    x = rng.uniform(0, 1, (4, 1, 8, 8)).astype(np.float32)
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())       # the original is untouched
    np.testing.assert_allclose(outputs(folded, x), outputs(model, x), atol=1e-5, rtol=1e-5)


@pytest.mark.exercise("6.2")
def test_folded_mlp_with_batchnorm1d_equals_unfolded():
    rng = np.random.default_rng(1)
    model = randomize_batchnorm(models.mlp((64, 32, 16, 10), batch_norm=True, rng=rng), rng)
    x = rng.uniform(0, 1, (5, 64)).astype(np.float32)
    folded = fold_batchnorm(model)
    expected = ["Identity" if isinstance(m, nn.BatchNorm1d) else type(m).__name__ for m in model]
    assert [type(m).__name__ for m in folded] == expected                      # order kept
    np.testing.assert_allclose(outputs(folded, x), outputs(model, x), atol=1e-5, rtol=1e-5)


def test_fold_handles_a_conv_without_bias_and_batchnorm_without_affine():
    rng = np.random.default_rng(2)
    bn = nn.BatchNorm2d(3, affine=False)
    bn.running_mean = rng.normal(size=3).astype(np.float32)
    bn.running_var = rng.uniform(0.5, 2, 3).astype(np.float32)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, bias=False, rng=rng), bn, nn.ReLU())
    x = rng.normal(size=(2, 2, 5, 5)).astype(np.float32)
    folded = fold_batchnorm(model)
    assert folded[0].bias is not None and isinstance(folded[1], nn.Identity)
    np.testing.assert_allclose(outputs(folded, x), outputs(model, x), atol=1e-5)


def test_batchnorm_not_after_a_layer_is_left_alone():
    model = nn.Sequential(nn.ReLU(), nn.BatchNorm1d(4))
    folded = fold_batchnorm(model)
    assert isinstance(folded[1], nn.BatchNorm1d)


# ------------------------------------------------------------------ prepare / calibrate / convert

def test_ptq_of_one_linear_layer_is_fake_quantized_input_times_fake_quantized_weight():
    rng = np.random.default_rng(3)
    linear = nn.Linear(6, 4, rng=rng)
    model = nn.Sequential(linear)
    calibration = [rng.uniform(-1, 2, (8, 6)).astype(np.float32) for _ in range(3)]
    observed = prepare(model, QuantConfig.uniform(bits=4))
    assert isinstance(observed[0], QuantLinear)
    x = rng.uniform(-1, 2, (5, 6)).astype(np.float32)
    np.testing.assert_allclose(outputs(prepare(model), x), outputs(model, x), rtol=1e-6)   # observing only
    calibrate(observed, calibration)
    qsim = convert(observed)
    # by hand: input range = min/max over all calibration data; weight: symmetric per row, narrow range
    data = np.concatenate(calibration)
    input_qp = calculate_qparams(data.min(), data.max(), bits=4)
    w = linear.weight.data
    amax = np.abs(w).max(axis=1)
    weight_qp = calculate_qparams(-amax, amax, bits=4, symmetric=True, axis=0, narrow_range=True)
    expected = fake_quantize(x, input_qp) @ fake_quantize(w, weight_qp).T + linear.bias.data
    np.testing.assert_allclose(outputs(qsim, x), expected, rtol=1e-5, atol=1e-6)
    assert qsim[0].input_quant.qparams == input_qp and qsim[0].weight_quant.qparams == weight_qp


def test_quantize_ptq_on_a_data_loader_gives_qtensor_weights():
    rng = np.random.default_rng(4)
    model = models.convnet8(width=4, rng=rng)
    x = rng.uniform(0, 1, (16, 1, 8, 8)).astype(np.float32)
    loader = DataLoader(ArrayDataset(x, np.zeros(16, np.int64)), 8)
    qsim = quantize_ptq(model, loader, QuantConfig.uniform(8, observer="percentile"))
    convs = [m for m in qsim.modules() if isinstance(m, QuantConv2d)]
    assert len(convs) == 5 and not any(isinstance(m, nn.BatchNorm2d) for m in qsim.modules())
    weights = quantized_weights(qsim)
    assert set(weights) == {f"{name}.weight" for name, m in qsim.named_modules() if isinstance(m, QuantConv2d)}
    first = weights["0.weight"]
    assert first.values.dtype == np.int8 and first.qparams.axis == 0
    np.testing.assert_array_equal(first.dequantize(), fake_quantize(convs[0].weight.data, first.qparams))
    folded = fold_batchnorm(model)
    assert np.mean(np.argmax(outputs(qsim, x), 1) == np.argmax(outputs(folded, x), 1)) >= 0.9


def test_per_layer_overrides_mix_bit_widths_and_keep_layers_float():
    rng = np.random.default_rng(5)
    model = models.mlp((8, 6, 5, 3), rng=rng)                   # Linear layers are "1", "3", "5"
    config = QuantConfig(layers={"3": QConfig(weight=default_weight_spec(2), input=default_input_spec(3)),
                                 "5": None})
    qsim = quantize_ptq(model, [rng.normal(size=(4, 8)).astype(np.float32)], config)
    assert isinstance(qsim[1], QuantLinear) and qsim[1].weight_quant.qparams.bits == 8
    assert qsim[3].weight_quant.qparams.bits == 2 and qsim[3].input_quant.qparams.bits == 3
    assert type(qsim[5]) is nn.Linear
    assert np.unique(quantized_weights(qsim)["3.weight"].values).size <= 3          # ternary


def test_ptq_bad_input_is_a_clear_error():
    rng = np.random.default_rng(6)
    model = models.mlp((8, 4, 2), rng=rng)
    with pytest.raises(ValueError, match=r"unknown layers \['7'\]"):
        prepare(model, QuantConfig(layers={"7": None}))
    observed = prepare(model)
    with pytest.raises(RuntimeError, match=r"layer '1': the input quantizer has no range yet .*calibrate"):
        convert(observed)
    with pytest.raises(ValueError, match="empty loader"):
        calibrate(observed, [])
    with pytest.raises(ValueError, match="num_batches"):
        calibrate(observed, [np.zeros((1, 8), np.float32)], num_batches=0)
    with pytest.raises(TypeError, match="QuantConfig"):
        prepare(model, {"bits": 8})
    with pytest.raises(ValueError, match="axis 5 is out of range|axis=5 is out of range"):
        calibrate(prepare(model, QuantConfig(QConfig(weight=default_weight_spec(8, axis=5)))),
                  [np.zeros((1, 8), np.float32)])


def test_calibrate_stops_after_num_batches():
    rng = np.random.default_rng(7)
    model = nn.Sequential(nn.Linear(3, 2, rng=rng))
    batches = [np.full((2, 3), float(i), np.float32) for i in range(1, 5)]
    observed = calibrate(prepare(model), batches, num_batches=2)
    observer = observed[0].input_quant.observer
    assert (observer.min_val, observer.max_val) == (1.0, 2.0)
    assert isinstance(observed[0].input_quant.calculate_qparams(), QParams)
