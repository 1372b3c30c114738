"""Integer-only layers: q_out = clamp(z_out + M·(Σ (q_x − z_x)(q_w − z_w) + q_b), qmin, qmax), M = M0·2^-31·2^shift.

From r = S (q − Z) for input, weight and output, a layer y = Σ x·w + b becomes (Jacob et al. 2018)

    q_y = z_y + (S_x S_w / S_y) · (Σ_k (q_x − z_x)(q_w − z_w) + q_b),   q_b = round(b / (S_x S_w))

with every term an integer except M = S_x S_w / S_y < 1, kept as (M0, shift) and applied by
tinyq.kernels.requant. A ReLU after the layer is fused as a clamp at z_y (the code of 0.0); max-pool
and flatten act on codes directly. The last layer keeps its int32 accumulator, which `dequantize`
turns into logits (scale S_x S_w per output channel).

    int_model = to_integer(quantize_ptq(model, loader))      # PTQ or QAT model, BatchNorm folded
    logits = int_model(x)                                     # quantize → integer layers → dequantize
    codes = int_model.integer_forward(int_model.quantize_input(x))   # the integer graph alone

The names IntLinear / IntConv2d keep the integer vocabulary apart from the fake-quant QuantLinear /
QuantConv2d, as torch.ao keeps quantized apart from qat modules.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyq import nn
from tinyq.convolution import _pair
from tinyq.formats.affine import QParams, quantize
from tinyq.kernels.accumulate import accumulate_gemm
from tinyq.kernels.int_gemm import int_gemm, int_gemm_blas
from tinyq.kernels.int_ops import add_bias_int32, int_im2col, int_max_pool2d
from tinyq.kernels.requant import quantize_multiplier, requantize
from tinyq.quant.qat import QuantLinear, _QuantLayer
from tinyq.tensor import Tensor

__all__ = [
    "GEMMS",
    "IntConv2d",
    "IntFlatten",
    "IntGlobalAvgPool2d",
    "IntLinear",
    "IntMaxPool2d",
    "IntegerModel",
    "LayerQParams",
    "flat_layers",
    "layer_qparams",
    "set_accumulator",
    "stored_bits",
    "to_integer",
]

GEMMS = {"numba": int_gemm, "blas": int_gemm_blas}


@dataclass(frozen=True)
class LayerQParams:
    """What an integer layer needs from a fake-quant layer: the QParams of its input, weight and output."""

    input: QParams
    weight: QParams
    output: QParams | None


def layer_qparams(layer) -> LayerQParams:
    """The QParams of a converted (or calibrated) QuantLinear/QuantConv2d: the one place that reads quantizer state."""
    if not isinstance(layer, _QuantLayer):
        raise TypeError(f"layer_qparams expects a QuantLinear or QuantConv2d, got {type(layer).__name__}")
    if layer.input_quant is None or layer.weight_quant is None:
        raise ValueError(f"integer-only inference needs the input and the weight of every layer quantized; "
                         f"{type(layer).__name__} has input_quant={layer.input_quant}, weight_quant={layer.weight_quant}")
    try:
        output = None if layer.output_quant is None else layer.output_quant.qparams
        return LayerQParams(layer.input_quant.qparams, layer.weight_quant.qparams, output)
    except RuntimeError as error:
        raise RuntimeError(f"{type(layer).__name__} has no quantization range yet ({error}); calibrate or "
                           "convert the model first") from None


# ------------------------------------------------------------------------- integer layers
class _IntGemmLayer(nn.Module):
    """Shared by IntLinear and IntConv2d: int8 weight codes, int32 bias, per-channel (M0, shift) → output codes."""

    def __init__(self, weight_codes: np.ndarray, weight_qparams: QParams, bias: np.ndarray | None,
                 input_qparams: QParams, output_qparams: QParams | None, relu: bool, gemm: str = "numba"):
        super().__init__()
        if gemm not in GEMMS:
            raise ValueError(f"{type(self).__name__} expects gemm in {sorted(GEMMS)}, got {gemm!r}")
        out_channels = weight_codes.shape[0]
        input_scale = np.float64(input_qparams.scale)
        weight_scale = np.broadcast_to(np.asarray(weight_qparams.scale, dtype=np.float64), (out_channels,))
        self.accumulator_scale = (input_scale * weight_scale).astype(np.float32)      # S_x S_w per channel
        self.register_buffer("weight", weight_codes)
        self.register_buffer("weight_zero_point",
                             np.broadcast_to(np.asarray(weight_qparams.zero_point, np.int64), (out_channels,)).copy())
        if bias is not None:
            bias = np.rint(np.asarray(bias, np.float64) / (input_scale * weight_scale))
            bias = np.clip(bias, -(1 << 31), (1 << 31) - 1).astype(np.int32)      # q_b = round(b / (S_x S_w))
        self.register_buffer("bias", bias)
        self.input_zero_point, self.relu, self.gemm = int(input_qparams.zero_point), bool(relu), gemm
        self.weight_bits = weight_qparams.bits
        self.output_qparams = output_qparams                       # kept for reports; forward reads the ints below
        self.requantizes = output_qparams is not None
        if self.requantizes:
            if output_qparams.per_channel:
                raise ValueError("integer layers requantize to a per-tensor output grid, got a per-channel one")
            m0, shift = quantize_multiplier(input_scale * weight_scale / np.float64(output_qparams.scale))
            self.register_buffer("multiplier", m0)
            self.register_buffer("shift", shift)
            self.output_zero_point, self.output_dtype = int(output_qparams.zero_point), output_qparams.dtype
            lowest = max(output_qparams.qmin, output_qparams.zero_point) if relu else output_qparams.qmin
            self.output_range = (int(lowest), int(output_qparams.qmax))  # a fused ReLU clamps at z_y, the code of 0.0
        self._weight_columns = None
        self.accumulator, self.overflows, self.additions = None, 0, 0

    def _columns(self) -> np.ndarray:
        """The weight as GEMM right operand (K, out_channels), contiguous; made once."""
        if self._weight_columns is None:
            self._weight_columns = np.ascontiguousarray(self.weight.reshape(self.weight.shape[0], -1).T)
        return self._weight_columns

    def _gemm_and_requantize(self, rows: np.ndarray) -> np.ndarray:
        """rows (R, K) codes → (R, out) int32 accumulator (+ bias), requantized to output codes if a grid is set."""
        if self.accumulator is not None:                                          # simulated narrow register
            bits, overflow = self.accumulator
            acc, count = accumulate_gemm(rows, self._columns(), self.input_zero_point, self.weight_zero_point,
                                         self.bias, bits, overflow)
            self.overflows += count
            self.additions += acc.size * (rows.shape[1] + 1)
            acc = acc.astype(np.int32)
        else:
            acc = GEMMS[self.gemm](rows, self._columns(), self.input_zero_point, self.weight_zero_point)
            if self.bias is not None:
                acc = add_bias_int32(acc, self.bias)
        if not self.requantizes:
            return np.maximum(acc, 0) if self.relu else acc
        codes = requantize(acc, self.multiplier, self.shift, self.output_zero_point, *self.output_range, axis=-1)
        return codes.astype(self.output_dtype)

    def _check_codes(self, codes, ndim):
        codes = np.asarray(codes)
        if codes.dtype.kind not in "iu":
            raise TypeError(f"{type(self).__name__} expects integer codes, got dtype {codes.dtype}")
        if codes.ndim != ndim:
            raise ValueError(f"{type(self).__name__} expects a {ndim}-d array of codes, got shape {codes.shape}")
        return codes


class IntLinear(_IntGemmLayer):
    """q_y = requantize(int_gemm(q_x, q_Wᵀ) + q_b): (N, in) codes → (N, out) codes (or int32 if last)."""

    def forward(self, codes):
        codes = self._check_codes(codes, 2)
        if codes.shape[1] != self.weight.shape[1]:
            raise ValueError(f"IntLinear expects input (N, {self.weight.shape[1]}), got {codes.shape}")
        return self._gemm_and_requantize(codes)

    def extra_repr(self):
        return f"in_features={self.weight.shape[1]}, out_features={self.weight.shape[0]}, relu={self.relu}"


class IntConv2d(_IntGemmLayer):
    """q_y = requantize(int_im2col(q_x, pad = z_x) · q_Wᵀ + q_b), NCHW codes → NCHW codes (or int32 if last)."""

    def __init__(self, *args, stride=1, padding=0, dilation=1, **kwargs):
        super().__init__(*args, **kwargs)
        self.stride, self.padding, self.dilation = _pair(stride, "stride"), _pair(padding, "padding"), \
            _pair(dilation, "dilation")

    def forward(self, codes):
        codes = self._check_codes(codes, 4)
        out_channels, in_channels, kh, kw = self.weight.shape
        if codes.shape[1] != in_channels:
            raise ValueError(f"IntConv2d expects input (N, {in_channels}, H, W), got {codes.shape}")
        n = codes.shape[0]
        rows = int_im2col(codes, (kh, kw), self.stride, self.padding, self.dilation, self.input_zero_point)
        oh = (codes.shape[2] + 2 * self.padding[0] - self.dilation[0] * (kh - 1) - 1) // self.stride[0] + 1
        out = self._gemm_and_requantize(rows)                                       # (N·OH·OW, out)
        return np.ascontiguousarray(out.reshape(n, oh, -1, out_channels).transpose(0, 3, 1, 2))

    def extra_repr(self):
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, kernel_size={self.weight.shape[2:]}, " \
               f"stride={self.stride}, padding={self.padding}, relu={self.relu}"


class IntMaxPool2d(nn.Module):
    """max over each window, on codes (quantization is monotone, so it commutes with max)."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1):
        super().__init__()
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride")
        self.padding, self.dilation = _pair(padding, "padding"), _pair(dilation, "dilation")

    def forward(self, codes):
        return int_max_pool2d(codes, self.kernel_size, self.stride, self.padding, self.dilation)


