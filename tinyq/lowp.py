"""Low-precision tensors and ops: fp16 (native float16 storage), bf16 / fp8 (simulated on float32).

A tensor "in a format" holds only values of that format's grid:

    FP16          NumPy float16 storage; NumPy's float16 arithmetic already rounds every
                  elementwise result back to fp16, so the grid keeps itself.
    BF16, FP8_*   float32 storage holding grid values, the format recorded in `t.fmt`.
                  Every op on such tensors (t + u, F.relu, t.sum(), ...) computes in
                  float32 and rounds its result back onto the grid (nearest-even), and
                  the result carries the format. The autograd core knows nothing of
                  this: the `KeepFormats` function mode below does it around each
                  Function.apply (see tinyq/function.py), installed the first time a
                  tensor enters a simulated format. Gradients stay float32. Mixing a
                  format with a plain float32 tensor (or another format) is a TypeError:
                  convert with .to(...). `keep_grid` / `rounded(op)` round explicitly,
                  e.g. with stochastic rounding or onto another format.

Matmul and convolution follow the tensor-core recipe of DESIGN.md:

    C = round_out( sum_k round_in(A[i,k]) · round_in(B[k,j]) ),   products exact,
    the sum accumulated in fp32 (accumulate="fp32") or, to show why it is worse,
    in a low-precision register rounded after every addition (accumulate="fp16"
    or a FloatFormat): s_k = round_acc(s_{k-1} + p_k), k = 1..K in order.

Rounding is not differentiable (its derivative is 0 almost everywhere), so every
rounding step here passes the gradient straight through (d round(x)/dx := 1, the
straight-through estimator), including at saturated values.
"""
from __future__ import annotations

import numpy as np

from tinyq import convolution, ops
from tinyq.formats import floats
from tinyq.formats.floats import FloatFormat, check_format
from tinyq.function import Function, FunctionMode, install_mode, needs_grad, unbroadcast
from tinyq.tensor import Tensor

ACCUMULATORS = ("fp32", "fp16")


# ------------------------------------------------------------------ formats and storage
def storage_dtype(fmt: FloatFormat) -> np.dtype:
    """The NumPy float dtype that stores a float format: float16 for FP16 (NumPy has it), float32 for every
    other format (fp32 itself, or simulated). (The integer dtype of b-bit codes is affine.code_dtype.)"""
    return np.dtype(np.float16) if fmt == floats.FP16 else np.dtype(np.float32)


def is_simulated(fmt: FloatFormat) -> bool:
    """True when fmt lives in float32 storage with `t.fmt` set (everything but fp16 and fp32)."""
    return fmt not in (floats.FP16, floats.FP32)


def round_array(a: np.ndarray, fmt: FloatFormat, mode: str = "nearest",
                rng: np.random.Generator | None = None) -> np.ndarray:
    """round_to(a, fmt) in fmt's storage dtype (float16 for FP16, else float32); exact conversion."""
    if mode == "nearest" and fmt == floats.FP16:
        return np.asarray(a).astype(np.float16)   # NumPy's float16 conversion is round-to-nearest-even
    return floats.round_to(a, fmt, mode=mode, rng=rng).astype(storage_dtype(fmt), copy=False)


def on_grid(a, fmt: FloatFormat) -> bool:
    """round(a) == a for every element (NaN counts as on the grid)."""
    data = a.data if isinstance(a, Tensor) else np.asarray(a)
    return bool(np.array_equal(floats.round_to(data, fmt), data.astype(np.float32), equal_nan=True))


def _format_of(t: Tensor):
    """The format t's values live on: t.fmt, FP16 for float16 storage, else None."""
    if t.fmt is not None:
        return t.fmt
    return floats.FP16 if t.dtype == np.float16 else None


def _tag(out: Tensor, fmt: FloatFormat) -> Tensor:
    if is_simulated(fmt):
        install_mode(KEEP_FORMATS)      # from the first simulated tensor on, ops keep formats
        out.fmt = fmt
    else:
        out.fmt = None
    return out


