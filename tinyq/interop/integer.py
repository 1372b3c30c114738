"""The integer-only model (tinyq.quant.int_modules) as ONNX integer operators.

    q_x   = QuantizeLinear(x, S_x, z_x)                                    (the model's input grid)
    acc   = MatMulInteger(q_x, q_Wᵀ, z_x, z_w) + q_b        or  ConvInteger(q_x, q_W, z_x, z_w) + q_b   (int32)
            (int8 weights are stored as uint8 q_w + 128 with z_w + 128: the same differences, and ONNX Runtime's
             u8×u8 kernels never saturate, where its u8×s8 ones can on CPUs without VNNI)
    q_y   = clamp(z_y + requantize(acc), lowest, qmax)                     lowest = z_y after a fused ReLU

and two ways to requantize (chapter 08):

    "gemmlowp"  M = M0·2^(shift−31) in int64 operators, bit for bit tinyq.kernels.requant:
                h = trunc((acc·M0 + nudge) / 2^31), nudge = 2^30 if acc·M0 ≥ 0 else 1 − 2^30
                q = trunc((h ± 2^(e−1)) / 2^e), e = −shift, sign of h   (round half away from zero)
    "float"     what ONNX Runtime's QLinear kernels do: q = round_half_even(float32(acc) · float32(M)),
                written Cast → Mul → QuantizeLinear(scale 1, z_y)

The last layer keeps its int32 accumulator (summed over H, W by a global average pool), and
logits = float32(acc) · S_x S_w / (H·W). With trace=True every layer's codes are graph outputs too.
"""
from __future__ import annotations

import numpy as np

from tinyq.interop.graph import UnsupportedLayerError
from tinyq.quant.int_modules import (
    IntConv2d,
    IntegerModel,
    IntFlatten,
    IntGlobalAvgPool2d,
    IntLinear,
    IntMaxPool2d,
)

__all__ = ["REQUANTIZATIONS", "export_integer_model"]

REQUANTIZATIONS = ("gemmlowp", "float")


def _int64(g, stem, value, shape):
    return g.constant(stem, np.asarray(value, np.int64).reshape(shape))


def _requantize_gemmlowp(g, acc, layer, name, shape):
    product = g.node("Mul", [g.node("Cast", [acc], f"{name}.acc64", to=7),            # 7 = INT64
                             _int64(g, f"{name}.m0", layer.multiplier, shape)], f"{name}.product")
    non_negative = g.node("GreaterOrEqual", [product, _int64(g, f"{name}.zero", 0, ())], f"{name}.non_negative")
    nudge = g.node("Where", [non_negative, _int64(g, f"{name}.nudge_pos", 1 << 30, ()),
                             _int64(g, f"{name}.nudge_neg", 1 - (1 << 30), ())], f"{name}.nudge")
    high = g.node("Div", [g.node("Add", [product, nudge], f"{name}.nudged"),        # integer Div truncates
                          _int64(g, f"{name}.two31", 1 << 31, ())], f"{name}.high")
    exponent = -np.asarray(layer.shift, np.int64)
    half = np.where(exponent > 0, np.left_shift(1, np.maximum(exponent - 1, 0)), 0)
    sign = g.node("Sign", [high], f"{name}.sign")
    shifted = g.node("Add", [high, g.node("Mul", [sign, _int64(g, f"{name}.half", half, shape)], f"{name}.tie")],
                     f"{name}.rounded")
    return g.node("Div", [shifted, _int64(g, f"{name}.pot", np.left_shift(1, exponent), shape)], f"{name}.scaled")


def _requantize_float(g, acc, layer, name, shape):
    multiplier = (np.asarray(layer.multiplier, np.float64) * np.exp2(np.asarray(layer.shift, np.float64) - 31))
    scaled = g.node("Mul", [g.node("Cast", [acc], f"{name}.accf", to=1),             # 1 = FLOAT
                            g.constant(f"{name}.multiplier", multiplier.astype(np.float32).reshape(shape))],
                    f"{name}.scaled_f")
    # round half to even and saturate to int32 range: QuantizeLinear to int32 (scale 1, zero point 0) needs
    # opset 21, so Round (half to even, as QuantizeLinear) then Cast
    return g.node("Cast", [g.node("Round", [scaled], f"{name}.round")], f"{name}.scaled", to=7)