class IntFlatten(nn.Module):
    """(N, ...) → (N, prod(...)) codes."""

    def forward(self, codes):
        return np.asarray(codes).reshape(len(codes), -1)


class IntGlobalAvgPool2d(nn.Module):
    """Σ over H, W of the last layer's int32 accumulator; the 1/(H·W) goes into the output dequantization."""

    def forward(self, acc):
        acc = np.asarray(acc)
        if acc.dtype != np.int32 or acc.ndim != 4:
            raise TypeError(f"IntGlobalAvgPool2d expects the last layer's (N, C, H, W) int32 accumulator, "
                            f"got {acc.dtype} {acc.shape}")
        total = acc.sum(axis=(2, 3), dtype=np.int64)
        if total.size and np.abs(total).max() > (1 << 31) - 1:
            raise OverflowError("IntGlobalAvgPool2d: the sum leaves int32")
        return total.astype(np.int32)


# ------------------------------------------------------------------------- the integer model
class IntegerModel(nn.Module):
    """x → quantize (input grid) → integer layers → dequantize (scale S_x S_w / divisor per class) → logits."""

    def __init__(self, input_qparams: QParams, layers: list, output_scale: np.ndarray, names: list):
        super().__init__()
        self.input_qparams, self.output_scale, self.names = input_qparams, output_scale, list(names)
        self.layers = nn.Sequential(*layers)

    def quantize_input(self, x) -> np.ndarray:
        return quantize(x.data if isinstance(x, Tensor) else x, self.input_qparams)

    def integer_forward(self, codes, trace: list | None = None) -> np.ndarray:
        """Integer codes in, int32 accumulators out; `trace` (a list) collects each layer's output."""
        codes = np.asarray(codes)
        if codes.dtype.kind not in "iu":
            raise TypeError(f"integer_forward expects integer codes, got dtype {codes.dtype}")
        for layer in self.layers.children():
            codes = layer(codes)
            if trace is not None:
                trace.append(codes)
        return codes

    def dequantize_output(self, acc, count: int = 1) -> np.ndarray:
        """logits = acc · S_x S_w / count (count = H·W when a global average pool summed the accumulators)."""
        return (np.asarray(acc, np.float64) * (self.output_scale / count)).astype(np.float32)

    def logits(self, codes, trace: list | None = None) -> np.ndarray:
        """dequantize_output(integer_forward(codes)), dividing by H·W when a global average pool ends the graph."""
        trace = [] if trace is None else trace
        acc = self.integer_forward(codes, trace)
        pooled = isinstance(list(self.layers.children())[-1], IntGlobalAvgPool2d)
        return self.dequantize_output(acc, int(np.prod(trace[-2].shape[2:])) if pooled else 1)

    def forward(self, x):
        return Tensor(self.logits(self.quantize_input(x)))


