"""Optimizers follow their update formulas, written out independently here; schedules; gradient clipping."""
import numpy as np
import pytest

import tinyq as tq
from tinyq import nn, optim


def _run(opt_factory, grads):
    p = nn.Parameter(np.array([1.0, -2.0, 0.5], dtype=np.float64))
    opt = opt_factory([p])
    trajectory = []
    for g in grads:
        p.grad = g.copy()
        opt.step()
        trajectory.append(p.data.copy())
    return np.array(trajectory)


GRADS = [np.array(g) for g in np.random.default_rng(0).standard_normal((6, 3))]


@pytest.mark.exercise("2.3")
@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_follows_the_formula(nesterov):
    lr, mu, wd = 0.1, 0.9, 0.01
    got = _run(lambda ps: optim.SGD(ps, lr=lr, momentum=mu, nesterov=nesterov, weight_decay=wd), GRADS)
    p, v, expected = np.array([1.0, -2.0, 0.5]), None, []
    for g in GRADS:
        g = g + wd * p
        v = g if v is None else mu * v + g
        p = p - lr * ((g + mu * v) if nesterov else v)
        expected.append(p)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.exercise("2.3")
def test_sgd_momentum_minimises_a_quadratic_faster_than_plain_sgd():
    def distance(momentum):
        p = nn.Parameter(np.array([5.0, -3.0]))
        opt = optim.SGD([p], lr=0.01, momentum=momentum)
        for _ in range(100):
            p.grad = p.data.copy()          # gradient of |p|^2 / 2
            opt.step()
        return np.linalg.norm(p.data)
    assert distance(0.9) < 0.1 * distance(0.0)


def test_plain_sgd_is_p_minus_lr_g():
    got = _run(lambda ps: optim.SGD(ps, lr=0.5), GRADS[:1])
    np.testing.assert_allclose(got[0], np.array([1.0, -2.0, 0.5]) - 0.5 * GRADS[0])


@pytest.mark.parametrize("decoupled", [False, True])
def test_adam_and_adamw_follow_the_formula(decoupled):
    lr, (b1, b2), eps, wd = 0.01, (0.9, 0.999), 1e-8, 0.1
    cls = optim.AdamW if decoupled else optim.Adam
    got = _run(lambda ps: cls(ps, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd), GRADS)
    p, m, v, expected = np.array([1.0, -2.0, 0.5]), 0.0, 0.0, []
    for t, g in enumerate(GRADS, start=1):
        if decoupled:
            p = p * (1 - lr * wd)
        else:
            g = g + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
        expected.append(p)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_parameters_without_gradients_are_left_alone():
    a, b = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(2))
    a.grad = np.ones(2)
    optim.SGD([a, b], lr=1.0, momentum=0.9).step()
    np.testing.assert_array_equal(b.data, [1.0, 1.0])
    np.testing.assert_array_equal(a.data, [0.0, 0.0])


def test_float32_parameters_stay_float32():
    p = nn.Parameter(np.ones(3, dtype=np.float32))
    p.grad = np.ones(3, dtype=np.float64)
    optim.Adam([p]).step()
    assert p.data.dtype == np.float32


def test_bad_hyperparameters_raise():
    p = [nn.Parameter(np.ones(2))]
    with pytest.raises(ValueError, match="lr must be >= 0"):
        optim.SGD(p, lr=-1.0)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD(p, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam(p, betas=(0.9, 1.0))


def test_clip_grad_norm_scales_to_max_norm():
    a, b = nn.Parameter(np.zeros(2)), nn.Parameter(np.zeros(1))
    a.grad, b.grad = np.array([3.0, 0.0]), np.array([4.0])
    total = optim.clip_grad_norm([a, b], max_norm=1.0)
    assert total == pytest.approx(5.0)
    assert np.sqrt(np.sum(a.grad ** 2) + np.sum(b.grad ** 2)) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(a.grad / b.grad[0], [0.75, 0.0])


def test_schedules():
    opt = optim.SGD([nn.Parameter(np.ones(1))], lr=1.0)
    step = optim.StepLR(opt, step_size=2, gamma=0.5)
    assert [step.step() for _ in range(4)] == [1.0, 0.5, 0.5, 0.25]
    opt.lr = 1.0
    cosine = optim.CosineLR(opt, total_steps=4)
    lrs = [cosine.step() for _ in range(4)]
    np.testing.assert_allclose(lrs, [(1 + np.cos(np.pi * t / 4)) / 2 for t in range(1, 5)])
    opt.lr = 1.0
    warm = optim.LinearWarmup(opt, warmup_steps=4)
    assert opt.lr == pytest.approx(0.25)
    assert [warm.step() for _ in range(4)] == pytest.approx([0.5, 0.75, 1.0, 1.0])


def test_training_a_linear_model_reduces_the_loss():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]], dtype=np.float32) + 0.3).astype(np.float32)
    model = nn.Linear(3, 1, rng=rng)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    from tinyq import functional as F
    first = None
    for _ in range(100):
        loss = F.mse_loss(model(tq.tensor(x)), y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 1e-4 * first
    np.testing.assert_allclose(model.weight.data, [[1.0, -2.0, 0.5]], atol=1e-2)


def test_clip_grad_norm_clips_when_given_a_generator():
    model = tq.nn.Linear(3, 2, rng=np.random.default_rng(0))
    for p in model.parameters():
        p.grad = np.full(p.shape, 10.0, dtype=np.float32)
    norm = tq.optim.clip_grad_norm(model.parameters(), 1.0)     # a generator, as in PyTorch code
    assert norm == pytest.approx(10.0 * np.sqrt(8))
    clipped = np.sqrt(sum(float(np.sum(p.grad.astype(np.float64) ** 2)) for p in model.parameters()))
    assert clipped == pytest.approx(1.0, rel=1e-5)
