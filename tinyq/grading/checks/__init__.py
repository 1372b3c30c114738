"""Trusted checks: how `tinyq grade` decides a grade without trusting the submission's code.

A check names two functions by "module:function":

    from tinyq.grading.checks import Check, register
    register(Check(
        exercise="8.1",
        draw="tinyq.grading.checks.ch08:draw_multiplier",    # GRADER side, numpy only
        probe="tinyq.grading.checks.ch08:probe_multiplier",  # CHILD side, imports tinyq inside its body
        rtol=0.0, atol=0.0,                                  # |got - expected| <= atol + rtol |expected|
        cases=3,                                             # independent draws
    ))

- `draw(rng: np.random.Generator) -> dict[str, ndarray | int | float | bool | str]` runs in the grader,
  with a generator seeded from a secret per-run seed. It must use numpy only (never tinyq: the grader
  never imports the code being graded, and the draw must not depend on it).
- `probe(**inputs) -> dict[str, ndarray | int | float | bool]` runs in a child process, once against
  the reference and once against the submission, on the same inputs. It imports tinyq INSIDE its body
  (the tinyq it finds is the one being graded), calls the exercise's code and returns what is compared.
  It must be deterministic given its inputs (pass any seed as an input). For a property ("gradcheck
  passes"), return the quantities behind it (the gradients).
- A bool output is a property that correct code satisfies ("every node comes after its inputs"): the
  reference must give True under every seed (tests/test_grading_checks.py draws 100), else the grade
  stops with an error instead of marking correct work wrong.
- Outputs are compared key by key in the grader: same keys, same shape, same dtype kind (b/i/u/f/c),
  NaN equals NaN, infinities equal by sign, and |got - expected| <= atol + rtol * |expected|.
  A case passes when every key matches; an exercise passes when every case of every check passes.

Each chapter's checks live in `chNN.py` beside this file (more in `chNN_<anything>.py`); every module
of this package is imported to find them (`all_checks()`). This file imports only the standard
library and numpy: the grader's child runner loads it as it is, without importing the submission.
"""
from __future__ import annotations

import importlib
import math
import pkgutil
from dataclasses import dataclass

import numpy as np

SCALAR_TYPES = (bool, int, float, str)


