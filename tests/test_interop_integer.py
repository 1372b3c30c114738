"""The integer-only model in ONNX Runtime: bit for bit with gemmlowp requantization, ≤ 1 LSB through float."""
import numpy as np
import pytest

pytest.importorskip("onnx", reason="ONNX export needs the interop extra: pip install 'tinyq[interop]'")
pytest.importorskip("onnxruntime", reason="checking exports needs onnxruntime: pip install 'tinyq[interop]'")

from tinyq import models
from tinyq.data.datasets import load_digits
from tinyq.interop.graph import UnsupportedLayerError
from tinyq.interop.onnx import run_onnx, to_onnx
from tinyq.kernels.requant import requantize_reference
from tinyq.quant import ptq
from tinyq.quant.config import QConfig, QuantConfig, QuantSpec
from tinyq.quant.int_modules import IntConv2d, IntLinear, to_integer


@pytest.fixture(scope="module")
def digits():
    return load_digits("train"), load_digits("test")


def _integer_model(model, x, config=None):
    return to_integer(ptq.quantize_ptq(model.eval(), [x[i:i + 128] for i in range(0, 512, 128)], config))


def _trace(int_model, x):
    trace = []
    int_model.integer_forward(int_model.quantize_input(x), trace)
    return trace


@pytest.mark.parametrize("build", [lambda rng: models.mlp((64, 48, 32, 10), rng=rng),
                                   lambda rng: models.convnet8(width=8, rng=rng)], ids=["mlp", "convnet"])
def test_gemmlowp_requantization_is_bit_for_bit(rng, digits, build):
    (x, _), (x_test, _) = digits
    int_model = _integer_model(build(rng), x)
    mean, std = np.float32(0.25), np.float32(0.5)                 # the graph standardizes first, as training did
    standardized = ((x_test - mean) / std).astype(np.float32)
    outputs = run_onnx(to_onnx(int_model, mean=mean, std=std, trace=True), x_test, all_outputs=True)
    expected = _trace(int_model, standardized)
    assert len(outputs) == 1 + len(expected)
    for layer, (ours, theirs) in enumerate(zip(expected, outputs[1:])):
        assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs), layer
    assert np.array_equal(outputs[0], int_model(standardized).data)       # logits: the same float64 → float32 steps


def test_float_requantization_differs_by_at_most_one_step_per_layer(rng, digits):
    """ORT-style q = round_half_even(float32(acc)·float32(M)) against gemmlowp's two roundings, layer by layer on
    the same accumulators: ≤ 1 LSB. Through the whole network the differences compound but predictions agree."""
    (x, _), (x_test, _) = digits
    int_model = _integer_model(models.convnet8(width=8, rng=rng), x)
    outputs = run_onnx(to_onnx(int_model, requantization="float", trace=True), x_test, all_outputs=True)
    assert np.mean(outputs[0].argmax(1) == int_model(x_test).data.argmax(1)) >= 0.995
    codes = int_model.quantize_input(x_test)
    checked = 0
    for layer in int_model.layers.children():
        if isinstance(layer, (IntLinear, IntConv2d)) and layer.requantizes:
            acc = _accumulator(layer, codes)
            exact = requantize_reference(acc.astype(np.int32), layer.multiplier, layer.shift, layer.output_zero_point,
                                         *layer.output_range, axis=1)
            multiplier = (layer.multiplier.astype(np.float64) * np.exp2(layer.shift - 31.0)).astype(np.float32)
            through_float = np.rint(acc.astype(np.float32) * multiplier.reshape(1, -1, 1, 1)).astype(np.int64)
            through_float = np.clip(through_float + layer.output_zero_point, *layer.output_range)
            assert np.abs(through_float - exact).max() <= 1
            checked += 1
        codes = layer(codes)
    assert checked == 4


def _accumulator(layer, codes):
    """The int32 accumulator (+ bias) of an IntConv2d, computed here in int64 from its definition."""
    w = layer.weight.astype(np.int64) - layer.weight_zero_point.reshape(-1, 1, 1, 1)
    x = np.pad(codes.astype(np.int64) - layer.input_zero_point, [(0, 0), (0, 0)] + [(p, p) for p in layer.padding])
    kh, kw = w.shape[2:]
    (sh, sw), n = layer.stride, x.shape[0]
    oh, ow = (x.shape[2] - kh) // sh + 1, (x.shape[3] - kw) // sw + 1
    acc = np.zeros((n, w.shape[0], oh, ow), np.int64)
    for i in range(kh):
        for j in range(kw):
            patch = x[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw]
            acc += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    if layer.bias is not None:
        acc += layer.bias.reshape(1, -1, 1, 1)
    return acc


def test_signed_activations_and_per_channel_weight_zero_points(rng, digits):
    (x, _), (x_test, _) = digits
    config = QuantConfig(QConfig(weight=QuantSpec(bits=8, symmetric=False, per_channel=True),
                                 input=QuantSpec(bits=8, signed=True)))
    int_model = _integer_model(models.mlp((64, 32, 10), rng=rng), x, config)
    assert np.any(int_model.layers[1].weight_zero_point != 0)
    outputs = run_onnx(to_onnx(int_model, trace=True), x_test, all_outputs=True)
    for ours, theirs in zip(_trace(int_model, x_test), outputs[1:]):
        assert np.array_equal(ours, theirs)
    conv = _integer_model(models.convnet8(width=4, rng=rng), x, config)
    with pytest.raises(UnsupportedLayerError, match="one weight zero point"):
        to_onnx(conv)
