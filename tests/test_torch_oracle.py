"""PyTorch as an oracle: conv, pooling, BatchNorm, losses, activations and optimizers agree in float32.

Tolerance. Both engines compute in float32 (unit roundoff u = 2^-24 ~ 6e-8) but sum in
different orders (BLAS blocking, pairwise vs sequential reductions). A sum of K terms
then differs by up to ~K u |largest term|, which for an output near zero (cancellation)
is a large *relative* error of a correct result. So every comparison is

    |ours - torch| <= RTOL |torch| + ATOL * max|torch|,   RTOL = 1e-5, ATOL = 1e-6

i.e. the issue's 1e-5 relative bound, plus an absolute floor of one millionth of the
tensor's own scale for elements that are tiny because of cancellation.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import tinyq as tq  # noqa: E402
from tinyq import convolution, functional as F, models, nn, optim  # noqa: E402

RTOL, ATOL = 1e-5, 1e-6


def assert_close(ours, reference, what=""):
    ours = ours.data if isinstance(ours, tq.Tensor) else np.asarray(ours)
    reference = reference.detach().numpy() if isinstance(reference, torch.Tensor) else np.asarray(reference)
    assert ours.shape == reference.shape, f"{what}: shape {ours.shape} != torch's {reference.shape}"
    assert ours.dtype == reference.dtype, f"{what}: dtype {ours.dtype} != torch's {reference.dtype}"
    scale = float(np.max(np.abs(reference))) if reference.size else 0.0
    np.testing.assert_allclose(ours, reference, rtol=RTOL, atol=ATOL * scale, err_msg=what)


def pair(array, requires_grad=True):
    """The same float32 data as a tinyq Tensor and a torch tensor (separate copies)."""
    array = np.asarray(array, dtype=np.float32)
    return (tq.tensor(array.copy(), requires_grad=requires_grad),
            torch.tensor(array.copy(), requires_grad=requires_grad))


def backward_both(ours, theirs, rng):
    """Backpropagate the same random upstream gradient through both outputs."""
    assert_close(ours, theirs, "forward")
    upstream = rng.standard_normal(ours.shape).astype(np.float32)
    ours.backward(upstream)
    theirs.backward(torch.from_numpy(upstream))


@pytest.fixture(params=["numpy", "numba"])
def conv_backend(request, monkeypatch):
    """Run conv/pool tests through both the NumPy path and the numba kernels (when numba can JIT)."""
    if request.param == "numba":
        if not convolution.kernels.JIT_AVAILABLE:
            pytest.skip("numba JIT not available (not installed or NUMBA_DISABLE_JIT=1)")
        monkeypatch.setattr(convolution, "USE_NUMBA", True)
    else:
        monkeypatch.setattr(convolution, "USE_NUMBA", False)
    return request.param


# ---------------------------------------------------------------- convolution
CONV_CASES = {  # x shape, w shape, options, bias
    "3x3 pad 1": ((2, 3, 7, 6), (4, 3, 3, 3), dict(padding=1), True),
    "non-square kernel, stride, padding, dilation": ((2, 2, 9, 8), (3, 2, 3, 2),
                                                     dict(stride=(2, 1), padding=(1, 2), dilation=(2, 1)), True),
    "groups 2, no bias": ((2, 4, 6, 5), (6, 2, 3, 3), dict(padding=1, groups=2), False),
    "depthwise with multiplier 2, stride 2": ((2, 3, 8, 7), (6, 1, 3, 3), dict(stride=2, padding=1, groups=3), True),
    "1x1 no bias": ((3, 5, 4, 4), (2, 5, 1, 1), dict(), False),
    "large padding and dilation": ((1, 2, 5, 5), (3, 2, 2, 3), dict(padding=(3, 2), dilation=(2, 2)), True),
    "stride larger than kernel": ((2, 2, 9, 9), (2, 2, 2, 2), dict(stride=3), True),
}


@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv2d_forward_and_gradients(case, conv_backend, rng):
    x_shape, w_shape, options, with_bias = CONV_CASES[case]
    x, tx = pair(rng.standard_normal(x_shape))
    w, tw = pair(rng.standard_normal(w_shape) * 0.5)
    b, tb = pair(rng.standard_normal(w_shape[0])) if with_bias else (None, None)
    ours = F.conv2d(x, w, b, **options)
    theirs = torch.nn.functional.conv2d(tx, tw, tb, **options)
    backward_both(ours, theirs, rng)
    assert_close(x.grad, tx.grad, "grad x")
    assert_close(w.grad, tw.grad, "grad weight")
    if with_bias:
        assert_close(b.grad, tb.grad, "grad bias")


def test_conv2d_module_matches_torch_module(rng):
    ours = nn.Conv2d(4, 6, (3, 2), stride=(1, 2), padding=(2, 1), dilation=(1, 2), groups=2, rng=rng)
    theirs = torch.nn.Conv2d(4, 6, (3, 2), stride=(1, 2), padding=(2, 1), dilation=(1, 2), groups=2)
    theirs.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in ours.state_dict().items()})
    x, tx = pair(rng.standard_normal((2, 4, 6, 7)))
    backward_both(ours(x), theirs(tx), rng)
    assert_close(ours.weight.grad, theirs.weight.grad, "grad weight")
    assert_close(ours.bias.grad, theirs.bias.grad, "grad bias")
    assert_close(x.grad, tx.grad, "grad x")


# -------------------------------------------------------------------- pooling
POOL_CASES = {  # x shape, options
    "2x2 default stride": ((2, 3, 6, 8), dict(kernel_size=2)),
    "3x3 stride 2 pad 1 (overlapping)": ((2, 2, 7, 6), dict(kernel_size=3, stride=2, padding=1)),
    "non-square, stride 1 (overlapping)": ((1, 2, 5, 6), dict(kernel_size=(3, 2), stride=(1, 2))),
    "odd size, floor mode": ((2, 2, 7, 9), dict(kernel_size=2)),
    "pad (1, 0)": ((2, 1, 6, 5), dict(kernel_size=(2, 3), stride=(2, 1), padding=(1, 0))),
}


@pytest.mark.parametrize("case", list(POOL_CASES))
def test_max_pool2d(case, conv_backend, rng):
    shape, options = POOL_CASES[case]
    x, tx = pair(rng.standard_normal(shape))           # continuous values: no ties
    backward_both(F.max_pool2d(x, **options), torch.nn.functional.max_pool2d(tx, **options), rng)
    assert_close(x.grad, tx.grad, "grad x")


def test_max_pool2d_dilation(conv_backend, rng):
    x, tx = pair(rng.standard_normal((2, 2, 9, 8)))
    options = dict(kernel_size=2, stride=2, padding=1, dilation=2)
    backward_both(F.max_pool2d(x, **options), torch.nn.functional.max_pool2d(tx, **options), rng)
    assert_close(x.grad, tx.grad, "grad x")


def test_max_pool2d_ties_go_to_the_first_maximum(conv_backend, rng):
    """Rounded data has many ties; PyTorch (and tinyq) give the whole gradient to the first maximum."""
    x, tx = pair(np.round(rng.standard_normal((2, 3, 6, 6))))
    backward_both(F.max_pool2d(x, 2), torch.nn.functional.max_pool2d(tx, 2), rng)
    assert_close(x.grad, tx.grad, "grad x")


@pytest.mark.parametrize("case", list(POOL_CASES))
def test_avg_pool2d(case, conv_backend, rng):
    shape, options = POOL_CASES[case]
    x, tx = pair(rng.standard_normal(shape))           # torch's default count_include_pad=True
    backward_both(F.avg_pool2d(x, **options), torch.nn.functional.avg_pool2d(tx, **options), rng)
    assert_close(x.grad, tx.grad, "grad x")


@pytest.mark.parametrize("shape, output_size", [((2, 3, 5, 7), (2, 3)), ((1, 2, 6, 6), (3, 3)),
                                                ((2, 2, 4, 5), (1, 1)), ((1, 2, 3, 4), (5, 6))])
def test_adaptive_avg_pool2d(shape, output_size, rng):
    x, tx = pair(rng.standard_normal(shape))
    backward_both(F.adaptive_avg_pool2d(x, output_size),
                  torch.nn.functional.adaptive_avg_pool2d(tx, output_size), rng)
    assert_close(x.grad, tx.grad, "grad x")


# ------------------------------------------------------------------ BatchNorm
@pytest.mark.parametrize("kind, shape", [("2d", (4, 3, 5, 5)), ("1d", (8, 5)), ("1d", (4, 3, 6))])
def test_batchnorm_train_steps_then_eval(kind, shape, rng):
    channels = shape[1]
    ours = (nn.BatchNorm2d if kind == "2d" else nn.BatchNorm1d)(channels, momentum=0.2)
    theirs = (torch.nn.BatchNorm2d if kind == "2d" else torch.nn.BatchNorm1d)(channels, momentum=0.2)
    ours.weight.data = rng.uniform(0.5, 1.5, channels).astype(np.float32)
    ours.bias.data = rng.standard_normal(channels).astype(np.float32)
    theirs.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in ours.state_dict().items()})
    for step in range(3):                              # train mode: batch statistics
        x, tx = pair(rng.standard_normal(shape) * 2 + 1)
        ours.zero_grad() if hasattr(ours, "zero_grad") else None
        for p in ours.parameters():
            p.grad = None
        theirs.zero_grad()
        backward_both(ours(x), theirs(tx), rng)
        assert_close(x.grad, tx.grad, f"step {step}: grad x")
        assert_close(ours.weight.grad, theirs.weight.grad, f"step {step}: grad weight")
        assert_close(ours.bias.grad, theirs.bias.grad, f"step {step}: grad bias")
        assert_close(ours.running_mean, theirs.running_mean, f"step {step}: running_mean")
        assert_close(ours.running_var, theirs.running_var, f"step {step}: running_var")
    assert int(ours.num_batches_tracked) == int(theirs.num_batches_tracked) == 3
    ours.eval()
    theirs.eval()
    x, tx = pair(rng.standard_normal(shape))
    backward_both(ours(x), theirs(tx), rng)            # eval mode: running statistics, no update
    assert_close(x.grad, tx.grad, "eval: grad x")
    assert_close(ours.running_mean, theirs.running_mean, "eval: running_mean unchanged")


# ------------------------------------------------------- losses, activations
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cross_entropy(reduction, label_smoothing, rng):
    logits, tlogits = pair(rng.standard_normal((6, 5)) * 3)
    labels = rng.integers(0, 5, size=6)
    ours = F.cross_entropy(logits, labels, label_smoothing=label_smoothing, reduction=reduction)
    theirs = torch.nn.functional.cross_entropy(tlogits, torch.from_numpy(labels),
                                               label_smoothing=label_smoothing, reduction=reduction)
    backward_both(ours, theirs, rng)
    assert_close(logits.grad, tlogits.grad, "grad logits")


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_log_softmax(axis, rng):
    x, tx = pair(rng.standard_normal((4, 7)) * 5)
    backward_both(F.log_softmax(x, axis=axis), torch.nn.functional.log_softmax(tx, dim=axis), rng)
    assert_close(x.grad, tx.grad, "grad x")


def test_gelu_tanh_approximation(rng):
    x, tx = pair(rng.standard_normal((5, 6)) * 3)
    backward_both(F.gelu(x), torch.nn.functional.gelu(tx, approximate="tanh"), rng)
    assert_close(x.grad, tx.grad, "grad x")


# ----------------------------------------------------------------- optimizers
OPTIMIZERS = {
    "sgd": (lambda p: optim.SGD(p, lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    "sgd momentum": (lambda p: optim.SGD(p, lr=0.05, momentum=0.9),
                     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
    "sgd nesterov + weight decay": (lambda p: optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.01),
                                    lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True,
                                                              weight_decay=0.01)),
    "sgd weight decay": (lambda p: optim.SGD(p, lr=0.1, weight_decay=0.05),
                         lambda p: torch.optim.SGD(p, lr=0.1, weight_decay=0.05)),
    "adam": (lambda p: optim.Adam(p, lr=0.01), lambda p: torch.optim.Adam(p, lr=0.01)),
    "adam betas + L2": (lambda p: optim.Adam(p, lr=0.02, betas=(0.8, 0.99), weight_decay=0.1),
                        lambda p: torch.optim.Adam(p, lr=0.02, betas=(0.8, 0.99), weight_decay=0.1)),
    "adamw": (lambda p: optim.AdamW(p, lr=0.01, weight_decay=0.1),
              lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1)),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_trajectory(name, rng):
    make_ours, make_theirs = OPTIMIZERS[name]
    shapes = [(3, 4), (4,), (2, 1, 3)]
    initial = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    ours = [nn.Parameter(a.copy()) for a in initial]
    theirs = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in initial]
    opt, topt = make_ours(ours), make_theirs(theirs)
    for step in range(10):
        for p, tp in zip(ours, theirs):                # the same gradient for both
            g = rng.standard_normal(p.shape).astype(np.float32)
            p.grad, tp.grad = g.copy(), torch.from_numpy(g.copy())
        opt.step()
        topt.step()
        for i, (p, tp) in enumerate(zip(ours, theirs)):
            assert_close(p.data, tp, f"{name}: parameter {i} after step {step + 1}")


# --------------------------------------------------------- whole-model checks
def torch_lenet5():
    tnn = torch.nn
    return tnn.Sequential(tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
                          tnn.Conv2d(6, 16, 5), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(),
                          tnn.Linear(400, 120), tnn.ReLU(), tnn.Linear(120, 84), tnn.ReLU(), tnn.Linear(84, 10))


def test_lenet5_state_dict_loads_into_torch_and_gives_the_same_logits(tmp_path, rng):
    ours = models.lenet5(rng=rng)
    tq.save(ours.state_dict(), tmp_path / "lenet.npz")
    theirs = torch_lenet5()
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in tq.load(tmp_path / "lenet.npz").items()})
    images = rng.standard_normal((4, 1, 28, 28)).astype(np.float32)
    with tq.no_grad():
        logits = ours(tq.tensor(images))
    assert_close(logits, theirs(torch.from_numpy(images)), "logits")


def test_torch_state_dict_loads_into_tinyq(rng):
    theirs = torch_lenet5()
    ours = models.lenet5(rng=rng)
    ours.load_state_dict({k: v.detach().numpy().copy() for k, v in theirs.state_dict().items()})
    images = rng.standard_normal((3, 1, 28, 28)).astype(np.float32)
    with tq.no_grad():
        logits = ours(tq.tensor(images))
    assert_close(logits, theirs(torch.from_numpy(images)), "logits")


def test_lenet5_training_step_matches_torch(conv_backend, rng):
    """Forward, cross-entropy, backward and an SGD step through the whole LeNet-5 agree with PyTorch."""
    ours = models.lenet5(rng=rng)
    theirs = torch_lenet5()
    theirs.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in ours.state_dict().items()})
    images = rng.standard_normal((8, 1, 28, 28)).astype(np.float32)
    labels = rng.integers(0, 10, size=8)
    opt = optim.SGD(ours.parameters(), lr=0.1, momentum=0.9)
    topt = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9)
    for _ in range(2):
        opt.zero_grad()
        topt.zero_grad()
        loss = F.cross_entropy(ours(tq.tensor(images)), labels)
        tloss = torch.nn.functional.cross_entropy(theirs(torch.from_numpy(images)), torch.from_numpy(labels))
        loss.backward()
        tloss.backward()
        assert_close(loss, tloss, "loss")
        tparams = dict(theirs.named_parameters())
        for name, p in ours.named_parameters():
            assert_close(p.grad, tparams[name].grad, f"grad {name}")
        opt.step()
        topt.step()
    for name, p in ours.named_parameters():
        assert_close(p.data, tparams[name], f"{name} after two steps")
