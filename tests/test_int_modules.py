"""Integer-only layers and conversion: the integer graph runs on integer arrays only; it agrees with the
fake-quant model within 1 LSB per layer and on ≥ 99.5% of the digits test predictions; torch.ao's fbgemm
quantized linear (optional oracle) agrees within 1 LSB; size accounting by hand; conversion errors."""
import numpy as np
import pytest

from tinyq import nn
from tinyq.data import ArrayDataset, DataLoader, load_digits
from tinyq.experiments.bitwidth import train_float
from tinyq.formats.affine import QParams, calculate_qparams, quantize
from tinyq.quant import QuantConfig, quantize_ptq
from tinyq.quant.equivalence import equivalence_report
from tinyq.quant.int_modules import (
    IntegerModel,
    IntLinear,
    layer_qparams,
    stored_bits,
    to_integer,
)
from tinyq.quant.qat import QuantLinear


def small_cnn(rng):
    """Conv (padded: the zero point pads) → ReLU → MaxPool → Conv → BatchNorm → ReLU → Flatten → Linear."""
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, rng=rng, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.Flatten(),
                         nn.Linear(64, 10, rng=rng))


@pytest.fixture(scope="module")
def digits():
    return load_digits("train"), load_digits("test")


def trained_pair(name, digits, seed=0, config=None):
    (x_train, y_train), _ = digits
    rng = np.random.default_rng(seed)
    if name == "mlp":
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 128, rng=rng), nn.ReLU(), nn.Linear(128, 10, rng=rng))
        epochs = 8
    elif name == "cnn":
        model, epochs = small_cnn(rng), 4
    else:
        from tinyq.models import convnet8
        model, epochs = convnet8(width=8, rng=rng), 3
    train_float(model, ArrayDataset(x_train, y_train), seed, epochs=epochs, name="mlp" if name == "mlp" else "lenet")
    qsim = quantize_ptq(model, DataLoader(ArrayDataset(x_train, y_train), batch_size=256), config, num_batches=2)
    return qsim, to_integer(qsim)


@pytest.fixture(scope="module", params=["mlp", "cnn", "convnet"])
def pair(request, digits):
    return request.param, *trained_pair(request.param, digits)


def test_integer_model_matches_fake_quant(pair, digits):
    _, qsim, int_model = pair
    x_test, y_test = digits[1]
    rows, summary = equivalence_report(qsim, int_model, x_test, y_test)
    assert summary["max_isolated_lsb"] <= 1, rows              # each layer alone: ≤ 1 LSB
    assert summary["logits_isolated_max_lsb"] <= 1, rows
    assert summary["prediction_agreement"] >= 0.995, summary
    assert summary["integer_accuracy"] > 0.7


class Poison:
    """Any use raises: stands in for every float the integer graph must not touch."""

    def __getattr__(self, name):
        raise AssertionError(f"the integer forward touched a float attribute ({name})")

    def __array__(self, *args, **kwargs):
        raise AssertionError("the integer forward touched a float attribute")


def test_integer_forward_uses_integers_only(pair, digits):
    _, _, int_model = pair
    x_test = digits[1][0][:50]
    codes = int_model.quantize_input(x_test)
    expected = int_model.integer_forward(codes)
    for buffer_name, buffer in int_model.named_buffers():
        assert buffer is None or np.asarray(buffer).dtype.kind in "iu", buffer_name
    for layer in int_model.layers.children():                # hide every float the layers hold
        for attribute in ("accumulator_scale", "output_qparams"):
            if hasattr(layer, attribute):
                object.__setattr__(layer, attribute, Poison())
    saved = int_model.input_qparams, int_model.output_scale
    int_model.input_qparams, int_model.output_scale = Poison(), Poison()
    try:
        trace = []
        result = int_model.integer_forward(codes, trace)
    finally:
        int_model.input_qparams, int_model.output_scale = saved
    assert all(t.dtype.kind in "iu" for t in trace)
    assert result.dtype == np.int32 and np.array_equal(result, expected)


