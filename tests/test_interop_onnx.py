"""ONNX export checked by a runtime nobody here wrote: ONNX Runtime reproduces tinyq's outputs."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="ONNX export needs the interop extra: pip install 'tinyq[interop]'")
pytest.importorskip("onnxruntime", reason="checking exports needs onnxruntime: pip install 'tinyq[interop]'")

from onnx import TensorProto, helper

from tinyq import functional as F
from tinyq import models, nn, optim
from tinyq.data.datasets import load_digits
from tinyq.interop.onnx import UnsupportedLayerError, run_onnx, to_onnx
from tinyq.quant import ptq
from tinyq.quant.config import QConfig, QuantConfig, QuantSpec
from tinyq.quant.qat import prepare_qat
from tinyq.tensor import Tensor


def _standardize(x, mean, std):
    """Float64 reference of the graph's first two nodes, cast back to float32 as tinyq's normalize does."""
    return ((x - np.reshape(mean, (1, -1, 1, 1))) / np.reshape(std, (1, -1, 1, 1))).astype(np.float32)


def _close(actual, expected, rtol=1e-5):
    """|a − e| ≤ rtol·max|e| elementwise (relative to the output's scale)."""
    bound = rtol * np.abs(expected).max()
    assert np.abs(actual - expected).max() <= bound, (np.abs(actual - expected).max(), bound)


def _every_layer(rng):
    conv_bn = nn.BatchNorm2d(8)
    conv_bn.running_mean = rng.normal(size=8).astype(np.float32)
    conv_bn.running_var = rng.uniform(0.5, 2, size=8).astype(np.float32)
    conv_bn.weight.data = rng.uniform(0.5, 1.5, size=8).astype(np.float32)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, rng=rng), conv_bn, nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=2, dilation=2, groups=4, rng=rng), nn.LeakyReLU(0.1),
        nn.MaxPool2d(2, stride=1, padding=1), nn.AvgPool2d(2, padding=1), nn.Tanh(),
        nn.Sequential(nn.Conv2d(8, 16, 1, bias=False, rng=rng), nn.Sigmoid()),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5), nn.Linear(16, 12, rng=rng), nn.BatchNorm1d(12),
        nn.Identity(), nn.Linear(12, 10, rng=rng)).eval()


@pytest.fixture(scope="module")
def digits():
    return load_digits("train"), load_digits("test")


def _trained_mlp(x, y, seed=0):
    """A small MLP trained 4 epochs on digits (so the QDQ test has confident and borderline logits)."""
    rng = np.random.default_rng(seed)
    model = models.mlp((64, 64, 10), rng=rng)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(4):
        order = rng.permutation(len(x))
        for i in range(0, len(x), 64):
            batch = order[i:i + 64]
            loss = F.cross_entropy(model(Tensor(x[batch])), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def test_every_float_layer_matches_on_random_and_digits_inputs(rng, digits):
    model = _every_layer(rng)
    mean, std = np.float32(0.3), np.float32(0.4)
    proto = to_onnx(model, mean=mean, std=std)
    onnx.checker.check_model(proto, full_check=True)
    ops = {node.op_type for node in proto.graph.node}
    assert {"Conv", "BatchNormalization", "Relu", "LeakyRelu", "MaxPool", "AveragePool", "GlobalAveragePool",
            "Flatten", "Gemm", "Sub", "Div"} <= ops
    (_, _), (x_test, _) = digits
    for x in (rng.uniform(0, 1, (7, 1, 8, 8)).astype(np.float32), x_test):
        _close(run_onnx(proto, x), model(Tensor(_standardize(x, mean, std))).data)


def test_lenet_shape_and_per_channel_standardization(rng, tmp_path):
    model = models.lenet5(in_channels=3, image_size=32, rng=rng).eval()
    mean, std = np.array([0.1, 0.5, 0.9], np.float32), np.array([0.2, 0.3, 0.25], np.float32)
    path = tmp_path / "lenet.onnx"
    to_onnx(model, path, input_shape=(3, 32, 32), mean=mean, std=std)
    x = rng.uniform(0, 1, (4, 3, 32, 32)).astype(np.float32)
    _close(run_onnx(path, x), model(Tensor(_standardize(x, mean, std))).data)


def test_linear_on_a_3d_input_uses_matmul(rng):
    model = nn.Sequential(nn.Linear(8, 5, rng=rng)).eval()
    proto = to_onnx(model, input_shape=(1, 8, 8))
    assert "MatMul" in {node.op_type for node in proto.graph.node}
    x = rng.uniform(0, 1, (2, 1, 8, 8)).astype(np.float32)
    _close(run_onnx(proto, x), model(Tensor(x)).data)


class Cube(nn.Module):
    def forward(self, x):
        return x * x * x


def test_unsupported_layer_names_the_layer_and_the_operators(rng):
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10, rng=rng), Cube())
    with pytest.raises(UnsupportedLayerError, match=r"layer '2' \(Cube\).*ONNX would need"):
        to_onnx(model)
    with pytest.raises(UnsupportedLayerError, match=r"GELU.*Tanh"):
        to_onnx(nn.Sequential(nn.Flatten(), nn.GELU()))


