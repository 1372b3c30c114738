"""Optimizer steps update parameters and state in place, and leave the gradient alone."""
import numpy as np
import pytest

from tinyq import nn, optim

FACTORIES = {
    "sgd": lambda ps: optim.SGD(ps, lr=0.1),
    "sgd momentum + wd": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01),
    "sgd nesterov": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
    "adam + wd": lambda ps: optim.Adam(ps, lr=0.01, weight_decay=0.1),
    "adamw": lambda ps: optim.AdamW(ps, lr=0.01),
}


@pytest.mark.parametrize("name", FACTORIES)
def test_step_updates_parameter_and_state_in_place_and_keeps_the_gradient(name):
    rng = np.random.default_rng(0)
    p = nn.Parameter(rng.standard_normal((3, 4)).astype(np.float32))
    opt = FACTORIES[name]([p])
    data = p.data
    p.grad = rng.standard_normal((3, 4)).astype(np.float32)
    opt.step()
    state_arrays = {k: v for k, v in opt.state[0].items() if isinstance(v, np.ndarray)}
    for _ in range(3):
        grad = rng.standard_normal((3, 4)).astype(np.float32)
        p.grad = grad.copy()
        before = p.data.copy()
        opt.step()
        assert p.data is data                                    # the same array, updated in place
        assert not np.array_equal(p.data, before)
        np.testing.assert_array_equal(p.grad, grad)              # the gradient is not written into
        for key, array in state_arrays.items():
            assert opt.state[0][key] is array, key               # momentum / moments: same buffers
    assert p.data.dtype == np.float32