def test_integer_forward_rejects_floats(pair):
    _, _, int_model = pair
    with pytest.raises(TypeError, match="integer codes"):
        int_model.integer_forward(np.zeros((2, 1, 8, 8), np.float32))


def test_blas_gemm_gives_the_same_model(digits):
    qsim, int_model = trained_pair("cnn", digits, seed=1)
    blas_model = to_integer(qsim, gemm="blas")
    codes = int_model.quantize_input(digits[1][0])
    assert np.array_equal(int_model.integer_forward(codes), blas_model.integer_forward(codes))


def test_int_linear_by_hand():
    """One output: acc = (3−1)(2) + (5−1)(−1) = 0 → + bias 4 → M = 0.5: 2 → + z_y 10 = 12."""
    input_qp = QParams(0.5, 1, bits=8, signed=False)
    weight_qp = QParams(0.25, 0, bits=8, signed=True, narrow_range=True)
    output_qp = QParams(0.25, 10, bits=8, signed=False)                      # M = 0.5·0.25/0.25 = 0.5
    layer = IntLinear(np.array([[2, -1]], np.int8), weight_qp, np.array([0.5]), input_qp, output_qp, relu=False)
    assert layer.bias[0] == 4                                                # 0.5 / (0.5·0.25)
    assert layer(np.array([[3, 5]], np.uint8))[0, 0] == 12
    assert layer(np.array([[1, 9]], np.uint8))[0, 0] == 10 + round(0.5 * (-8 + 4))       # −2 → 8
    relu = IntLinear(np.array([[2, -1]], np.int8), weight_qp, None, input_qp, output_qp, relu=True)
    assert relu(np.array([[1, 9]], np.uint8))[0, 0] == 10                    # clamped at z_y (0.0)


def test_stored_bits_by_hand():
    input_qp = QParams(0.5, 1, bits=8, signed=False)
    w4 = QParams(np.array([0.1, 0.2, 0.3]), np.zeros(3, np.int64), bits=4, signed=True, axis=0)
    layer = IntLinear(np.zeros((3, 5), np.int8), w4, np.zeros(3), input_qp, None, relu=False)
    model = IntegerModel(input_qp, [layer], layer.accumulator_scale, ["0"])
    bits = stored_bits(model)
    assert bits["weights"] == 15 * 4 and bits["biases"] == 3 * 32
    assert bits["qparams"] == 3 * (32 + 8 + 8) + 8 + 32 + 8 + 3 * 32
    assert bits["total"] == bits["weights"] + bits["biases"] + bits["qparams"]


def test_conversion_errors(digits):
    rng = np.random.default_rng(0)
    with pytest.raises(TypeError, match="nn.Sequential"):
        to_integer(nn.Linear(3, 2, rng=rng))
    with pytest.raises(ValueError, match="no QuantLinear"):
        to_integer(nn.Sequential(nn.Linear(3, 2, rng=rng)))
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16, rng=rng), nn.Sigmoid(), nn.Linear(16, 10, rng=rng))
    (x, y), _ = digits
    qsim = quantize_ptq(model, DataLoader(ArrayDataset(x, y), batch_size=256), num_batches=1)
    with pytest.raises(ValueError, match="cannot convert layer '2'"):
        to_integer(qsim)
    with pytest.raises(TypeError, match="QuantLinear or QuantConv2d"):
        layer_qparams(nn.Linear(3, 2, rng=rng))
    float_last = QuantConfig(layers={"3": None})
    qsim = quantize_ptq(nn.Sequential(nn.Flatten(), nn.Linear(64, 16, rng=rng), nn.ReLU(), nn.Linear(16, 10, rng=rng)),
                        DataLoader(ArrayDataset(x, y), batch_size=256), float_last, num_batches=1)
    with pytest.raises(ValueError, match="cannot convert layer '3'"):
        to_integer(qsim)


