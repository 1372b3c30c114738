"""ONNX export: y_onnx(x) = model((x − mean) / std), built with onnx.helper and checked by onnx.checker.

    proto = to_onnx(model, "model.onnx", mean=mean, std=std)     # float, fake-quant (QDQ) or integer model
    logits = run_onnx(proto, images)                             # ONNX Runtime, CPU

The graph takes images as tinyq's data loaders give them (N, C, H, W, pixels in [0, 1]) and
starts with the standardization (Sub, Div), so a runtime user needs nothing from tinyq.
Each layer maps to standard operators (ONNX operator docs, onnx.ai/onnx/operators):

    Linear        Gemm(x, W, b, transB=1)            y = x Wᵀ + b
    Conv2d        Conv(x, W, b; strides, pads, dilations, group)
    BatchNorm     BatchNormalization(x, γ, β, μ, σ²; epsilon)   y = (x − μ)/sqrt(σ² + ε)·γ + β
    ReLU, ...     Relu, LeakyRelu, Sigmoid, Tanh
    MaxPool2d     MaxPool(kernel_shape, strides, pads, dilations)   (padding counts as −inf, as tinyq)
    AvgPool2d     AveragePool(count_include_pad=1)                  (padding zeros count, as tinyq)
    GlobalAvgPool2d   GlobalAveragePool, then Flatten (tinyq returns (N, C))
    Flatten       Flatten(axis=1)
    Dropout, Identity   Identity (inference)

Fake-quant layers (QuantLinear/QuantConv2d of tinyq.quant) become QDQ graphs (see qdq.py), the
integer model of tinyq.quant.int_modules becomes QLinear* operators (see integer.py). A layer with
no exporter raises UnsupportedLayerError naming it and the ONNX operators it would need;
`register_exporter(LayerType, function)` adds one.
"""
from __future__ import annotations

import os
import re

import numpy as np

from tinyq import nn
from tinyq.atomic import atomic_open

try:                                    # optional extra: pip install tinyq[interop]
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ModuleNotFoundError:             # pragma: no cover - exercised only without the extra
    onnx = None

__all__ = ["DEFAULT_OPSET", "MIN_OPSET", "OnnxGraph", "UnsupportedLayerError", "register_exporter",
           "to_onnx", "run_onnx", "EXPORTERS"]

DEFAULT_OPSET = 17
MIN_OPSET = 13                          # per-channel QuantizeLinear/DequantizeLinear (axis) arrived in opset 13

NEEDS = {                                # what a layer without an exporter would need in ONNX (for the error)
    "GELU": "Mul, Pow, Add, Tanh (opset 13) or Gelu (opset 20)",
    "Softmax": "Softmax",
    "LayerNorm": "LayerNormalization (opset 17)",
    "AdaptiveAvgPool2d": "AveragePool with computed windows, or GlobalAveragePool for output size 1",
}


class UnsupportedLayerError(ValueError):
    """A layer that tinyq cannot translate into ONNX operators."""


def _require():
    if onnx is None:
        raise RuntimeError("ONNX export needs the onnx package: pip install 'tinyq[interop]' "
                           "(onnx, onnxruntime, safetensors)")


class OnnxGraph:
    """Nodes and initializers of one graph under construction; every value gets a unique name."""

    def __init__(self):
        self.nodes, self.initializers, self._names = [], [], set()

    def fresh(self, stem: str) -> str:
        stem = re.sub(r"[^A-Za-z0-9_.]", "_", stem) or "v"
        name, k = stem, 1
        while name in self._names:
            name, k = f"{stem}_{k}", k + 1
        self._names.add(name)
        return name

    def constant(self, stem: str, array) -> str:
        """An initializer holding array (its dtype kept: float32, int8, uint8, int32, int64)."""
        name = self.fresh(stem)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op: str, inputs, stem: str, **attributes) -> str:
        """Append op(inputs) with attributes; returns the name of its (single) output."""
        output = self.fresh(stem)
        self.nodes.append(helper.make_node(op, list(inputs), [output], name=self.fresh(f"{stem}/{op}"), **attributes))
        return output


