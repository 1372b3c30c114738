"""autocast: run matmul / linear / conv in a low-precision format, everything numerically delicate in fp32.

Inside `with amp.autocast("float16"):` every op follows one printed policy (`print(policy_table("fp16"))`):

    low precision   MatMul, Linear, Conv2d: the tensor-core recipe of DESIGN.md,
                        y = round_fmt( sum_k round_fmt(a_k) round_fmt(b_k) )   products exact, fp32 sum
                    and in backward every gradient is produced in the format:
                        dL/dy -> round_grad(dL/dy),  dL/da -> round_grad(dL/da), dL/dW -> round_grad(dL/dW)
    fp32            log_softmax (softmax, cross_entropy, nll), exp, log, pow, sqrt, sum, mean, var
                    (reductions, losses, BatchNorm statistics), average pooling: inputs cast to float32
    as the inputs   everything else (add, mul, relu, max_pool2d, reshape, ...); float32 if they mix

The parameters stay float32 (the fp32 master weights): each low-precision op rounds its
weight on use, and hands the weight's gradient back in float32 holding format values,
which the LossScaler unscales in fp32 before the fp32 update.

Storage: the rounded tensors are float32 arrays holding grid values (also for fp16), so the
core's dtype rules never see two dtypes meet; the numerics are those of fp16 storage for
every op in the low-precision list, and ReLU and max-pooling are exact in any format.

"fp8" means e4m3 forward and e5m2 gradients, each with per-tensor scaling: before rounding,
a tensor is multiplied by s = 2^floor(log2(max_fmt / amax)) (a power of two, so exact) and
divided by s after, which puts its largest element near the top of the format's range.

The hook: autocast is a *function mode* (tinyq.function.FunctionMode): while it is active,
every Function.apply(*inputs) becomes mode(function, apply, *inputs, **options); the core
knows nothing of amp.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np

from tinyq import convolution, ops, shape_ops
from tinyq.formats import floats
from tinyq.formats.floats import FloatFormat
from tinyq.function import Function, FunctionMode
from tinyq.lowp import KEEP_FORMATS, round_array
from tinyq.tensor import Tensor

LOW_PRECISION_OPS = (ops.MatMul, ops.VectorMatMul, ops.Linear, convolution.Conv2d)
FP32_OPS = (ops.LogSoftmax, ops.Exp, ops.Log, ops.Pow, ops.Sqrt, shape_ops.Sum, shape_ops.Mean, shape_ops.Var,
            convolution.AvgPool2d, convolution.AdaptiveAvgPool2d)
INPUT_ROLES = {ops.Linear: ("input", "weight", "bias"), convolution.Conv2d: ("input", "weight", "bias"),
               ops.MatMul: ("left", "right"), ops.VectorMatMul: ("left", "right")}

# name -> (forward format, gradient format, per-tensor scaling)
RECIPES = {
    "float16": (floats.FP16, floats.FP16, False),
    "bf16": (floats.BF16, floats.BF16, False),
    "fp8": (floats.FP8_E4M3, floats.FP8_E5M2, True),
}
ALIASES = {"fp16": "float16", "half": "float16", "bfloat16": "bf16", "fp8_e4m3": "fp8"}


def recipe(dtype) -> tuple[str, FloatFormat, FloatFormat, bool]:
    """(name, forward format, gradient format, per-tensor scaling) for "float16" | "bf16" | "fp8" (or a format)."""
    if isinstance(dtype, FloatFormat):
        name = {floats.FP16: "float16", floats.BF16: "bf16", floats.FP8_E4M3: "fp8"}.get(dtype)
    elif dtype is np.float16 or (isinstance(dtype, np.dtype) and dtype == np.float16):
        name = "float16"
    elif isinstance(dtype, str):
        name = ALIASES.get(dtype.lower(), dtype.lower())
    else:
        name = None
    if name not in RECIPES:
        raise ValueError(f"autocast dtype must be one of {sorted(RECIPES)} (or fp16, bfloat16, floats.FP16, "
                         f"floats.BF16, floats.FP8_E4M3), got {dtype!r}")
    return (name, *RECIPES[name])


def policy_table(dtype="float16") -> str:
    """The op policy of autocast(dtype), one line per class of ops."""
    name, fmt, grad_fmt, per_tensor = recipe(dtype)
    scaled = ", per-tensor scaled" if per_tensor else ""
    low = ", ".join(cls.__name__ for cls in LOW_PRECISION_OPS)
    fp32 = ", ".join(cls.__name__ for cls in FP32_OPS)
    return "\n".join([
        f"autocast({name}) op policy",
        f"  {fmt.name:>9}  {low}: inputs and output rounded to {fmt.name}{scaled}, fp32 accumulation; "
        f"gradients rounded to {grad_fmt.name}{scaled}",
        f"  {'fp32':>9}  {fp32}: inputs cast to float32 (softmax, losses, reductions, BatchNorm statistics)",
        f"  {'as input':>9}  every other op (add, mul, relu, max_pool2d, reshape, ...): float32 if dtypes mix",
        "  weights: float32 masters, rounded on use; their gradients come back as float32 arrays"])


def per_tensor_scale(amax: float, fmt: FloatFormat) -> float:
    """s = 2^floor(log2(max_fmt / amax)): the power of two putting amax into the format's top binade."""
    if not math.isfinite(amax) or amax <= 0:
        return 1.0
    return float(2.0 ** math.floor(math.log2(fmt.max / amax)))