def flat_layers(model: nn.Module) -> list:
    """[(name, module)] of the leaves in forward order, through nested Sequentials."""
    if isinstance(model, nn.Sequential) or (type(model) is nn.Module):
        out = []
        for name, child in model.named_children():
            out += [(f"{name}.{n}" if n else name, m) for n, m in flat_layers(child)]
        return out
    return [("", model)]


_SKIPPED = (nn.Identity, nn.Dropout)


def to_integer(model: nn.Module, gemm: str = "numba") -> IntegerModel:
    """The integer-only model of a converted PTQ/QAT Sequential (BatchNorm folded): each QuantLinear/QuantConv2d
    becomes an IntLinear/IntConv2d requantizing to the next layer's input grid, a following ReLU fused."""
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"to_integer expects an nn.Sequential model, got {type(model).__name__}")
    leaves = [(name, m) for name, m in flat_layers(model) if not isinstance(m, _SKIPPED)]
    quant_positions = [i for i, (_, m) in enumerate(leaves) if isinstance(m, _QuantLayer)]
    if not quant_positions:
        raise ValueError("to_integer found no QuantLinear/QuantConv2d: quantize the model first (quantize_ptq)")
    for name, module in leaves[:quant_positions[0]]:
        if not isinstance(module, (nn.Flatten, nn.MaxPool2d)):
            raise ValueError(f"to_integer expects only Flatten/MaxPool2d before the first quantized layer, "
                             f"got {name!r} ({type(module).__name__})")
    layers, names = [], []
    for index, (name, module) in enumerate(leaves):
        if isinstance(module, _QuantLayer):
            following = [p for p in quant_positions if p > index]
            qparams = layer_qparams(module)
            if following and qparams.output is not None:
                raise ValueError(f"layer {name!r}: output quantizers between layers are not supported; "
                                 "quantize only the inputs (the default QConfig)")
            target = layer_qparams(leaves[following[0]][1]).input if following else qparams.output
            between = leaves[index + 1: following[0] if following else len(leaves)]
            relu = any(isinstance(m, nn.ReLU) for _, m in between)
            weight_codes = quantize(module.weight.data, qparams.weight)
            bias = None if module.bias is None else module.bias.data
            args = (weight_codes, qparams.weight, bias, qparams.input, target, relu)
            if isinstance(module, QuantLinear):
                layer = IntLinear(*args, gemm=gemm)
            else:
                if module.groups != 1:
                    raise ValueError(f"layer {name!r}: grouped convolution is not supported by IntConv2d")
                layer = IntConv2d(*args, stride=module.stride, padding=module.padding, dilation=module.dilation,
                                  gemm=gemm)
            last = layer
        elif isinstance(module, nn.ReLU):
            continue                                                     # fused into the layer before it
        elif isinstance(module, nn.MaxPool2d):
            layer = IntMaxPool2d(module.kernel_size, module.stride, module.padding, module.dilation)
        elif isinstance(module, nn.Flatten):
            layer = IntFlatten()
        elif isinstance(module, nn.GlobalAvgPool2d) and index > quant_positions[-1] and not last.requantizes:
            layer = IntGlobalAvgPool2d()
        else:
            raise ValueError(f"to_integer cannot convert layer {name!r} ({type(module).__name__}) at this place")
        layers.append(layer)
        names.append(name)
    if last.requantizes:
        qp = last.output_qparams
        raise ValueError("to_integer: an output quantizer on the last layer is not supported yet "
                         f"(got {qp}); leave QConfig.output None")
    scale = last.accumulator_scale.astype(np.float64)
    return IntegerModel(layer_qparams(leaves[quant_positions[0]][1]).input, layers, scale, names)