# ------------------------------------------------------------------ ops keep the format
class KeepFormats(FunctionMode):
    """The elementwise rule as a function mode: f(a, b) on tensors of format F = round_F(f(a, b)), tagged F.

    Functions in `leaves_format` (explicit conversions, and the low-precision Functions
    below that round by themselves) pass through untouched. Rounding is straight-through:
    it changes the forward value, never the gradient.
    """

    def __init__(self, leaves_format=()):
        self.leaves_format = set(leaves_format)

    def __call__(self, function, apply, *inputs, **options):
        fmt = next((t.fmt for t in inputs if isinstance(t, Tensor) and t.fmt is not None), None)
        if fmt is None or function in self.leaves_format:
            return apply(*inputs, **options)
        for t in inputs:
            if isinstance(t, Tensor) and t.data.dtype.kind == "f" and t.fmt != fmt:
                raise TypeError(f"{function.__name__} expects tensors of one number format, got {fmt.name} and "
                                f"{t.fmt.name if t.fmt is not None else t.data.dtype}; convert one explicitly "
                                f"with .to(...)")
        out = apply(*inputs, **options)
        if out.data.dtype == np.float32:
            out.data = floats.round_to(out.data, fmt)
        out.fmt = fmt
        return out


# ------------------------------------------------------------------ rounding a tensor
class RoundToFormat(ops.StraightThroughRound):
    """forward: round(x) onto fmt's grid;  backward: the identity (the straight-through estimator, no mask)."""

    @staticmethod
    def forward(ctx, a, *, fmt, mode, rng):
        return ops.StraightThroughRound.forward(ctx, a, round=lambda x: round_array(x, fmt, mode, rng))


def to_format(t, fmt: FloatFormat, mode: str = "nearest", rng: np.random.Generator | None = None) -> Tensor:
    """t' = round(t) on fmt's grid: float16 storage for FP16, float32 with t'.fmt = fmt for bf16/fp8.

    mode "nearest" (ties to even) or "stochastic" (needs rng). Differentiable with the
    straight-through gradient: d t'/d t = 1, handed back in t's dtype. This is what
    `t.to(floats.BF16)` calls.
    """
    if not isinstance(t, Tensor):
        raise TypeError(f"to_format expects a Tensor, got {type(t).__name__}")
    fmt = check_format(fmt, "to_format")
    if t.dtype.kind != "f":
        raise TypeError(f"to_format expects a float tensor, got dtype {t.dtype}")
    return _tag(RoundToFormat.apply(t, fmt=fmt, mode=mode, rng=rng), fmt)


def keep_grid(t: Tensor, fmt: FloatFormat | None = None, mode: str = "nearest",
              rng: np.random.Generator | None = None) -> Tensor:
    """t' = round(t) onto fmt (default: t's own format); the result of an op put back on the grid."""
    fmt = fmt if fmt is not None else _format_of(t)
    if fmt is None:
        raise ValueError("keep_grid needs a format: the tensor has none (fmt=None, not float16); pass fmt=")
    return to_format(t, fmt, mode, rng)


def rounded(op, fmt: FloatFormat | None = None, mode: str = "nearest", rng: np.random.Generator | None = None):
    """rounded(op)(*args) = round(op(*args)) onto the format of its Tensor arguments (or fmt).

    The elementwise rule: an op on tensors in a format computes in float32 and rounds
    its result once, e.g. `lowp.rounded(ops.add)(a, b)` or `lowp.rounded(F.relu)(x)`.
    All formatted Tensor arguments must share one format; if none has a format (and
    fmt is None) the result is returned unrounded.
    """
    def op_then_round(*args, **kwargs):
        target = fmt
        if target is None:
            found = {_format_of(a) for a in args if isinstance(a, Tensor)} - {None}
            if len(found) > 1:
                raise ValueError(f"rounded({getattr(op, '__name__', op)}) got tensors in different formats "
                                 f"{sorted(f.name for f in found)}; convert them to one with .to(fmt)")
            target = found.pop() if found else None
        out = op(*args, **kwargs)
        return out if target is None else to_format(out, target, mode, rng)
    op_then_round.__name__ = f"rounded_{getattr(op, '__name__', 'op')}"
    op_then_round.__doc__ = f"round({getattr(op, '__name__', 'op')}(...)) onto the inputs' format"
    return op_then_round


# ------------------------------------------------------------------ the GEMM
def _accumulator(accumulate) -> FloatFormat | None:
    """None for fp32 accumulation (BLAS on float32), else the FloatFormat of the running sum."""
    if isinstance(accumulate, FloatFormat):
        return None if accumulate == floats.FP32 else accumulate
    if accumulate == "fp32":
        return None
    if accumulate == "fp16":
        return floats.FP16
    raise ValueError(f"accumulate must be one of {ACCUMULATORS} or a FloatFormat, got {accumulate!r}")


