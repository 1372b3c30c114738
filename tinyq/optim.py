"""Optimizers and learning-rate schedules. Each update is written as its formula.

Gradients are read from p.grad (an ndarray); parameters and the optimizer's state
(momentum, Adam's moments) are updated in place, in the parameter's own dtype: a step
allocates no new parameter or state arrays, only a few temporaries (and p.data stays the
same array, as in PyTorch).
"""
from __future__ import annotations

import math

import numpy as np


class Optimizer:
    def __init__(self, params, defaults: dict):
        self.params = [p for p in params]
        if not self.params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        for name, value in defaults.items():
            if isinstance(value, (int, float)) and value < 0:
                raise ValueError(f"{type(self).__name__}: {name} must be >= 0, got {value}")
        self.defaults = defaults
        self.lr = defaults["lr"]
        self.state = [dict() for _ in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        for p, state in zip(self.params, self.state):
            if p.grad is not None:
                self._update(p.data, p.grad.astype(p.data.dtype, copy=False), state)

    def _update(self, param, grad, state) -> None:  # pragma: no cover - abstract
        """Update param (an ndarray) in place from grad; never write into grad (it may be p.grad itself)."""
        raise NotImplementedError


class SGD(Optimizer):
    """v = mu v + (g + wd p);  p -= lr v   (nesterov: p -= lr (g + wd p + mu v)); PyTorch's convention."""

    def __init__(self, params, lr: float, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0):
        if nesterov and momentum == 0:
            raise ValueError("SGD: nesterov=True needs momentum > 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))
        self.momentum, self.nesterov, self.weight_decay = momentum, nesterov, weight_decay

    def _update(self, param, grad, state):
        if self.weight_decay:
            grad = grad + param.dtype.type(self.weight_decay) * param
        if self.momentum:
            ### BEGIN SOLUTION 2.3
            mu = param.dtype.type(self.momentum)
            velocity = state.get("velocity")
            if velocity is None:
                velocity = state["velocity"] = grad.copy()         # first step: v = g
            else:
                velocity *= mu                                     # v = mu v + g, in place
                velocity += grad
            grad = grad + mu * velocity if self.nesterov else velocity
            ### END SOLUTION
        param -= param.dtype.type(self.lr) * grad


class Adam(Optimizer):
    """m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  p -= lr m_hat / (sqrt(v_hat) + eps) (Kingma & Ba 2015).

    weight_decay adds wd p to the gradient (L2, as torch.optim.Adam); AdamW decays the weights directly.
    """

    decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, eps=eps, weight_decay=weight_decay))
        if not all(0 <= b < 1 for b in betas):
            raise ValueError(f"{type(self).__name__}: betas must be in [0, 1), got {betas}")
        self.betas, self.eps, self.weight_decay = betas, eps, weight_decay

    def _update(self, param, grad, state):
        b1, b2 = self.betas
        dtype = param.dtype.type
        if self.weight_decay and self.decoupled:
            param *= dtype(1 - self.lr * self.weight_decay)
        elif self.weight_decay:
            grad = grad + dtype(self.weight_decay) * param
        if "m" not in state:
            state.update(step=0, m=np.zeros_like(param), v=np.zeros_like(param))
        step = state["step"] = state["step"] + 1
        m, v = state["m"], state["v"]
        m *= dtype(b1)                                   # m = b1 m + (1 - b1) g, in place
        m += dtype(1 - b1) * grad
        v *= dtype(b2)                                   # v = b2 v + (1 - b2) g^2, in place
        v += dtype(1 - b2) * grad * grad
        update = m / dtype(1 - b1 ** step)               # m_hat, then lr m_hat / (sqrt(v_hat) + eps)
        update *= dtype(self.lr)
        denominator = np.sqrt(v / dtype(1 - b2 ** step))
        denominator += dtype(self.eps)
        update /= denominator
        param -= update


class AdamW(Adam):
    """Adam with decoupled weight decay: p -= lr wd p before the Adam step (Loshchilov & Hutter 2019)."""

    decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


def clip_grad_norm(params, max_norm: float) -> float:
    """Scale all gradients by min(1, max_norm / ||g||_2) where ||g|| is over every parameter; returns ||g||.

    params: any iterable of Parameters (a list, or a generator such as model.parameters()).
    """
    with_grads = [p for p in params if p.grad is not None]      # one pass: a generator is used up after it
    total = math.sqrt(sum(float(np.sum(p.grad.astype(np.float64) ** 2)) for p in with_grads))
    if total > max_norm:
        scale = max_norm / (total + 1e-6)
        for p in with_grads:
            p.grad = p.grad * p.grad.dtype.type(scale)
    return total


# ------------------------------------------------------------------ schedules
class LRScheduler:
    """Call step() once per epoch (or per iteration); it sets optimizer.lr = base_lr * factor(t)."""

    def __init__(self, optimizer: Optimizer):
        self.optimizer, self.base_lr, self.t = optimizer, optimizer.lr, 0

    def factor(self, t: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def step(self) -> float:
        self.t += 1
        self.optimizer.lr = self.base_lr * self.factor(self.t)
        return self.optimizer.lr


class StepLR(LRScheduler):
    """lr = base * gamma^floor(t / step_size)."""

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1):
        super().__init__(optimizer)
        self.step_size, self.gamma = step_size, gamma

    def factor(self, t):
        return self.gamma ** (t // self.step_size)


class CosineLR(LRScheduler):
    """lr = min + (base - min) (1 + cos(pi t / T)) / 2."""

    def __init__(self, optimizer, total_steps: int, min_lr: float = 0.0):
        super().__init__(optimizer)
        self.total_steps, self.min_lr = total_steps, min_lr

    def factor(self, t):
        t = min(t, self.total_steps)
        cosine = (1 + math.cos(math.pi * t / self.total_steps)) / 2
        return (self.min_lr + (self.base_lr - self.min_lr) * cosine) / self.base_lr


class LinearWarmup(LRScheduler):
    """lr = base * min(1, (t + 1) / warmup_steps), then constant (wrap another schedule's factor with `after`)."""

    def __init__(self, optimizer, warmup_steps: int, after: LRScheduler | None = None):
        super().__init__(optimizer)
        self.warmup_steps, self.after = warmup_steps, after
        optimizer.lr = self.base_lr * self.factor(0)

    def factor(self, t):
        if t < self.warmup_steps:
            return (t + 1) / self.warmup_steps
        return self.after.factor(t - self.warmup_steps) if self.after is not None else 1.0