def set_accumulator(model: IntegerModel, bits: int | None = None, overflow: str = "wrap") -> IntegerModel:
    """Make every GEMM layer accumulate bias + products in a `bits`-bit register that wraps or saturates
    (tinyq.kernels.accumulate; slow, for experiments), or back to exact int32 with bits=None. Resets the
    layers' overflow and addition counters."""
    for layer in model.layers.children():
        if isinstance(layer, _IntGemmLayer):
            layer.accumulator = None if bits is None else (int(bits), overflow)
            layer.overflows = layer.additions = 0
    return model


# ------------------------------------------------------------------------- size accounting
def stored_bits(model: IntegerModel) -> dict:
    """Bits an integer model stores: {"weights", "biases", "qparams", "total"}.

    weights: codes of ≤ 4 bits packed two per byte, else 8 bits (int8) or 16; biases int32;
    qparams: per output channel an int32 M0, an int8 shift and an int8 weight zero point, per layer the
    input zero point (int8) and, for the model, the input scale (float32) and one float32 output scale
    per class. The float model's size for comparison is 32 bits per parameter.
    """
    weights = biases = qparams = 0
    for layer in model.layers.children():
        if not isinstance(layer, _IntGemmLayer):
            continue
        channels = layer.weight.shape[0]
        weights += layer.weight.size * (4 if layer.weight_bits <= 4 else 8 * layer.weight.dtype.itemsize)
        biases += 0 if layer.bias is None else 32 * layer.bias.size
        qparams += channels * (32 + 8 + 8) + 8
    qparams += 32 + 8 + 32 * np.size(model.output_scale)
    return {"weights": weights, "biases": biases, "qparams": qparams, "total": weights + biases + qparams}
