"""Fake-quant layers as QDQ graphs: x̂ = DequantizeLinear(QuantizeLinear(x, s, z), s, z) around each tensor.

ONNX's two operators are the chapter-05 formulas (onnx.ai/onnx/operators/onnx__QuantizeLinear.html):

    QuantizeLinear    q = saturate(round_half_even(x / s) + z)     saturate to the int8/uint8 range of z's type
    DequantizeLinear  x̂ = (q − z) · s                              per tensor, or per channel along `axis`

so fake_quantize(x) = DequantizeLinear(QuantizeLinear(x)) for 8-bit codes. A QuantLinear/QuantConv2d
(tinyq.quant.qat) becomes

    x ─ Q ─ DQ ─┐
    W codes ─ DQ ┴─ Gemm/Conv (+ float bias) ─ [Q ─ DQ] ─ y

with the weight stored as its integer codes (per-channel axis kept) and only dequantized, as ONNX
Runtime's quantization tool writes weights. Runtimes fuse these patterns into integer kernels. int8
weight codes are written as uint8 q + 128 with zero point z + 128 (the same q − z, so the same graph
value): ONNX Runtime's fused uint8 × int8 kernels on x86 CPUs without VNNI add pairs of products in
int16 with saturation (vpmaddubsw) and can move results far; its uint8 × uint8 kernels cannot.
`uint8_weights=False` keeps int8 codes (ORT's advice then is 7-bit weights, its `reduce_range`).
"""
from __future__ import annotations

import numpy as np

from tinyq.formats.affine import quantize
from tinyq.interop.graph import UnsupportedLayerError, _conv, _linear, register_exporter
from tinyq.quant.qat import QuantConv2d, QuantLinear
from tinyq.quant.quantizers import FakeQuantize

__all__ = ["dq_weight", "qdq_activation", "quantizer_qparams"]


def quantizer_qparams(quantizer, name: str, role: str):
    """The frozen QParams of a FakeQuantize / LSQ / PACT quantizer (None if it does not quantize)."""
    if quantizer is None:
        return None
    if isinstance(quantizer, FakeQuantize):
        if not bool(quantizer.fake_quant_enabled):
            return None
        if bool(quantizer.observer_enabled):
            raise UnsupportedLayerError(f"layer {name!r}: its {role} quantizer still observes (its range moves with "
                                        "every batch); export the converted model: tinyq.quant.convert(model)")
    try:
        qparams = quantizer.qparams
    except RuntimeError as error:
        raise UnsupportedLayerError(f"layer {name!r}: its {role} quantizer has no range yet ({error})") from None
    if qparams.bits > 8:
        raise UnsupportedLayerError(f"layer {name!r}: {qparams.bits}-bit {role} codes; ONNX QuantizeLinear/"
                                    "DequantizeLinear here use int8/uint8 (int16 needs opset 21)")
    return qparams


def _scale_zero(g, qparams, stem):
    dtype = np.int8 if qparams.signed else np.uint8
    scale = g.constant(f"{stem}.scale", np.asarray(qparams.scale, np.float32))
    zero_point = g.constant(f"{stem}.zero_point", np.asarray(qparams.zero_point).astype(dtype))
    return scale, zero_point, ({} if qparams.axis is None else {"axis": int(qparams.axis)})


def qdq_activation(g, x: str, qparams, stem: str) -> str:
    """DequantizeLinear(QuantizeLinear(x)): 8-bit full-range grids only (ONNX saturates to the type's range)."""
    if qparams.bits != 8 or qparams.narrow_range:
        raise UnsupportedLayerError(
            f"{stem}: a {qparams.bits}-bit{' narrow-range' if qparams.narrow_range else ''} activation grid; "
            "QuantizeLinear saturates to the full int8/uint8 range, so ONNX would need a Clip after it "
            "(or int4/uint4 types, opset 21)")
    scale, zero_point, axis = _scale_zero(g, qparams, stem)
    q = g.node("QuantizeLinear", [x, scale, zero_point], f"{stem}.q", **axis)
    return g.node("DequantizeLinear", [q, scale, zero_point], f"{stem}.dq", **axis)


def dq_weight(g, weight: np.ndarray, qparams, stem: str, uint8_weights: bool = True) -> str:
    """DequantizeLinear(codes): the weight's integer codes as an initializer (any bit-width up to 8)."""
    codes = quantize(weight, qparams)
    scale = g.constant(f"{stem}.scale", np.asarray(qparams.scale, np.float32))
    axis = {} if qparams.axis is None else {"axis": int(qparams.axis)}
    zero_point = np.asarray(qparams.zero_point)
    if codes.dtype == np.int8 and uint8_weights:          # the same q − z as uint8 (see the module docstring)
        codes, zero_point = (codes.astype(np.int16) + 128).astype(np.uint8), zero_point + 128
    zero_point = g.constant(f"{stem}.zero_point", zero_point.astype(codes.dtype))
    return g.node("DequantizeLinear", [g.constant(f"{stem}.codes", codes), scale, zero_point], f"{stem}.dq", **axis)


def _quant_layer(float_export):
    def export(g, m, name, x, rank):
        input_qp = quantizer_qparams(m.input_quant, name, "input")
        weight_qp = quantizer_qparams(m.weight_quant, name, "weight")
        output_qp = quantizer_qparams(m.output_quant, name, "output")
        if input_qp is not None:
            x = qdq_activation(g, x, input_qp, f"{name}.input")
        weight = None if weight_qp is None else dq_weight(g, m.weight.data, weight_qp, f"{name}.weight")
        y, rank = float_export(g, m, name, x, rank, weight=weight)
        if output_qp is not None:
            y = qdq_activation(g, y, output_qp, f"{name}.output")
        return y, rank
    return export


register_exporter(QuantLinear, _quant_layer(_linear))
register_exporter(QuantConv2d, _quant_layer(_conv))
