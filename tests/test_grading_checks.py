"""The trusted checks themselves: every exercise has one, each is fair (the reference passes under 100
seeds, deterministically; correct solutions written differently pass under 50), and exercises.toml's
prerequisites are the exercises each check really runs through."""
import json
import os
import subprocess
import sys
import zlib

import numpy as np
import pytest

from tinyq.grading import load_exercises
from tinyq.grading.checks import (
    Check,
    all_checks,
    compare,
    register,
    resolve,
    split_values,
)

CHECKS = all_checks()


def inputs_for(check, seed, case):
    return resolve(check.draw)(np.random.default_rng([seed, zlib.crc32(check.key.encode()), case]))


def fresh(inputs):
    return {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in inputs.items()}


def test_every_exercise_has_a_check_and_every_check_a_known_exercise():
    exercises = load_exercises()
    checked = {check.exercise for check in CHECKS}
    assert not set(exercises) - checked, f"exercises without a trusted check: {sorted(set(exercises) - checked)}"
    assert not checked - set(exercises), f"checks of unknown exercises: {sorted(checked - set(exercises))}"
    for check in CHECKS:
        for spec in (check.draw, check.probe):
            assert spec.startswith("tinyq.grading.checks."), f"{check.key}: {spec} must live in the checks package"
            assert callable(resolve(spec))


def test_check_contract_is_validated():
    with pytest.raises(ValueError, match="module:function"):
        Check(exercise="1.1", draw="no_colon", probe="a:b")
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="rtol"):
            Check(exercise="1.1", draw="a:b", probe="a:c", rtol=bad)
    with pytest.raises(ValueError, match="cases"):
        Check(exercise="1.1", draw="a:b", probe="a:c", cases=0)
    with pytest.raises(ValueError, match="two checks named"):
        register(Check(exercise=CHECKS[0].exercise, draw="x:y", probe=f"x:probe_{CHECKS[0].name}"))
    with pytest.raises(TypeError, match="ndarray, int, float"):
        split_values({"x": [1, 2]}, "draw")


def test_compare_shape_dtype_kind_nan_and_tolerance():
    a = {"v": np.array([1.0, np.nan, np.inf])}
    assert compare(a, {"v": np.array([1.0, np.nan, np.inf])}, 0, 0) is None
    assert "differ" in compare(a, {"v": np.array([1.0, 2.0, np.inf])}, 0, 0)
    assert "differ" in compare(a, {"v": np.array([1.0, np.nan, -np.inf])}, 0, 0)
    assert "shape" in compare(a, {"v": np.ones(2)}, 0, 0)
    assert "int64 array, got float64" in compare({"q": np.arange(3)}, {"q": np.arange(3.0)}, 1, 1)
    assert compare({"x": np.array(1.0)}, {"x": np.array(1.0 + 1e-9)}, 1e-8, 0) is None
    assert "missing ['x']" in compare({"x": np.array(1)}, {"y": np.array(1)}, 0, 0)


@pytest.mark.parametrize("check", CHECKS, ids=[c.key for c in CHECKS])
def test_reference_passes_its_check_under_100_seeds(check):
    """The probe runs, returns numbers, gives the same numbers twice, and every property (bool output)
    holds for the reference, for 100 draws: a correct solution is never marked wrong by bad luck."""
    probe = resolve(check.probe)
    for seed in range(100):
        for case in range(check.cases):
            inputs = inputs_for(check, seed, case)
            split_values(inputs, check.draw)
            first = probe(**fresh(inputs))
            split_values(first, check.probe)
            broken = [k for k, v in first.items() if np.asarray(v).dtype == bool and not np.all(v)]
            assert not broken, f"seed {seed} case {case}: property {broken} fails on the reference"
            if seed < 10:
                again = probe(**fresh(inputs))
                assert compare(first, again, 0.0, 0.0) is None, f"seed {seed}: the probe is not deterministic"