def test_batchnorm_in_training_mode_is_refused(rng):
    with pytest.raises(UnsupportedLayerError, match="eval"):
        to_onnx(nn.Sequential(nn.Conv2d(1, 2, 3, rng=rng), nn.BatchNorm2d(2)).train())


def test_opsets_outside_the_supported_range():
    with pytest.raises(ValueError, match=r"opset in 13\.\."):
        to_onnx(nn.Sequential(nn.Flatten()), opset=99)
    with pytest.raises(ValueError, match="opset"):
        to_onnx(nn.Sequential(nn.Flatten()), opset=9)
    # a model stamped with an opset this ONNX Runtime lacks (newer than any it knows)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    future = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 99)])
    with pytest.raises(RuntimeError, match="cannot run this model's opset"):
        run_onnx(future, np.zeros(1, np.float32))


def _qdq_check(model, x_test, mean=0.0, std=1.0, optimization="all"):
    """(share of equal predictions, tinyq's logits, ORT's logits) on x_test."""
    expected = model(Tensor(_standardize(x_test, mean, std))).data
    actual = run_onnx(to_onnx(model, mean=mean, std=std), x_test, optimization=optimization)
    return np.mean(expected.argmax(1) == actual.argmax(1)), expected, actual


@pytest.mark.parametrize("weight_bits, optimization", [(8, "basic"), (8, "all"), (7, "all")])
@pytest.mark.parametrize("signed_input", [False, True])
@pytest.mark.parametrize("per_channel", [True, False])
def test_qdq_export_of_a_ptq_model(digits, signed_input, per_channel, weight_bits, optimization):
    """"basic": the graph as written (QuantizeLinear/DequantizeLinear run one by one); "all": the runtime's fused
    integer kernels. int8 weights are exported as uint8 + 128, so the fused kernels are u8×u8 and do not saturate
    on CPUs without VNNI (with int8 codes, 8-bit weights gave 97.5 % agreement here; 7-bit ones were fine)."""
    (x, y), (x_test, _) = digits
    model = _trained_mlp(x, y)
    output = QuantSpec(bits=8, signed=signed_input)
    config = QuantConfig(QConfig(weight=QuantSpec(bits=weight_bits, symmetric=True, per_channel=per_channel),
                                 input=QuantSpec(bits=8, signed=signed_input), output=output))
    qmodel = ptq.quantize_ptq(model, [x[i:i + 128] for i in range(0, 1024, 128)], config)
    agree, expected, actual = _qdq_check(qmodel, x_test, optimization=optimization)
    assert agree >= 0.995
    step = float(qmodel[-1].output_quant.qparams.scale)
    assert np.abs(expected - actual).max() <= step + 1e-6 * np.abs(expected).max()    # + float32 rounding of (q − z)·s
    proto = to_onnx(qmodel)
    dq = [n for n in proto.graph.node if n.op_type == "DequantizeLinear" and "weight" in n.name]
    axes = [a.i for n in dq for a in n.attribute if a.name == "axis"]
    assert axes == ([0, 0] if per_channel else [])
    zero_types = {init.data_type for init in proto.graph.initializer if init.name.endswith("input.zero_point")}
    assert zero_types == {TensorProto.INT8 if signed_input else TensorProto.UINT8}