# ------------------------------------------------------------------------------ float layers
# Each exporter: f(graph, module, name, x, rank) -> (output value name, output rank).

def _linear(g, m, name, x, rank, weight=None):
    w = g.constant(f"{name}.weight", m.weight.data.astype(np.float32)) if weight is None else weight
    if rank == 2:
        inputs = [x, w] + ([g.constant(f"{name}.bias", m.bias.data.astype(np.float32))] if m.bias is not None else [])
        return g.node("Gemm", inputs, name, transB=1), 2
    y = g.node("MatMul", [x, g.node("Transpose", [w], f"{name}.weightT", perm=[1, 0])], name)
    if m.bias is not None:
        y = g.node("Add", [y, g.constant(f"{name}.bias", m.bias.data.astype(np.float32))], f"{name}.add")
    return y, rank


def _conv(g, m, name, x, rank, weight=None):
    w = g.constant(f"{name}.weight", m.weight.data.astype(np.float32)) if weight is None else weight
    inputs = [x, w] + ([g.constant(f"{name}.bias", m.bias.data.astype(np.float32))] if m.bias is not None else [])
    (ph, pw) = m.padding
    return g.node("Conv", inputs, name, kernel_shape=list(m.kernel_size), strides=list(m.stride),
                  pads=[ph, pw, ph, pw], dilations=list(m.dilation), group=m.groups), 4


def _batchnorm(g, m, name, x, rank):
    if m.training or not m.track_running_stats:
        raise UnsupportedLayerError(f"layer {name!r} ({type(m).__name__}) normalizes with batch statistics "
                                    "(training mode or track_running_stats=False); call model.eval() first")
    c = m.num_features
    gamma = m.weight.data if m.affine else np.ones(c, np.float32)
    beta = m.bias.data if m.affine else np.zeros(c, np.float32)
    inputs = [x] + [g.constant(f"{name}.{k}", np.asarray(v, np.float32)) for k, v in
                    (("weight", gamma), ("bias", beta), ("running_mean", m.running_mean),
                     ("running_var", m.running_var))]
    return g.node("BatchNormalization", inputs, name, epsilon=float(m.eps)), rank


def _pads(padding):
    ph, pw = padding if isinstance(padding, (tuple, list)) else (padding, padding)
    return [ph, pw, ph, pw]


def _pair(value):
    return list(value) if isinstance(value, (tuple, list)) else [value, value]


def _maxpool(g, m, name, x, rank):
    stride = m.kernel_size if m.stride is None else m.stride
    return g.node("MaxPool", [x], name, kernel_shape=_pair(m.kernel_size), strides=_pair(stride),
                  pads=_pads(m.padding), dilations=_pair(m.dilation)), 4


def _avgpool(g, m, name, x, rank):
    stride = m.kernel_size if m.stride is None else m.stride
    return g.node("AveragePool", [x], name, kernel_shape=_pair(m.kernel_size), strides=_pair(stride),
                  pads=_pads(m.padding), count_include_pad=1), 4


def _global_avgpool(g, m, name, x, rank):
    return g.node("Flatten", [g.node("GlobalAveragePool", [x], f"{name}.pool")], name, axis=1), 2


def _adaptive_avgpool(g, m, name, x, rank):
    if _pair(m.output_size) != [1, 1]:
        raise UnsupportedLayerError(f"layer {name!r} (AdaptiveAvgPool2d, output_size={m.output_size}) is exported "
                                    f"only for output size 1; ONNX would need {NEEDS['AdaptiveAvgPool2d']}")
    return g.node("GlobalAveragePool", [x], name), 4


