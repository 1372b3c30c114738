"""The fused BatchNorm Function: against the composite of ops, finite differences, PyTorch, and bf16/fp8 rounding."""
import numpy as np
import pytest

import tinyq as tq
from tinyq import nn, ops
from tinyq.formats import floats
from tinyq.gradcheck import gradcheck, gradcheck_function
from tinyq.normalization import BatchNorm, batch_norm


def composite_batch_norm(x, weight, bias, running_mean=None, running_var=None, eps=1e-5):
    """The pre-fusion BatchNorm: ~10 graph nodes of mean, var, sub, add, sqrt, div, mul, reshape."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    if running_mean is None:
        mean, var = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
        x_hat = (x - mean) / ops.sqrt(var + eps)
    else:
        mean = running_mean.reshape(shape).astype(x.dtype)
        inv_std = (1.0 / np.sqrt(running_var + eps)).reshape(shape).astype(x.dtype)
        x_hat = (x - mean) * inv_std
    return x_hat * ops.reshape(weight, shape) + ops.reshape(bias, shape)


def _inputs(rng, shape, dtype=np.float32):
    c = shape[1]
    x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
    return x, (rng.standard_normal(c) + 1).astype(dtype), rng.standard_normal(c).astype(dtype), \
        rng.standard_normal(c).astype(np.float32), (rng.random(c) + 0.5).astype(np.float32)


@pytest.mark.parametrize("shape", [(16, 3, 5, 4), (12, 4), (6, 5, 7)])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_fused_equals_composite_values_and_gradients(shape, mode):
    rng = np.random.default_rng(0)
    x, w, b, rm, rv = _inputs(rng, shape)
    g = rng.standard_normal(shape).astype(np.float32)
    results = []
    for fn in (batch_norm, composite_batch_norm):
        tensors = [tq.tensor(a, requires_grad=True) for a in (x, w, b)]
        running = (rm, rv) if mode == "eval" else (None, None)
        out = fn(*tensors, *running)
        (out * tq.tensor(g)).sum().backward()
        results.append([out.data] + [t.grad for t in tensors])
    for fused, composite in zip(*results):
        assert fused.dtype == np.float32
        np.testing.assert_allclose(fused, composite, rtol=1e-5, atol=1e-5)


def test_fused_batchnorm_is_one_graph_node():
    x = tq.tensor(np.random.default_rng(1).standard_normal((4, 3, 2, 2)).astype(np.float32), requires_grad=True)
    bn = nn.BatchNorm2d(3)
    y = bn(x)
    assert isinstance(y._ctx, BatchNorm)
    assert y._ctx.inputs[0] is x and y._ctx.inputs[1] is bn.weight and y._ctx.inputs[2] is bn.bias


@pytest.mark.parametrize("running", [False, True])
@pytest.mark.parametrize("affine", [True, False])
def test_gradcheck_float64(running, affine):
    rng = np.random.default_rng(2)
    x, w, b, rm, rv = _inputs(rng, (5, 3, 2, 3), np.float64)
    options = dict(running_mean=rm.astype(np.float64) if running else None,
                   running_var=rv.astype(np.float64) if running else None)
    arrays = [x, w, b] if affine else [x]
    gradcheck_function(BatchNorm, arrays, dict(options, eps=1e-5))

    def fn(*tensors):
        return batch_norm(*tensors, options["running_mean"], options["running_var"]) if affine else \
            batch_norm(tensors[0], None, None, options["running_mean"], options["running_var"])
    gradcheck(fn, arrays, name="batch_norm")


@pytest.mark.parametrize("shape,module", [((16, 3, 5, 4), "BatchNorm2d"), ((12, 4), "BatchNorm1d"),
                                          ((6, 5, 7), "BatchNorm1d")])
def test_module_matches_torch_in_training_and_eval(shape, module):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x, w, b, _, _ = _inputs(rng, shape)
    ours, theirs = getattr(nn, module)(shape[1], momentum=0.2), getattr(torch.nn, module)(shape[1], momentum=0.2)
    ours.weight.data, ours.bias.data = w.copy(), b.copy()
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(w))
        theirs.bias.copy_(torch.from_numpy(b))
    for step in range(2):                                   # training: two steps move the running statistics
        g = rng.standard_normal(shape).astype(np.float32)
        xt = tq.tensor(x + step, requires_grad=True)
        xtorch = torch.tensor(x + step, requires_grad=True)
        ours.weight.grad = ours.bias.grad = None
        theirs.zero_grad()
        y, y_torch = ours(xt), theirs(xtorch)
        (y * tq.tensor(g)).sum().backward()
        (y_torch * torch.from_numpy(g)).sum().backward()
        np.testing.assert_allclose(y.data, y_torch.detach().numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(xt.grad, xtorch.grad.numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(ours.bias.grad, theirs.bias.grad.numpy(), rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(ours.running_mean, theirs.running_mean.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ours.running_var, theirs.running_var.numpy(), rtol=1e-5, atol=1e-6)
    ours.eval()
    theirs.eval()
    xt, xtorch = tq.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, y_torch = ours(xt), theirs(xtorch)
    y.sum().backward()
    y_torch.sum().backward()
    np.testing.assert_allclose(y.data, y_torch.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(xt.grad, xtorch.grad.numpy(), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- simulated formats
def _on_format(a, fmt):
    """(leaf, leaf.to(fmt)): the leaf receives the straight-through gradient of the formatted tensor."""
    leaf = tq.tensor(floats.round_to(a, fmt).astype(np.float32), requires_grad=True)
    return leaf, leaf.to(fmt)


@pytest.mark.parametrize("fmt", [floats.BF16, floats.FP8_E4M3])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_under_a_simulated_format_the_fused_op_rounds_once_at_its_output(fmt, mode):
    """One op, one rounding (chapter 03: an op computes in float32 and rounds its result): the statistics,
    x_hat and gamma x_hat are float32 inside; only y is put on the grid; gradients are float32 (straight-through)."""
    rng = np.random.default_rng(4)
    x, w, b, rm, rv = _inputs(rng, (16, 3, 4, 4))
    running = (rm, rv) if mode == "eval" else (None, None)
    leaves, lowp_inputs = zip(*[_on_format(a, fmt) for a in (x, w, b)])
    plain_inputs = [tq.tensor(t.data.copy(), requires_grad=True) for t in lowp_inputs]
    y_lowp = batch_norm(*lowp_inputs, *running)
    y_plain = batch_norm(*plain_inputs, *running)
    assert y_lowp.fmt == fmt
    np.testing.assert_array_equal(y_lowp.data, floats.round_to(y_plain.data, fmt).astype(np.float32))
    g = rng.standard_normal(x.shape).astype(np.float32)
    (y_lowp * _on_format(g, fmt)[1]).sum().backward()
    (y_plain * tq.tensor(floats.round_to(g, fmt).astype(np.float32))).sum().backward()
    for low, plain in zip(leaves, plain_inputs):
        assert low.grad.dtype == np.float32
        np.testing.assert_array_equal(low.grad, plain.grad)


def test_bf16_fused_is_the_correctly_rounded_result_where_the_composite_rounds_eight_times():
    """Against float64 BatchNorm of the same grid values rounded once: the fused op agrees (but for float32
    noise at a rounding boundary); the composite, rounding after mean, var, sub, add, sqrt, div, mul, add, does not."""
    rng = np.random.default_rng(5)
    x, w, b, _, _ = _inputs(rng, (32, 4, 4, 4))
    xs, ws, bs = (floats.round_to(a, floats.BF16).astype(np.float64) for a in (x, w, b))
    mean, var = xs.mean(axis=(0, 2, 3), keepdims=True), xs.var(axis=(0, 2, 3), keepdims=True)
    exact = floats.round_to((xs - mean) / np.sqrt(var + 1e-5) * ws.reshape(1, -1, 1, 1) + bs.reshape(1, -1, 1, 1),
                            floats.BF16)
    inputs = [_on_format(a, floats.BF16)[1] for a in (x, w, b)]
    fused, composite = batch_norm(*inputs).data, composite_batch_norm(*inputs).data
    assert np.mean(fused == exact) > 0.99
    assert np.mean(composite == exact) < 0.95