@dataclass(frozen=True)
class Check:
    """One trusted check of an exercise: inputs from draw(rng), outputs of probe(**inputs) compared."""

    exercise: str
    draw: str
    probe: str
    rtol: float = 0.0
    atol: float = 0.0
    cases: int = 3
    name: str = ""  # optional; defaults to the probe function's name without "probe_"

    def __post_init__(self):
        if not isinstance(self.exercise, str) or not self.exercise:
            raise TypeError(f"Check.exercise must be an exercise id like '8.1', got {self.exercise!r}")
        for field in ("draw", "probe"):
            spec = getattr(self, field)
            if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
                raise ValueError(f"Check.{field} must be 'module:function', got {spec!r}")
        for field in ("rtol", "atol"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 \
                    or math.isinf(value):
                raise ValueError(f"Check.{field} must be a finite number >= 0, got {value!r}")
        if isinstance(self.cases, bool) or not isinstance(self.cases, int) or self.cases < 1:
            raise ValueError(f"Check.cases must be an int >= 1, got {self.cases!r}")
        if not self.name:
            object.__setattr__(self, "name", self.probe.split(":")[1].removeprefix("probe_"))

    @property
    def key(self) -> str:
        """'<exercise>/<name>': unique among all checks."""
        return f"{self.exercise}/{self.name}"


_registry: dict[str, Check] = {}


def register(check: Check) -> Check:
    """Add check to the registry (ValueError if its exercise already has a check of that name)."""
    if not isinstance(check, Check):
        raise TypeError(f"register expects a Check, got {type(check).__name__}")
    known = _registry.get(check.key)
    if known is not None and known != check:
        raise ValueError(f"two checks named {check.key!r}; give one of them name=...")
    _registry[check.key] = check
    return check


def all_checks() -> list[Check]:
    """Every registered check, after importing every module of this package (sorted by exercise id)."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return sorted(_registry.values(), key=lambda check: (exercise_sort_key(check.exercise), check.name))


def exercise_sort_key(exercise_id: str) -> tuple:
    """'8.10' after '8.9': numbers compared as numbers."""
    return tuple(int(part) if part.isdigit() else part for part in exercise_id.split("."))


def resolve(spec: str, modules: dict | None = None):
    """The function named by 'module:function' (looked up in modules first, then imported)."""
    module_name, function_name = spec.split(":")
    module = (modules or {}).get(module_name)
    if module is None:
        module = importlib.import_module(module_name)
    try:
        return getattr(module, function_name)
    except AttributeError:
        raise ValueError(f"{spec}: module {module_name} has no function {function_name!r}") from None


def split_values(values: dict, what: str) -> tuple[dict[str, np.ndarray], dict]:
    """({name: array}, {name: scalar}) from a draw's or a probe's dict; TypeError on anything else.
    NumPy scalars count as arrays (0-d), so their dtype is kept."""
    if not isinstance(values, dict):
        raise TypeError(f"{what} must return a dict, got {type(values).__name__}")
    arrays, scalars = {}, {}
    for name, value in values.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise TypeError(f"{what}: keys must be identifiers, got {name!r}")
        if isinstance(value, SCALAR_TYPES) and not isinstance(value, np.generic):
            scalars[name] = value
        elif isinstance(value, (np.ndarray, np.generic)):
            array = np.asarray(value)
            if array.dtype.kind not in "biufc":
                raise TypeError(f"{what}: {name} has dtype {array.dtype}; expected a numeric or bool array")
            arrays[name] = array
        else:
            raise TypeError(f"{what}: {name} must be an ndarray, int, float, bool or str, "
                            f"got {type(value).__name__}")
    return arrays, scalars


def compare(expected: dict, got: dict, rtol: float, atol: float) -> str | None:
    """None when got matches expected key by key (shape, dtype kind, values within tolerance);
    otherwise the first mismatch in words."""
    if set(expected) != set(got):
        missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
        return f"output keys differ: missing {missing}, unexpected {extra}"
    for name in sorted(expected):
        want, have = expected[name], got[name]
        if isinstance(want, str) or isinstance(have, str):
            if want != have:
                return f"{name}: expected {want!r}, got {have!r}"
            continue
        want, have = np.asarray(want), np.asarray(have)
        if want.shape != have.shape:
            return f"{name}: expected shape {want.shape}, got {have.shape}"
        kinds = {"b": "bool", "i": "int", "u": "int", "f": "float", "c": "complex"}
        if kinds.get(want.dtype.kind) != kinds.get(have.dtype.kind):
            return f"{name}: expected a {want.dtype} array, got {have.dtype}"
        if want.dtype.kind in "biu" and have.dtype.kind in "biu":
            bad = want != have
        else:
            w, h = want.astype(np.complex128 if want.dtype.kind == "c" else np.float64), \
                have.astype(np.complex128 if have.dtype.kind == "c" else np.float64)
            with np.errstate(invalid="ignore", over="ignore"):
                close = np.abs(h - w) <= atol + rtol * np.abs(w)
            same_special = (np.isnan(w) & np.isnan(h)) | (np.isinf(w) & (w == h))
            bad = ~(close & ~np.isnan(w) & ~np.isnan(h) & ~np.isinf(w) & ~np.isinf(h) | same_special)
        if np.any(bad):
            count = int(np.count_nonzero(bad))
            index = tuple(int(i) for i in np.argwhere(np.atleast_1d(bad))[0]) if want.ndim else ()
            where = f" at index {index}" if want.ndim else ""
            return (f"{name}: {count} of {max(want.size, 1)} values differ (tolerance rtol={rtol:g}, "
                    f"atol={atol:g}); first{where}: expected {want[index]!r}, got {have[index]!r}")
    return None


__all__ = ["Check", "all_checks", "compare", "exercise_sort_key", "register", "resolve", "split_values"]