def _flatten(g, m, name, x, rank):
    if m.start_dim != 1 or m.end_dim not in (-1, rank - 1):
        raise UnsupportedLayerError(f"layer {name!r} (Flatten start_dim={m.start_dim}, end_dim={m.end_dim}) is "
                                    "exported only as Flatten(start_dim=1); ONNX would need a Reshape")
    return g.node("Flatten", [x], name, axis=1), 2


def _elementwise(op, **attributes):
    def export(g, m, name, x, rank):
        values = {k: float(getattr(m, v)) for k, v in attributes.items()}
        return g.node(op, [x], name, **values), rank
    return export


EXPORTERS = {
    nn.Linear: _linear, nn.Conv2d: _conv, nn.BatchNorm1d: _batchnorm, nn.BatchNorm2d: _batchnorm,
    nn.ReLU: _elementwise("Relu"), nn.Sigmoid: _elementwise("Sigmoid"), nn.Tanh: _elementwise("Tanh"),
    nn.LeakyReLU: _elementwise("LeakyRelu", alpha="negative_slope"),
    nn.Identity: _elementwise("Identity"), nn.Dropout: _elementwise("Identity"),
    nn.MaxPool2d: _maxpool, nn.AvgPool2d: _avgpool, nn.GlobalAvgPool2d: _global_avgpool,
    nn.AdaptiveAvgPool2d: _adaptive_avgpool, nn.Flatten: _flatten,
}


def register_exporter(layer_type: type, function) -> None:
    """Export layers of layer_type with function(graph, module, name, x, rank) -> (output name, rank)."""
    if not (isinstance(layer_type, type) and issubclass(layer_type, nn.Module)):
        raise TypeError(f"register_exporter expects an nn.Module subclass, got {layer_type!r}")
    EXPORTERS[layer_type] = function


def _unsupported(module, name) -> UnsupportedLayerError:
    kind = type(module).__name__
    needs = NEEDS.get(kind, "operators that compute its forward (a composition of standard ONNX operators, "
                            "or a custom operator domain that ONNX Runtime would also have to implement)")
    supported = ", ".join(sorted({t.__name__ for t in EXPORTERS}))
    return UnsupportedLayerError(
        f"layer {name or '<model>'!r} ({kind}) cannot be exported to ONNX: ONNX would need {needs}. "
        f"Supported layers: {supported}, Sequential and the fake-quant/integer layers of tinyq.quant; "
        f"add one with tinyq.interop.onnx.register_exporter({kind}, function)")


def export_module(g: OnnxGraph, module, name: str, x: str, rank: int):
    """Append module's computation on value x (of the given rank) to g; returns (output name, rank)."""
    exporter = EXPORTERS.get(type(module))
    if exporter is not None:
        return exporter(g, module, name, x, rank)
    if type(module) is nn.Sequential:
        for child_name, child in module._modules.items():
            x, rank = export_module(g, child, f"{name}.{child_name}" if name else child_name, x, rank)
        return x, rank
    raise _unsupported(module, name)


# ------------------------------------------------------------------------------ the model

def _standardize(g, x, mean, std, channels):
    if mean is None and std is None:
        return x
    mean = np.zeros(channels, np.float32) if mean is None else np.asarray(mean, np.float32).reshape(-1)
    std = np.ones(channels, np.float32) if std is None else np.asarray(std, np.float32).reshape(-1)
    if mean.size not in (1, channels) or std.size not in (1, channels) or np.any(std <= 0):
        raise ValueError(f"to_onnx expects mean and std scalars or one per input channel ({channels}), std > 0; "
                         f"got mean {mean.tolist()}, std {std.tolist()}")
    shape = (1, -1, 1, 1)
    x = g.node("Sub", [x, g.constant("standardize.mean", mean.reshape(shape))], "standardize.sub")
    return g.node("Div", [x, g.constant("standardize.std", std.reshape(shape))], "standardized")