def test_layer_qparams_reads_the_quantizers(digits):
    qsim, _ = trained_pair("mlp", digits)
    layer = qsim[1]
    assert isinstance(layer, QuantLinear)
    qparams = layer_qparams(layer)
    assert qparams.input == layer.input_quant.qparams and qparams.weight == layer.weight_quant.qparams
    assert qparams.output is None


@pytest.mark.parametrize("input_bits", [7, 8])
def test_int8_linear_matches_torch_fbgemm(input_bits):
    """Within 1 LSB with 7-bit activations (torch's reduce_range on x86). With full uint8 activations fbgemm's
    AVX2 path (vpmaddubsw: two u8·s8 products summed in a saturating int16) can clip 255·127·2 = 64,770 to
    32,767, so there it may differ by more (measured: 26 LSB at seed 0); we only check that most agree."""
    torch = pytest.importorskip("torch")
    if "fbgemm" not in torch.backends.quantized.supported_engines:
        pytest.skip("fbgemm engine not available")
    torch.backends.quantized.engine = "fbgemm"
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 40)).astype(np.float32)
    weight = rng.normal(size=(12, 40)).astype(np.float32) * 0.2
    bias = rng.normal(size=12).astype(np.float32)
    input_qp = calculate_qparams(x.min(), x.max(), bits=input_bits, symmetric=False)
    weight_qp = calculate_qparams(-np.abs(weight).max(axis=1), np.abs(weight).max(axis=1), bits=8, symmetric=True,
                                  axis=0, narrow_range=True)
    y = (quantize(x, input_qp).astype(np.float32) - input_qp.zero_point) * input_qp.scale @ weight.T + bias
    output_qp = calculate_qparams(y.min(), y.max(), bits=8, symmetric=False)
    x_codes, w_codes = quantize(x, input_qp), quantize(weight, weight_qp)
    ours = IntLinear(w_codes, weight_qp, bias, input_qp, output_qp, relu=False)(x_codes)
    tx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x_codes), input_qp.scale, input_qp.zero_point)
    tw = torch._make_per_channel_quantized_tensor(torch.from_numpy(w_codes), torch.from_numpy(
        weight_qp.scale.astype(np.float64)), torch.zeros(12, dtype=torch.int64), 0)
    packed = torch.ops.quantized.linear_prepack(tw, torch.from_numpy(bias))
    theirs = torch.ops.quantized.linear(tx, packed, output_qp.scale, output_qp.zero_point).int_repr().numpy()
    difference = np.abs(ours.astype(np.int64) - theirs)
    if input_bits == 7:
        assert difference.max() <= 1
    else:
        assert np.mean(difference <= 1) > 0.9


@pytest.mark.parametrize("fake_quant", ["ste", "lsq"])
def test_qat_model_converts_too(digits, fake_quant):
    """float training → prepare_qat → one QAT epoch → convert → to_integer: ≤ 1 LSB per layer, same predictions.
    (With lr 3e-3 for two epochs some learned LSQ weight steps go negative and QParams rejects them: an LSQ
    issue, reported in the issue-14 note.)"""
    from tinyq.experiments.bitwidth import generator, train
    from tinyq.quant import convert, prepare_qat
    (x_train, y_train), (x_test, y_test) = digits
    rng = np.random.default_rng(2)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64, rng=rng), nn.ReLU(), nn.Linear(64, 10, rng=rng))
    train_float(model, ArrayDataset(x_train, y_train), 2, epochs=8, name="mlp")
    qat = prepare_qat(model, QuantConfig.uniform(8, fake_quant=fake_quant))
    train(qat, ArrayDataset(x_train, y_train), 1, generator(2, 1), lr=1e-3)
    qsim = convert(qat)
    rows, summary = equivalence_report(qsim, to_integer(qsim), x_test, y_test)
    assert summary["max_isolated_lsb"] <= 1 and summary["logits_isolated_max_lsb"] <= 1, rows
    assert summary["prediction_agreement"] >= 0.995 and summary["integer_accuracy"] > 0.6
