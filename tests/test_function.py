"""tinyq.function: Function.apply and the function-mode extension point."""
import numpy as np
import pytest

import tinyq as tq
from tinyq import ops
from tinyq.function import FunctionMode, active_modes, install_mode, remove_mode


class Recorder(FunctionMode):
    def __init__(self, log, name):
        self.log, self.name = log, name

    def __call__(self, function, apply, *inputs, **options):
        self.log.append((self.name, function.__name__))
        return apply(*inputs, **options)


def test_apply_without_modes_records_the_graph_only_when_needed():
    a = tq.tensor(np.array([1.0, 2.0], dtype=np.float32), requires_grad=True)
    out = ops.Mul.apply(a, np.float32(3.0))
    assert out._ctx is not None and out._ctx.inputs[0] is a
    with tq.no_grad():
        assert ops.Mul.apply(a, np.float32(3.0))._ctx is None
    assert ops.Mul.apply(a.detach(), np.float32(3.0))._ctx is None


def test_modes_see_every_apply_innermost_first_and_are_off_during_their_own_call():
    log, before = [], active_modes()
    a = tq.tensor(np.ones(3, dtype=np.float32))
    with Recorder(log, "outer"), Recorder(log, "inner"):
        (a + a).sum()
    assert log == [("inner", "Add"), ("outer", "Add"), ("inner", "Sum"), ("outer", "Sum")]
    assert active_modes() == before


class CastMatMulToFloat16(FunctionMode):
    """The autocast pattern: chosen Functions get float16 inputs, every other one runs as it is."""

    def __call__(self, function, apply, *inputs, **options):
        if function is ops.MatMul:
            inputs = [t.astype(np.float16) if isinstance(t, tq.Tensor) else t for t in inputs]   # runs ops.Cast
        return apply(*inputs, **options)


def test_an_autocast_like_mode_casts_the_inputs_of_chosen_functions_only():
    rng = np.random.default_rng(0)
    a = tq.tensor(rng.standard_normal((4, 5)).astype(np.float32), requires_grad=True)
    b = tq.tensor(rng.standard_normal((5, 3)).astype(np.float32))
    with CastMatMulToFloat16():
        product = a @ b
        total = product.astype(np.float32).sum()
    assert product.dtype == np.float16 and total.dtype == np.float32
    exact = a.data.astype(np.float16) @ b.data.astype(np.float16)
    np.testing.assert_array_equal(product.data, exact)
    total.backward()
    assert a.grad.dtype == np.float32                       # the cast hands the gradient back in float32
    np.testing.assert_allclose(a.grad, np.tile(b.data.sum(axis=1), (4, 1)), rtol=1e-2)


def test_install_mode_is_outermost_and_idempotent_and_remove_mode_checks():
    log = []
    permanent = Recorder(log, "installed")
    install_mode(permanent)
    install_mode(permanent)
    try:
        with Recorder(log, "with"):
            assert active_modes()[0] is permanent and len([m for m in active_modes() if m is permanent]) == 1
            -tq.ones(2)
        assert log[:2] == [("with", "Neg"), ("installed", "Neg")]
    finally:
        remove_mode(permanent)
    with pytest.raises(ValueError, match="not active"):
        remove_mode(permanent)
    with pytest.raises(TypeError, match="callable"):
        install_mode(42)