def _check_opset(opset) -> int:
    _require()
    newest = onnx.defs.onnx_opset_version()
    if not isinstance(opset, int) or isinstance(opset, bool) or not MIN_OPSET <= opset <= newest:
        raise ValueError(f"to_onnx expects an opset in {MIN_OPSET}..{newest} (the installed onnx {onnx.__version__} "
                         f"knows up to {newest}; tinyq's graphs need {MIN_OPSET}+), got {opset!r}")
    return opset


def to_onnx(model, path=None, *, input_shape=(1, 8, 8), mean=None, std=None, opset: int = DEFAULT_OPSET,
            name: str = "tinyq") -> "onnx.ModelProto":
    """The ONNX model of y = model((x − mean) / std) for x of shape (N, *input_shape); written to path if given.

    model: a float, fake-quant (tinyq.quant QuantLinear/QuantConv2d, frozen) or integer (to_integer)
    model in eval mode. mean/std: the standardization the model was trained with (per channel).
    The graph passes onnx.checker (full check, with shape inference) before it is returned.
    """
    opset = _check_opset(opset)
    if not isinstance(model, nn.Module):
        raise TypeError(f"to_onnx expects a tinyq nn.Module, got {type(model).__name__}")
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3:
        raise ValueError(f"to_onnx expects input_shape (C, H, W) of the images, got {input_shape}")
    from tinyq.interop import integer, qdq        # noqa: F401  (they register their exporters)
    g = OnnxGraph()
    x = g.fresh("images")
    y, rank = export_module(g, model, "", _standardize(g, x, mean, std, input_shape[0]), 4)
    y = g.node("Identity", [y], "logits")
    graph = helper.make_graph(
        g.nodes, name, [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", *input_shape])],
        [helper.make_tensor_value_info(y, TensorProto.FLOAT, ["N", *(f"d{i}" for i in range(1, rank))])], initializer=g.initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="tinyq")
    proto.ir_version = min(proto.ir_version, _ir_version(opset))
    onnx.checker.check_model(proto, full_check=True)
    if path is not None:
        with atomic_open(os.fspath(path), "wb") as f:
            f.write(proto.SerializeToString())
    return proto


def _ir_version(opset: int) -> int:
    """The IR version that goes with an opset (so older runtimes read the file), from onnx's own table."""
    irs = [ir for _, ir, version, *_ in helper.VERSION_TABLE if version == opset]
    return min(irs) if irs else onnx.IR_VERSION


def run_onnx(model, x: np.ndarray, threads: int | None = None) -> np.ndarray:
    """Run an ONNX model (ModelProto, bytes or path) on x in ONNX Runtime's CPU provider; returns the output."""
    _require()
    session = session_for(model, threads)
    return session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(x, dtype=np.float32)})[0]


def session_for(model, threads: int | None = None):
    """An onnxruntime.InferenceSession; an opset the runtime lacks gives a RuntimeError that says so."""
    try:
        import onnxruntime
    except ModuleNotFoundError:
        raise RuntimeError("running ONNX models needs onnxruntime: pip install 'tinyq[interop]'") from None
    if isinstance(model, (str, os.PathLike)):
        model = onnx.load(os.fspath(model))
    data = model.SerializeToString() if hasattr(model, "SerializeToString") else bytes(model)
    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        return onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as error:                    # onnxruntime raises its own Fail/InvalidGraph classes
        message = str(error)
        if "opset" in message.lower() or "ValidateOpsetForDomain" in message:
            opsets = {} if not hasattr(model, "opset_import") else {o.domain or "ai.onnx": o.version
                                                                     for o in model.opset_import}
            raise RuntimeError(f"ONNX Runtime {onnxruntime.__version__} cannot run this model's opset {opsets}: "
                               f"export with an older opset (to_onnx(..., opset={DEFAULT_OPSET})). "
                               f"Runtime said: {message.splitlines()[0][-200:]}") from None
        raise RuntimeError(f"ONNX Runtime {onnxruntime.__version__} refused the model: {message[:400]}") from None
