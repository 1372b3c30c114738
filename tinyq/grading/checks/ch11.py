"""Trusted checks of chapter 11 (knowledge distillation): exercises 11.1-11.4.

Everything is float64 and the reference computes in the textbook order; a correct submission may sum in
another order, so the comparisons allow a few ulps (rtol 1e-9, atol 1e-12).
"""
from __future__ import annotations

import numpy as np

from tinyq.grading.checks import Check, register

HERE = "tinyq.grading.checks.ch11"


def draw_logits(rng):
    n, c = int(rng.integers(2, 9)), int(rng.integers(2, 12))
    return {"student": rng.standard_normal((n, c)) * rng.uniform(0.5, 6.0),
            "teacher": rng.standard_normal((n, c)) * rng.uniform(0.5, 6.0),
            "labels": rng.integers(0, c, n).astype(np.int64),
            "temperature": float(rng.choice([0.5, 1.0, 2.0, 4.0, 8.0, 16.0, rng.uniform(0.3, 20.0)])),
            "alpha": float(rng.uniform(0.0, 1.0))}


def probe_softmax_with_temperature(student, teacher, labels, temperature, alpha):
    from tinyq import distill
    return {"student": np.asarray(distill.softmax_with_temperature(student, temperature), dtype=np.float64),
            "teacher": np.asarray(distill.softmax_with_temperature(teacher, temperature), dtype=np.float64)}


def probe_kd_loss(student, teacher, labels, temperature, alpha):
    """The KD loss's value and its gradient w.r.t. the student logits (autograd through the submission)."""
    import tinyq as tq
    from tinyq import distill
    logits = tq.tensor(student, requires_grad=True)
    loss = distill.kd_loss(logits, teacher, labels, temperature=temperature, alpha=alpha)
    loss.backward()
    soft = distill.soft_target_loss(tq.tensor(student), distill.softmax_with_temperature(teacher, temperature),
                                    temperature)
    return {"loss": float(loss.data), "soft": float(soft.data), "grad": np.asarray(logits.grad, dtype=np.float64)}


def draw_ensemble(rng):
    k, n, c = int(rng.integers(1, 5)), int(rng.integers(1, 7)), int(rng.integers(2, 10))
    weights = rng.dirichlet(np.ones(k))
    return {"logits": rng.standard_normal((k, n, c)) * rng.uniform(0.5, 5.0), "weights": weights,
            "temperature": float(rng.uniform(0.5, 10.0))}


def probe_ensemble(logits, weights, temperature):
    from tinyq import distill
    teachers = [logits[i] for i in range(logits.shape[0])]
    return {"equal": np.asarray(distill.ensemble_soft_targets(teachers, temperature), dtype=np.float64),
            "weighted": np.asarray(distill.ensemble_soft_targets(teachers, temperature, weights=weights),
                                   dtype=np.float64)}


def draw_hint(rng):
    n, d_s, d_t = int(rng.integers(1, 6)), int(rng.integers(1, 7)), int(rng.integers(1, 7))
    return {"features": rng.standard_normal((n, d_s)), "target": rng.standard_normal((n, d_t)),
            "weight": rng.standard_normal((d_t, d_s)), "bias": rng.standard_normal(d_t)}


def probe_hint(features, target, weight, bias):
    """The hint loss and its gradients w.r.t. the student features and the regressor's weight and bias."""
    import tinyq as tq
    from tinyq import distill
    regressor = distill.HintRegressor(weight.shape[1], weight.shape[0], rng=np.random.default_rng(0))
    regressor.map.weight.data = weight.copy()
    regressor.map.bias.data = bias.copy()
    f = tq.tensor(features, requires_grad=True)
    loss = distill.hint_loss(f, target, regressor)
    loss.backward()
    return {"loss": float(loss.data), "features": np.asarray(f.grad, dtype=np.float64),
            "weight": np.asarray(regressor.map.weight.grad, dtype=np.float64),
            "bias": np.asarray(regressor.map.bias.grad, dtype=np.float64)}


register(Check(exercise="11.1", draw=f"{HERE}:draw_logits", probe=f"{HERE}:probe_softmax_with_temperature",
               rtol=1e-9, atol=1e-12, cases=4))
register(Check(exercise="11.2", draw=f"{HERE}:draw_logits", probe=f"{HERE}:probe_kd_loss",
               rtol=1e-9, atol=1e-12, cases=4))
register(Check(exercise="11.3", draw=f"{HERE}:draw_ensemble", probe=f"{HERE}:probe_ensemble",
               rtol=1e-9, atol=1e-12, cases=4))
register(Check(exercise="11.4", draw=f"{HERE}:draw_hint", probe=f"{HERE}:probe_hint",
               rtol=1e-9, atol=1e-12, cases=4))
