"""Building ONNX graphs: OnnxGraph (nodes + initializers), one exporter per layer type, export_module.

Each exporter is f(graph, module, name, x, rank) -> (output value name, output rank); EXPORTERS maps
layer types to them (float layers here, fake-quant layers in qdq.py, integer layers in integer.py).
The table of which layer becomes which operator is in tinyq/interop/onnx.py.
"""
from __future__ import annotations

import re

import numpy as np

from tinyq import nn

try:                                    # optional extra: pip install tinyq[interop]
    import onnx
    from onnx import helper, numpy_helper
except ModuleNotFoundError:             # pragma: no cover - exercised only without the extra
    onnx = None

__all__ = ["EXPORTERS", "OnnxGraph", "UnsupportedLayerError", "export_module", "register_exporter"]

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
        self.initializers.append(numpy_helper.from_array(np.require(array, requirements="C"), name))
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
