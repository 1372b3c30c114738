"""Trusted checks of chapter 02 (layers and training): exercises 2.1-2.3."""
from __future__ import annotations

import numpy as np

from tinyq.grading.checks import Check, register
from tinyq.grading.checks._draw import small_integers

HERE = "tinyq.grading.checks.ch02"


# ---- 2.1 im2col: the patch view, compared element by element (exact: it only moves values)
def draw_im2col(rng):
    kh, kw = (int(v) for v in rng.integers(1, 4, size=2))
    sh, sw = (int(v) for v in rng.integers(1, 3, size=2))
    dh, dw = (int(v) for v in rng.integers(1, 3, size=2))
    h = dh * (kh - 1) + 1 + int(rng.integers(0, 6))
    w = dw * (kw - 1) + 1 + int(rng.integers(0, 6))
    n, c = (int(v) for v in rng.integers(1, 3, size=2))
    return {"x": small_integers(rng, (n, c, h, w), -50, 50), "kernel": np.array([kh, kw]),
            "stride": np.array([sh, sw]), "dilation": np.array([dh, dw])}


def probe_im2col(x, kernel, stride, dilation):
    from tinyq.convolution import im2col
    pair = lambda v: (int(v[0]), int(v[1]))
    cols = im2col(x.copy(), pair(kernel), pair(stride), pair(dilation))
    return {"cols": np.ascontiguousarray(cols)}


# ---- 2.2 log_softmax backward, called directly
def draw_log_softmax(rng):
    rows, classes = (int(v) for v in rng.integers(1, 7, size=2))
    scale = float(rng.choice([0.5, 3.0, 30.0]))
    return {"logits": rng.standard_normal((rows, classes)) * scale,
            "grad": rng.standard_normal((rows, classes)), "axis": int(rng.choice([0, 1, -1]))}


def probe_log_softmax(logits, grad, axis):
    from tinyq import ops
    from tinyq.tensor import Tensor
    ctx = ops.LogSoftmax()
    ctx.inputs = (Tensor(logits.copy(), requires_grad=True),)
    ops.LogSoftmax.forward(ctx, logits.copy(), axis=axis)
    result = ops.LogSoftmax.backward(ctx, grad.copy())
    result = result[0] if isinstance(result, tuple) else result
    return {"grad_logits": np.asarray(result)}


# ---- 2.3 SGD with momentum (and Nesterov, weight decay) over a few steps
def draw_sgd(rng):
    steps, size = int(rng.integers(1, 6)), int(rng.integers(1, 8))
    return {"param": rng.standard_normal(size), "grads": rng.standard_normal((steps, size)),
            "lr": float(rng.choice([0.01, 0.1, 0.5])), "momentum": float(rng.choice([0.5, 0.9, 0.99])),
            "nesterov": bool(rng.random() < 0.5), "weight_decay": float(rng.choice([0.0, 0.0, 1e-2]))}


def probe_sgd(param, grads, lr, momentum, nesterov, weight_decay):
    from tinyq import optim
    from tinyq.nn import Parameter
    p = Parameter(param.copy())
    opt = optim.SGD([p], lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    trajectory = []
    for grad in grads:
        p.grad = grad.copy()
        opt.step()
        trajectory.append(np.array(p.data, dtype=np.float64))
    return {"trajectory": np.stack(trajectory)}


register(Check(exercise="2.1", draw=f"{HERE}:draw_im2col", probe=f"{HERE}:probe_im2col", cases=6))
register(Check(exercise="2.2", draw=f"{HERE}:draw_log_softmax", probe=f"{HERE}:probe_log_softmax",
               rtol=1e-9, atol=1e-12, cases=4))
register(Check(exercise="2.3", draw=f"{HERE}:draw_sgd", probe=f"{HERE}:probe_sgd", rtol=1e-9, atol=1e-12, cases=5))