def test_qdq_export_of_a_conv_model_keeps_zero_points_and_axes(rng, digits):
    (x, _), (x_test, _) = digits
    model = models.convnet8(width=8, rng=rng).eval()
    config = QuantConfig(QConfig(weight=QuantSpec(bits=4, symmetric=False, per_channel=True),
                                 input=QuantSpec(bits=8)))
    qmodel = ptq.quantize_ptq(model, [x[i:i + 128] for i in range(0, 512, 128)], config)
    proto = to_onnx(qmodel)
    weights = qmodel[0].weight_quant.qparams
    stored = {init.name: onnx.numpy_helper.to_array(init) for init in proto.graph.initializer}
    np.testing.assert_array_equal(stored["0.weight.zero_point"], weights.zero_point.astype(np.uint8))
    assert np.any(weights.zero_point != weights.zero_point[0])            # per-channel zero points, not one
    agree, expected, actual = _qdq_check(qmodel, x_test, optimization="basic")
    assert agree >= 0.995
    # no output quantizer: tolerance = a float rounding of the last layer's accumulation
    _close(actual, expected, rtol=1e-4)


def test_qdq_export_refuses_an_observing_model(digits):
    (x, _), _ = digits
    observing = prepare_qat(models.mlp((64, 16, 10), rng=np.random.default_rng(1))).eval()
    observing(Tensor(x[:64]))                   # QAT: observers on, fake quantization on
    with pytest.raises(UnsupportedLayerError, match="convert"):
        to_onnx(observing)


def test_export_command_takes_a_train_run_without_further_arguments(tmp_path, monkeypatch, capsys):
    """The graph on raw test images (pixels in [0, 1]) scores exactly the best checkpoint's test accuracy
    that `tinyq train` reported: the standardization inside the graph is the one training used."""
    from tinyq.cli import main
    from tinyq.interop.safetensors import load_safetensors
    from tinyq.train import run

    monkeypatch.setenv("TINYQ_FAST", "1")
    summary = run("mlp", "digits", epochs=1, seed=3, out=tmp_path / "run", progress=False, echo=None)["summary"]
    assert main(["export", str(tmp_path / "run"), "--onnx", str(tmp_path / "m.onnx"),
                 "--safetensors", str(tmp_path / "m.safetensors"), "--check"]) in (0, None)
    x_test, y_test = load_digits("test")
    accuracy = np.mean(run_onnx(tmp_path / "m.onnx", x_test).argmax(1) == y_test)
    assert accuracy == summary["best_test_accuracy"]
    assert sorted(load_safetensors(tmp_path / "m.safetensors")) == ["1.bias", "1.weight", "3.bias", "3.weight"]
    assert "equal predictions 1.0000" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "run")]) == 2                   # nothing asked for: a one-line error
    assert "nothing to export" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "run" / "last.npz"), "--onnx", str(tmp_path / "i.onnx"),
                 "--quantize", "integer", "--check"]) in (0, None)
    assert "max |diff| / max |logit| = 0.00e+00, equal predictions 1.0000" in capsys.readouterr().out


def _mnist_present() -> bool:
    from tinyq.data.datasets import MNIST_FILES
    from tinyq.data.download import cache_dir
    folder = cache_dir() / "mnist"
    return all((folder / name).is_file() or (folder / name.removesuffix(".gz")).is_file() for name in MNIST_FILES)


@pytest.mark.skipif(not _mnist_present(), reason="MNIST files are not in $TINYQ_DATA/mnist (nothing is downloaded)")
def test_lenet_on_mnist_float_and_qdq(rng):
    from tinyq.data.datasets import load_mnist
    (x_train, _), (x_test, _) = load_mnist("train"), load_mnist("test")
    model = models.lenet5(rng=rng).eval()
    x_test = x_test[:1000]
    _close(run_onnx(to_onnx(model, input_shape=(1, 28, 28)), x_test), model(Tensor(x_test)).data)
    qmodel = ptq.quantize_ptq(model, [x_train[i:i + 128] for i in range(0, 1024, 128)])
    expected = qmodel(Tensor(x_test)).data
    actual = run_onnx(to_onnx(qmodel, input_shape=(1, 28, 28)), x_test, optimization="basic")
    assert np.mean(expected.argmax(1) == actual.argmax(1)) >= 0.995