def _gemm_layer(g, layer, name, x, requantization, conv: bool):
    weight = np.asarray(layer.weight)
    zero = np.asarray(layer.weight_zero_point)
    if weight.dtype == np.int8:
        # the same (q_w − z_w) as uint8: q_w + 128 and z_w + 128. ONNX Runtime's u8×s8 kernels on CPUs without
        # VNNI add pairs of products in int16 with saturation (x86 vpmaddubsw); its u8×u8 kernels do not.
        weight, zero = (weight.astype(np.int16) + 128).astype(np.uint8), zero + 128
    dtype = weight.dtype
    x_zero = g.constant(f"{name}.input_zero_point", np.asarray(layer.input_zero_point).astype(g.code_dtype))
    if conv:
        if np.any(zero != zero[0]):
            raise UnsupportedLayerError(f"layer {name!r}: ConvInteger takes one weight zero point; this layer has one "
                                        "per channel (use symmetric weights, zero point 0)")
        w_zero = g.constant(f"{name}.weight_zero_point", np.asarray(zero[0]).astype(dtype))
        (ph, pw) = layer.padding
        acc = g.node("ConvInteger", [x, g.constant(f"{name}.weight", weight), x_zero, w_zero], f"{name}.acc",
                     kernel_shape=list(weight.shape[2:]), strides=list(layer.stride), pads=[ph, pw, ph, pw],
                     dilations=list(layer.dilation))
        shape = (1, -1, 1, 1)
    else:
        w_zero = g.constant(f"{name}.weight_zero_point", zero.astype(dtype))
        acc = g.node("MatMulInteger", [x, g.constant(f"{name}.weightT", np.ascontiguousarray(weight.T)), x_zero,
                                       w_zero], f"{name}.acc")
        shape = (1, -1)
    if layer.bias is not None:
        acc = g.node("Add", [acc, g.constant(f"{name}.bias", np.asarray(layer.bias, np.int32).reshape(shape))],
                     f"{name}.acc_bias")
    if not layer.requantizes:
        if layer.relu:
            acc = g.node("Max", [acc, g.constant(f"{name}.zero32", np.zeros((), np.int32))], f"{name}.relu")
        return acc, True
    scaled = (_requantize_gemmlowp if requantization == "gemmlowp" else _requantize_float)(g, acc, layer, name, shape)
    lowest, highest = layer.output_range
    codes = g.node("Add", [scaled, _int64(g, f"{name}.output_zero_point", layer.output_zero_point, ())], f"{name}.q")
    codes = g.node("Max", [codes, _int64(g, f"{name}.lowest", lowest, ())], f"{name}.q_low")
    codes = g.node("Min", [codes, _int64(g, f"{name}.highest", highest, ())], f"{name}.q_high")
    g.code_dtype = np.dtype(layer.output_dtype)
    return g.node("Cast", [codes], name, to=2 if g.code_dtype == np.uint8 else 3), False   # 2 UINT8, 3 INT8


def export_integer_model(g, model: IntegerModel, x: str, requantization: str = "gemmlowp", trace=None):
    """Append the integer model on float input x; returns the logits' name (trace: list of layer output names)."""
    if requantization not in REQUANTIZATIONS:
        raise ValueError(f"requantization must be one of {REQUANTIZATIONS}, got {requantization!r}")
    qp = model.input_qparams
    if qp.per_channel or qp.bits != 8 or qp.narrow_range:
        raise UnsupportedLayerError(f"the integer model's input grid {qp} is not a full-range per-tensor 8-bit one")
    g.code_dtype = np.dtype(np.int8 if qp.signed else np.uint8)
    x = g.node("QuantizeLinear", [x, g.constant("input.scale", np.asarray(qp.scale, np.float32)),
                                  g.constant("input.zero_point", np.asarray(qp.zero_point).astype(g.code_dtype))],
               "input.codes")
    pool_input, is_accumulator = None, False
    layers = list(model.layers.children())
    for name, layer in zip(model.names, layers):
        if isinstance(layer, (IntLinear, IntConv2d)):
            x, is_accumulator = _gemm_layer(g, layer, name, x, requantization, isinstance(layer, IntConv2d))
        elif isinstance(layer, IntMaxPool2d):
            (ph, pw) = layer.padding
            x = g.node("MaxPool", [x], name, kernel_shape=list(layer.kernel_size), strides=list(layer.stride),
                       pads=[ph, pw, ph, pw], dilations=list(layer.dilation))
        elif isinstance(layer, IntFlatten):
            x = g.node("Flatten", [x], name, axis=1)
        elif isinstance(layer, IntGlobalAvgPool2d):
            pool_input = x
            x = g.node("ReduceSum", [x, _int64(g, f"{name}.axes", [2, 3], (2,))], name, keepdims=0)
        else:
            raise UnsupportedLayerError(f"integer layer {name!r} ({type(layer).__name__}) has no ONNX export")
        if trace is not None:                                # (name, ONNX element type) of the layer's output
            kind = 6 if is_accumulator else (2 if g.code_dtype == np.uint8 else 3)     # 6 INT32, 2 UINT8, 3 INT8
            trace.append((x, kind, 2 if isinstance(layer, (IntLinear, IntFlatten, IntGlobalAvgPool2d)) else 4))
    if not is_accumulator:
        raise UnsupportedLayerError("the integer model must end with an int32 accumulator (no output quantizer)")
    scale = g.constant("output.scale", np.asarray(model.output_scale, np.float64).reshape(1, -1))
    if pool_input is not None:                  # scale / (H·W), as IntegerModel.dequantize_output divides first
        area = g.node("ReduceProd", [g.node("Shape", [pool_input], "pool.shape", start=2)], "pool.area", keepdims=0)
        scale = g.node("Div", [scale, g.node("Cast", [area], "pool.area_double", to=11)], "output.scale_per_sum")
    logits = g.node("Mul", [g.node("Cast", [x], "acc.double", to=11), scale], "logits.double")   # 11 = DOUBLE
    return g.node("Cast", [logits], "logits.float", to=1)
