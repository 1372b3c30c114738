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

import numpy as np

from tinyq import nn
from tinyq.atomic import atomic_open
from tinyq.interop import integer, qdq  # noqa: F401  (importing them registers their exporters)
from tinyq.interop.graph import (
    EXPORTERS,
    OnnxGraph,
    UnsupportedLayerError,
    _require,
    export_module,
    register_exporter,
)
from tinyq.interop.integer import export_integer_model
from tinyq.quant.int_modules import IntegerModel

try:                                    # optional extra: pip install tinyq[interop]
    import onnx
    from onnx import TensorProto, helper
except ModuleNotFoundError:             # pragma: no cover - exercised only without the extra
    onnx = None

__all__ = ["DEFAULT_OPSET", "EXPORTERS", "MIN_OPSET", "UnsupportedLayerError", "register_exporter", "run_onnx",
           "session_for", "to_onnx"]

DEFAULT_OPSET = 17
MIN_OPSET = 13                          # per-channel QuantizeLinear/DequantizeLinear (axis) arrived in opset 13



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
            name: str = "tinyq", requantization: str = "gemmlowp", trace: bool = False) -> onnx.ModelProto:
    """The ONNX model of y = model((x − mean) / std) for x of shape (N, *input_shape); written to path if given.

    model: a float, fake-quant (tinyq.quant QuantLinear/QuantConv2d, frozen) or integer (to_integer)
    model in eval mode. mean/std: the standardization the model was trained with (per channel).
    Integer models: requantization "gemmlowp" (bit for bit tinyq's) or "float" (as ONNX Runtime's QLinear
    kernels); trace=True adds every integer layer's output codes as graph outputs after the logits.
    The graph passes onnx.checker (full check, with shape inference) before it is returned.
    """
    opset = _check_opset(opset)
    if not isinstance(model, nn.Module):
        raise TypeError(f"to_onnx expects a tinyq nn.Module, got {type(model).__name__}")
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3:
        raise ValueError(f"to_onnx expects input_shape (C, H, W) of the images, got {input_shape}")
    g = OnnxGraph()
    x = g.fresh("images")
    standardized = _standardize(g, x, mean, std, input_shape[0])
    traced = [] if trace else None
    if isinstance(model, IntegerModel):
        y, rank = export_integer_model(g, model, standardized, requantization, traced), 2
    else:
        y, rank = export_module(g, model, "", standardized, 4)
    y = g.node("Identity", [y], "logits")
    outputs = [helper.make_tensor_value_info(y, TensorProto.FLOAT, ["N", *(f"d{i}" for i in range(1, rank))])]
    outputs += [helper.make_tensor_value_info(t, kind, ["N", *(f"{t}_d{i}" for i in range(1, rank))])
                for t, kind, rank in traced or ()]
    graph = helper.make_graph(
        g.nodes, name, [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", *input_shape])], outputs,
        initializer=g.initializers)
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


def run_onnx(model, x: np.ndarray, threads: int | None = None, optimization: str = "all", all_outputs: bool = False):
    """Run an ONNX model (ModelProto, bytes or path) on x in ONNX Runtime's CPU provider; returns the output.

    optimization "all" (the runtime's default: QDQ patterns fused into integer kernels), "basic" (constant
    folding only: every QuantizeLinear/DequantizeLinear runs as written) or "none". On CPUs without VNNI
    the fused u8×s8 kernels add pairs of products in int16 with saturation (x86 vpmaddubsw), which can
    change 8-bit-weight results; 7-bit weights (ORT's reduce_range) avoid it. See the chapter section.
    """
    _require()
    session = session_for(model, threads, optimization)
    outputs = session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(x, dtype=np.float32)})
    return outputs if all_outputs else outputs[0]


OPTIMIZATION_LEVELS = {"none": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
                       "all": "ORT_ENABLE_ALL"}


def session_for(model, threads: int | None = None, optimization: str = "all"):
    """An onnxruntime.InferenceSession; an opset the runtime lacks gives a RuntimeError that says so."""
    try:
        import onnxruntime
    except ModuleNotFoundError:
        raise RuntimeError("running ONNX models needs onnxruntime: pip install 'tinyq[interop]'") from None
    if isinstance(model, (str, os.PathLike)):
        model = onnx.load(os.fspath(model))
    data = model.SerializeToString() if hasattr(model, "SerializeToString") else bytes(model)
    if optimization not in OPTIMIZATION_LEVELS:
        raise ValueError(f"optimization must be one of {', '.join(OPTIMIZATION_LEVELS)}, got {optimization!r}")
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = getattr(onnxruntime.GraphOptimizationLevel, OPTIMIZATION_LEVELS[optimization])
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        return onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # noqa: BLE001  (onnxruntime raises its own Fail/InvalidGraph/... classes)
        message = str(error)
        if "opset" in message.lower() or "ValidateOpsetForDomain" in message:
            opsets = {} if not hasattr(model, "opset_import") else {o.domain or "ai.onnx": o.version
                                                                     for o in model.opset_import}
            raise RuntimeError(f"ONNX Runtime {onnxruntime.__version__} cannot run this model's opset {opsets}: "
                               f"export with an older opset (to_onnx(..., opset={DEFAULT_OPSET})). "
                               f"Runtime said: {message.splitlines()[0][-200:]}") from None
        raise RuntimeError(f"ONNX Runtime {onnxruntime.__version__} refused the model: {message[:400]}") from None