def add_rounded(s: np.ndarray, p: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """round_fmt(s + p) of the exact sum, for float64 s, p (result float64 on fmt's grid).

    float64 may round s + p itself (when the exponents of s and p are far apart), and
    rounding twice can go wrong in one case only: when fl(s + p) lands exactly on a
    midpoint of fmt's grid, the tie is broken by what float64 dropped. So we keep what
    it dropped (TwoSum: hi + lo = s + p exactly) and break such ties by the sign of lo.
    """
    hi = s + p
    virtual = hi - s
    lo = (s - (hi - virtual)) + (p - virtual)                      # Knuth's TwoSum: the exact error of hi
    nearest = round_array(hi, fmt).astype(np.float64)
    mirror = hi + (hi - nearest)                                    # the other neighbour if hi is a midpoint
    with np.errstate(invalid="ignore"):
        is_tie = (lo != 0) & (nearest != hi) & np.isfinite(mirror) & \
            (round_array(np.where(np.isfinite(mirror), mirror, 0.0), fmt).astype(np.float64) == mirror)
        toward_mirror = (mirror - hi) * lo > 0
    return np.where(is_tie & toward_mirror, mirror, nearest)


def gemm(a: np.ndarray, b: np.ndarray, acc_fmt: FloatFormat | None, bias: np.ndarray | None = None) -> np.ndarray:
    """s = sum_k a[..., i, k] b[..., k, j] (+ bias) with on-grid inputs; float32 result, not yet rounded.

    acc_fmt None: fp32 accumulation (one float32 BLAS matmul; products of two formats with
    <= 11 significand bits are exact in fp32, the order of the additions is BLAS's).
    acc_fmt a format: the running sum is rounded to it after each addition, k in order:
    s_k = round(s_{k-1} + a_k b_k), each sum rounded once from its exact value (the
    product is exact in float64, the sum by `add_rounded`). The bias is the last addition.
    """
    if acc_fmt is None:
        out = np.matmul(a.astype(np.float32, copy=False), b.astype(np.float32, copy=False))
        return out if bias is None else out + bias.astype(np.float32)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    total = np.zeros(np.broadcast_shapes(a.shape[:-1] + (1,), b.shape[:-2] + (1, b.shape[-1])), dtype=np.float64)
    with np.errstate(over="ignore"):               # an overflowing accumulator becomes inf, as in hardware
        for k in range(a.shape[-1]):
            total = add_rounded(total, a64[..., k:k + 1] * b64[..., k:k + 1, :], acc_fmt)
        if bias is not None:
            total = add_rounded(total, np.broadcast_to(bias.astype(np.float64), total.shape), acc_fmt)
    return total.astype(np.float32)


def _options(fmt, accumulate, out_fmt, grad_fmt, who):
    fmt = check_format(fmt, who)
    out_fmt = fmt if out_fmt is None else check_format(out_fmt, who)
    grad_fmt = fmt if grad_fmt is None else check_format(grad_fmt, who)
    return fmt, _accumulator(accumulate), out_fmt, grad_fmt


class LowpMatMul(Function):
    """C = round_out(sum_k round(A) round(B));  dA = round_g(round_g(dC) round(B)^T), dB likewise."""

    @staticmethod
    def forward(ctx, a, b, *, fmt, acc_fmt, out_fmt, grad_fmt):
        a_in, b_in = round_array(a, fmt), round_array(b, fmt)
        ctx.save_for_backward(a_in, b_in)
        ctx.dtypes, ctx.acc_fmt, ctx.grad_fmt = (a.dtype, b.dtype), acc_fmt, grad_fmt
        return round_array(gemm(a_in, b_in, acc_fmt), out_fmt)

    @staticmethod
    def backward(ctx, grad):                       # the same low-precision GEMM, in grad_fmt
        a_in, b_in = ctx.saved_tensors
        g = round_array(grad, ctx.grad_fmt)
        grad_a = grad_b = None
        if needs_grad(ctx, 0):
            grad_a = round_array(gemm(g, np.swapaxes(b_in, -1, -2), ctx.acc_fmt), ctx.grad_fmt)
            grad_a = unbroadcast(grad_a, a_in.shape).astype(ctx.dtypes[0], copy=False)
        if needs_grad(ctx, 1):
            grad_b = round_array(gemm(np.swapaxes(a_in, -1, -2), g, ctx.acc_fmt), ctx.grad_fmt)
            grad_b = unbroadcast(grad_b, b_in.shape).astype(ctx.dtypes[1], copy=False)
        return grad_a, grad_b


def lowp_matmul(a, b, fmt: FloatFormat, accumulate="fp32", out_fmt: FloatFormat | None = None,
                grad_fmt: FloatFormat | None = None) -> Tensor:
    """C = round_out( sum_k round_fmt(A[i,k]) · round_fmt(B[k,j]) ), accumulated as `accumulate`.

    a (..., M, K), b (..., K, N): Tensors or arrays of any float dtype (rounded here).
    accumulate  "fp32" (tensor-core style), "fp16", or any FloatFormat for the running sum.
    out_fmt     format of C (default fmt): float16 storage for FP16, else float32 with C.fmt set.
    grad_fmt    backward runs the same GEMM: dC rounded to grad_fmt (default fmt), dA = dC B^T
                and dB = A^T dC accumulated as in forward and rounded to grad_fmt; each
                gradient is handed back in its input's dtype. (The rounding of A and B is
                passed straight through.) Use grad_fmt=floats.FP32 for fp32 gradients.
    """
    fmt, acc_fmt, out_fmt, grad_fmt = _options(fmt, accumulate, out_fmt, grad_fmt, "lowp_matmul")
    arrays = [x.data if isinstance(x, Tensor) else np.asarray(x) for x in (a, b)]
    if any(x.dtype.kind != "f" for x in arrays):
        raise TypeError(f"lowp_matmul expects float operands, got {arrays[0].dtype} and {arrays[1].dtype}")
    if arrays[0].ndim < 2 or arrays[1].ndim < 2 or arrays[0].shape[-1] != arrays[1].shape[-2]:
        raise ValueError(f"lowp_matmul expects (..., M, K) @ (..., K, N), got {arrays[0].shape} @ {arrays[1].shape}")
    out = LowpMatMul.apply(a, b, fmt=fmt, acc_fmt=acc_fmt, out_fmt=out_fmt, grad_fmt=grad_fmt)
    return _tag(out, out_fmt)


# ------------------------------------------------------------------ convolution
def _patches(xp, kernel, stride, dilation, groups):
    """im2col rows: (G, N*OH*OW, C/G*KH*KW) and the output size (OH, OW)."""
    n, c = xp.shape[:2]
    windows = convolution.im2col(xp, kernel, stride, dilation)          # (N, C, OH, OW, KH, KW)
    oh, ow = windows.shape[2:4]
    cols = windows.reshape(n, groups, c // groups, oh, ow, *kernel).transpose(1, 0, 3, 4, 2, 5, 6) \
        .reshape(groups, n * oh * ow, (c // groups) * kernel[0] * kernel[1])
    return cols, (oh, ow)


class LowpConv2d(Function):
    """out = round_out(sum_{c,i,j} round(w) round(x) + round(b)): conv2d as one low-precision GEMM."""

    @staticmethod
    def forward(ctx, x, weight, bias=None, *, fmt, acc_fmt, out_fmt, grad_fmt, stride, padding, dilation, groups):
        n = x.shape[0]
        out_channels, c_per_group, kh, kw = weight.shape
        x_in, w_in = round_array(x, fmt), round_array(weight, fmt)
        xp = np.pad(x_in, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
        cols, (oh, ow) = _patches(xp, (kh, kw), stride, dilation, groups)
        w_rows = w_in.reshape(groups, out_channels // groups, c_per_group * kh * kw)
        b_in = None if bias is None else round_array(bias, fmt).reshape(groups, 1, out_channels // groups)
        acc = gemm(cols, w_rows.transpose(0, 2, 1), acc_fmt, b_in)            # (G, N*OH*OW, O/G)
        out = acc.reshape(groups, n, oh, ow, out_channels // groups).transpose(1, 0, 4, 2, 3) \
            .reshape(n, out_channels, oh, ow)
        ctx.save_for_backward(cols, w_rows)
        ctx.geometry = (xp.shape, (kh, kw), (oh, ow), stride, padding, dilation, groups)
        ctx.dtypes = (x.dtype, weight.dtype, None if bias is None else bias.dtype)
        ctx.acc_fmt, ctx.grad_fmt = acc_fmt, grad_fmt
        return round_array(out, out_fmt)

    @staticmethod
    def backward(ctx, grad):                       # the transposed GEMMs, rounded to grad_fmt
        cols, w_rows = ctx.saved_tensors
        xp_shape, (kh, kw), (oh, ow), stride, padding, dilation, groups = ctx.geometry
        n, c = xp_shape[:2]
        out_channels = grad.shape[1]
        g = round_array(grad, ctx.grad_fmt)
        g_rows = g.reshape(n, groups, out_channels // groups, oh, ow).transpose(1, 0, 3, 4, 2) \
            .reshape(groups, n * oh * ow, out_channels // groups)
        grad_x = grad_w = grad_b = None
        if needs_grad(ctx, 1):
            grad_w = round_array(gemm(g_rows.transpose(0, 2, 1), cols, ctx.acc_fmt), ctx.grad_fmt)
            grad_w = grad_w.reshape(out_channels, c // groups, kh, kw).astype(ctx.dtypes[1], copy=False)
        if needs_grad(ctx, 2):
            grad_b = round_array(g.astype(np.float32).sum(axis=(0, 2, 3)), ctx.grad_fmt).astype(ctx.dtypes[2])
        if needs_grad(ctx, 0):
            grad_cols = gemm(g_rows, w_rows, ctx.acc_fmt)                     # (G, N*OH*OW, C/G*KH*KW)
            grad_cols = grad_cols.reshape(groups, n, oh, ow, c // groups, kh, kw) \
                .transpose(1, 0, 4, 2, 3, 5, 6).reshape(n, c, oh, ow, kh, kw)
            grad_xp = convolution.col2im(grad_cols, xp_shape, stride, dilation)   # overlaps add in fp32
            grad_x = round_array(grad_xp[:, :, padding[0]: xp_shape[2] - padding[0],
                                         padding[1]: xp_shape[3] - padding[1]], ctx.grad_fmt)
            grad_x = grad_x.astype(ctx.dtypes[0], copy=False)
        return grad_x, grad_w, grad_b


def lowp_conv2d(x, weight, bias=None, fmt: FloatFormat = floats.FP16, stride=1, padding=0, dilation=1, groups=1,
                accumulate="fp32", out_fmt: FloatFormat | None = None, grad_fmt: FloatFormat | None = None) -> Tensor:
    """out = round_out( sum_{c,i,j} round(w[o,c,i,j]) round(x[n,c,..]) + round(b[o]) ): conv2d in a format.

    NCHW input, OIHW weight (as `tinyq.functional.conv2d`). The convolution is one GEMM of
    the im2col patches with the weight rows, computed by `gemm` with the same accumulate /
    out_fmt / grad_fmt rules as `lowp_matmul`; the bias is added into the accumulator last.
    Backward: dW and dX by the transposed GEMMs (col2im adds overlapping patches in fp32),
    db = sum of dC in fp32; each rounded to grad_fmt and returned in its input's dtype.
    """
    fmt, acc_fmt, out_fmt, grad_fmt = _options(fmt, accumulate, out_fmt, grad_fmt, "lowp_conv2d")
    stride, padding = convolution._pair(stride, "stride"), convolution._pair(padding, "padding")
    dilation = convolution._pair(dilation, "dilation")
    shapes = {name: (t.shape if t is not None else None) for name, t in (("x", x), ("weight", weight))}
    if len(shapes["x"]) != 4 or len(shapes["weight"]) != 4:
        raise ValueError(f"lowp_conv2d expects x (N, C, H, W) and weight (O, C/groups, KH, KW), "
                         f"got {shapes['x']} and {shapes['weight']}")
    out_channels, c_per_group, kh, kw = weight.shape
    if x.shape[1] != c_per_group * groups or out_channels % groups:
        raise ValueError(f"lowp_conv2d expects x with {c_per_group * groups} channels and out_channels divisible "
                         f"by groups={groups}, got x {x.shape} and weight {weight.shape}")
    if bias is not None and tuple(bias.shape) != (out_channels,):
        raise ValueError(f"lowp_conv2d expects bias ({out_channels},), got {tuple(bias.shape)}")
    h, w = x.shape[2] + 2 * padding[0], x.shape[3] + 2 * padding[1]
    if convolution.output_size(h, kh, stride[0], dilation[0]) < 1 or \
            convolution.output_size(w, kw, stride[1], dilation[1]) < 1:
        raise ValueError(f"lowp_conv2d: kernel {(kh, kw)} does not fit the padded input {(h, w)}")
    args = (x, weight) if bias is None else (x, weight, bias)
    out = LowpConv2d.apply(*args, fmt=fmt, acc_fmt=acc_fmt, out_fmt=out_fmt, grad_fmt=grad_fmt,
                           stride=stride, padding=padding, dilation=dilation, groups=groups)
    return _tag(out, out_fmt)


KEEP_FORMATS = KeepFormats(leaves_format=(ops.Cast, RoundToFormat, LowpMatMul, LowpConv2d))
ops.register_conversion(FloatFormat, to_format)      # t.to(floats.BF16) rounds onto the format