def round_scaled(a: np.ndarray, fmt: FloatFormat, per_tensor: bool) -> tuple[np.ndarray, float]:
    """(round_fmt(a · s) / s, s) in float32 with s = per_tensor_scale(max|a|) (s = 1 without scaling)."""
    a = np.asarray(a, dtype=np.float32)
    s = per_tensor_scale(float(np.max(np.abs(a))) if a.size else 0.0, fmt) if per_tensor else 1.0
    with np.errstate(over="ignore", invalid="ignore"):
        rounded = round_array(a * np.float32(s) if s != 1.0 else a, fmt).astype(np.float32)
        return (rounded / np.float32(s) if s != 1.0 else rounded), s


class FormatCast(Function):
    """forward: y = round_fmt(x);  backward: dL/dx = round_grad_fmt(dL/dy) (each optionally per-tensor scaled).

    The result is a plain float32 array holding grid values (no `fmt` tag).
    """

    @staticmethod
    def forward(ctx, a, *, fmt, grad_fmt, per_tensor, record):
        ctx.in_dtype, ctx.grad_fmt, ctx.per_tensor, ctx.record = a.dtype, grad_fmt, per_tensor, record
        return round_scaled(a, fmt, per_tensor)[0]

    @staticmethod
    def backward(ctx, grad):                       # the gradient is produced in grad_fmt
        rounded, s = round_scaled(grad, ctx.grad_fmt, ctx.per_tensor)
        if ctx.record is not None:
            ctx.record(np.asarray(grad, dtype=np.float32) * np.float32(s), ctx.grad_fmt)
        return rounded.astype(ctx.in_dtype, copy=False)


KEEP_FORMATS.leaves_format.add(FormatCast)   # an explicit conversion: lowp's format-keeping mode lets it be


def _is_low_or_wide(t) -> bool:
    return isinstance(t, Tensor) and (t.dtype == np.float16 or t.fmt is not None)


def _to_fp32(t):
    return ops.cast(t, np.float32) if _is_low_or_wide(t) else t


class Autocast(FunctionMode):
    """The function mode behind `autocast`: routes each Function.apply by the op policy.

    While it runs it is off the mode stack (FunctionMode's contract), so the casts and the real
    op it calls do not come back to it.
    """

    def __init__(self, dtype="float16", statistics=None):
        self.name, self.fmt, self.grad_fmt, self.per_tensor = recipe(dtype)
        self.statistics = statistics
        self.calls = 0             # low-precision ops seen so far: names layers "0.Conv2d", "1.Linear", ...

    def __call__(self, function_cls, apply, *args, **kwargs):
        if issubclass(function_cls, LOW_PRECISION_OPS):
            return self._low_precision(function_cls, apply, args, kwargs)
        if issubclass(function_cls, FP32_OPS):
            return apply(*[_to_fp32(a) for a in args], **kwargs)
        floats_in = {(a.dtype, a.fmt) for a in args if isinstance(a, Tensor) and a.dtype.kind == "f"}
        if len(floats_in) > 1:                     # mixed precisions promote to float32
            args = [_to_fp32(a) for a in args]
        return apply(*args, **kwargs)

    def _cast(self, t, fmt, layer, role):
        record = None
        if self.statistics is not None:
            def record(grad, grad_fmt, _layer=layer, _role=role):
                self.statistics.record(_layer, _role, grad, grad_fmt)
        return FormatCast.apply(t, fmt=fmt, grad_fmt=self.grad_fmt, per_tensor=self.per_tensor, record=record)

    def _low_precision(self, function_cls, apply, args, kwargs):
        layer = f"{self.calls}.{function_cls.__name__}"
        self.calls += 1
        roles = INPUT_ROLES.get(function_cls, ())
        cast = [self._cast(a, self.fmt, layer, roles[i] if i < len(roles) else f"arg{i}")
                if isinstance(a, Tensor) and a.dtype.kind == "f" else a for i, a in enumerate(args)]
        out = apply(*cast, **kwargs)               # fp32 arithmetic on grid values: exact products, fp32 sum
        return self._cast(out, self.fmt, layer, "output")

    def __str__(self) -> str:
        return policy_table(self.name)


@contextlib.contextmanager
def autocast(dtype="float16", *, statistics=None, enabled: bool = True):
    """with autocast("float16" | "bf16" | "fp8", statistics=None): ops follow `policy_table(dtype)`.

    statistics: a GradientStatistics that records each gradient just before it is rounded.
    enabled=False runs the block in plain fp32 (handy to switch one flag in a training loop).
    """
    mode = Autocast(dtype, statistics=statistics)
    if not enabled:
        yield None
        return
    with mode:
        yield mode