def test_prerequisites_are_the_exercises_each_check_runs_through():
    """Tracing the reference's probes: each check runs its own exercise's region (else it would be vacuous),
    and exercises.toml names exactly the other exercises whose regions it runs."""
    exercises = load_exercises()
    # in a fresh interpreter without numba's JIT, so that lines inside @njit kernels are traced too
    script = "import json; from tinyq.grading.dependencies import derived_prerequisites as d; print(json.dumps(d(seeds=range(2))))"
    run = subprocess.run([sys.executable, "-c", script], env={**os.environ, "NUMBA_DISABLE_JIT": "1"},
                         capture_output=True, text=True, check=False, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    derived = json.loads(run.stdout.strip().splitlines()[-1])
    for ex_id, used in derived.items():
        assert ex_id in used, f"the checks of {ex_id} never run its solution region"
    wrong = {ex_id: {"declared": sorted(exercises[ex_id].prerequisites), "derived": sorted(set(used) - {ex_id})}
             for ex_id, used in derived.items()
             if ex_id in exercises and sorted(exercises[ex_id].prerequisites) != sorted(set(used) - {ex_id})}
    assert not wrong, f"set these prerequisites in exercises.toml to the derived lists: {wrong}"


# ---- correct solutions written differently get the same mark (50 seeds, in this process)

def _alternative_unbroadcast(grad, shape):
    shape = tuple(shape)
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and grad.shape[axis] != 1:
            grad = np.add.reduce(grad, axis=axis, keepdims=True)
    return grad


def _alternative_quantize(x, qp):
    x = np.asarray(x, dtype=np.float64)
    scale, zero_point, _ = qp.broadcast(x.ndim)
    with np.errstate(over="ignore", invalid="ignore"):
        q = np.rint(x * (1.0 / np.float64(scale))) + zero_point      # float64 and a reciprocal
    return np.clip(np.nan_to_num(q, posinf=qp.qmax, neginf=qp.qmin), qp.qmin, qp.qmax).astype(qp.dtype)


def _alternative_fold(weight, bias, running_mean, running_var, gamma, beta, eps):
    channels = weight.shape[0]
    bias = np.zeros(channels) if bias is None else bias
    gamma = np.ones(channels) if gamma is None else gamma
    beta = np.zeros(channels) if beta is None else beta
    inverse_std = 1.0 / np.sqrt(running_var + eps)
    scale = (gamma * inverse_std).reshape((-1,) + (1,) * (weight.ndim - 1))
    return (weight * scale).astype(weight.dtype), (beta + gamma * inverse_std * (bias - running_mean)).astype(weight.dtype)


ALTERNATIVES = {
    "1.1": [("tinyq.function", "unbroadcast", _alternative_unbroadcast), ("tinyq.ops", "unbroadcast", _alternative_unbroadcast)],
    "5.2": [("tinyq.formats.affine", "quantize", _alternative_quantize)],
    "6.2": [("tinyq.quant.ptq", "fold_bn_params", _alternative_fold)],
}


@pytest.mark.parametrize("ex_id", sorted(ALTERNATIVES))
def test_a_correct_solution_written_differently_passes_under_50_seeds(ex_id, monkeypatch):
    import importlib
    checks = [c for c in CHECKS if c.exercise == ex_id]
    expected = {}
    for check in checks:
        for seed in range(50):
            for case in range(check.cases):
                inputs = inputs_for(check, seed, case)
                expected[check.key, seed, case] = (inputs, resolve(check.probe)(**fresh(inputs)))
    for module, name, function in ALTERNATIVES[ex_id]:
        monkeypatch.setattr(importlib.import_module(module), name, function)
    for check in checks:
        for (key, seed, case), (inputs, want) in expected.items():
            if key == check.key:
                got = resolve(check.probe)(**fresh(inputs))
                assert compare(want, got, check.rtol, check.atol) is None, f"{key} seed {seed} case {case}"
