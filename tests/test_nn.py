"""Modules: registration, state dicts with PyTorch names, train/eval, BatchNorm statistics, layers' errors."""
import numpy as np
import pytest

import tinyq as tq
from tinyq import functional as F, models, nn


def test_named_parameters_use_pytorch_names():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))
    assert [name for name, _ in model.named_parameters()] == [
        "0.weight", "0.bias", "1.weight", "1.bias", "4.weight", "4.bias"]
    assert list(model.state_dict()) == [
        "0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
        "1.num_batches_tracked", "4.weight", "4.bias"]


def test_state_dict_round_trip_restores_outputs():
    rng = np.random.default_rng(0)
    a, b = models.lenet5(rng=np.random.default_rng(1)), models.lenet5(rng=np.random.default_rng(2))
    x = tq.tensor(rng.standard_normal((2, 1, 28, 28)).astype(np.float32))
    assert not np.allclose(a(x).data, b(x).data)
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a(x).data, b(x).data)


def test_state_dict_is_a_copy():
    model = nn.Linear(2, 2)
    state = model.state_dict()
    state["weight"][:] = 100.0
    assert not np.any(model.weight.data == 100.0)


def test_load_state_dict_into_the_wrong_model_raises_clearly():
    state = models.mlp((64, 32, 10)).state_dict()
    with pytest.raises(ValueError, match=r"1.weight: expected shape \(16, 64\), got \(32, 64\)"):
        models.mlp((64, 16, 10)).load_state_dict(state)
    with pytest.raises(KeyError, match=r"missing keys \['5.weight', '5.bias'\]"):
        models.mlp((64, 32, 10, 10)).load_state_dict(state)
    state["extra"] = np.zeros(1)
    with pytest.raises(KeyError, match=r"unexpected keys \['extra'\]"):
        models.mlp((64, 32, 10)).load_state_dict(state)
    state = models.mlp((4, 2)).state_dict()
    state["1.weight"] = state["1.weight"].astype(np.float64)
    with pytest.raises(ValueError, match="expected dtype float32, got float64"):
        models.mlp((4, 2)).load_state_dict(state)


def test_train_and_eval_reach_every_submodule():
    model = models.convnet8()
    model.eval()
    assert all(not m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


def test_apply_visits_every_module():
    seen = []
    models.mlp((4, 3, 2)).apply(lambda m: seen.append(type(m).__name__))
    assert seen == ["Flatten", "Linear", "ReLU", "Linear", "Sequential"]


def test_batchnorm_training_normalises_and_updates_running_statistics():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((32, 3, 4, 4)) * 3 + 5).astype(np.float32)
    bn = nn.BatchNorm2d(3, momentum=0.1)
    y = bn(tq.tensor(x)).data
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, atol=1e-3)
    n = 32 * 16
    np.testing.assert_allclose(bn.running_mean, 0.1 * x.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(bn.running_var, 0.9 + 0.1 * x.var(axis=(0, 2, 3)) * n / (n - 1), rtol=1e-5)
    assert int(bn.num_batches_tracked) == 1
    bn.eval()
    y_eval = bn(tq.tensor(x)).data
    expected = (x - bn.running_mean.reshape(1, 3, 1, 1)) / np.sqrt(bn.running_var.reshape(1, 3, 1, 1) + 1e-5)
    np.testing.assert_allclose(y_eval, expected, rtol=1e-5, atol=1e-5)


def test_batchnorm_backward_matches_finite_differences():
    from tinyq.gradcheck import gradcheck
    rng = np.random.default_rng(3)
    bn = nn.BatchNorm1d(3)

    def fn(x, gamma, beta):
        bn.weight, bn.bias = nn.Parameter(gamma.data), nn.Parameter(beta.data)
        shape = (1, -1)
        mean, var = x.mean(axis=0, keepdims=True), x.var(axis=0, keepdims=True)
        return (x - mean) / (var + 1e-5).sqrt() * gamma.reshape(shape) + beta.reshape(shape)
    gradcheck(fn, [rng.standard_normal((5, 3)), rng.standard_normal(3), rng.standard_normal(3)], name="batchnorm")


def test_dropout_module_respects_eval_mode():
    drop = nn.Dropout(0.5, rng=np.random.default_rng(0))
    x = tq.ones(100)
    assert np.any(drop(x).data == 0)
    drop.eval()
    np.testing.assert_array_equal(drop(x).data, x.data)


def test_layer_shape_errors_name_expected_and_got():
    with pytest.raises(ValueError, match=r"Linear expects input \(N, 64\), got \(32, 63\)"):
        nn.Linear(64, 10)(tq.ones(32, 63))
    with pytest.raises(ValueError, match=r"BatchNorm2d expects input \(N, C, H, W\) with C=3, got \(2, 4, 5, 5\)"):
        nn.BatchNorm2d(3)(tq.ones(2, 4, 5, 5))
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(TypeError, match="Sequential expects Modules"):
        nn.Sequential(nn.ReLU(), lambda x: x)
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        models.get_model("resnet")


def test_model_zoo_shapes_and_parameter_counts():
    assert models.lenet5()(tq.ones(2, 1, 28, 28)).shape == (2, 10)
    assert models.lenet5(image_size=32)(tq.ones(1, 1, 32, 32)).shape == (1, 10)
    assert models.convnet8()(tq.ones(3, 1, 8, 8)).shape == (3, 10)
    assert models.mlp((64, 32, 10))(tq.ones(5, 1, 8, 8)).shape == (5, 10)
    # LeNet-5 with 28x28 input: 156 + 2416 + 48120 + 10164 + 850 parameters
    assert models.lenet5().num_parameters() == 156 + 2416 + 48120 + 10164 + 850


def test_same_rng_gives_the_same_model():
    a = models.convnet8(rng=np.random.default_rng(4)).state_dict()
    b = models.convnet8(rng=np.random.default_rng(4)).state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_repr_reads_like_pytorch():
    text = repr(models.mlp((4, 3, 2)))
    assert "(1): Linear(in_features=4, out_features=3, bias=True)" in text


def test_convnet_learns_a_tiny_problem():
    """A few steps on two separable classes drive the loss down (the whole stack trains)."""
    rng = np.random.default_rng(0)
    x = rng.random((32, 1, 8, 8)).astype(np.float32)
    y = (x[:, 0, :4].mean(axis=(1, 2)) > x[:, 0, 4:].mean(axis=(1, 2))).astype(np.int64)
    x[y == 1, 0, :4] += 0.5
    model = models.convnet8(num_classes=2, width=8, rng=rng)
    opt = tq.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(model(tq.tensor(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


def test_replacing_a_child_keeps_its_place_in_the_order():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    setattr(model, "0", nn.Linear(4, 3))
    assert [type(m).__name__ for m in model] == ["Linear", "ReLU", "Linear"]
    assert model(tq.ones(1, 4)).shape == (1, 2)
    assert list(model.state_dict())[:2] == ["0.weight", "0.bias"]


# ---- review (issue 9): tied weights, Sequential slices, Parameter assignment, evaluating changes nothing ----
def test_tied_weights_count_and_step_once():
    a, b = nn.Linear(3, 3, rng=np.random.default_rng(0)), nn.Linear(3, 3, rng=np.random.default_rng(1))
    b.weight = a.weight
    model = nn.Sequential(a, b)
    assert len(list(model.parameters())) == 3                    # a.weight, a.bias, b.bias
    assert model.num_parameters() == 9 + 3 + 3
    before = a.weight.data.copy()
    opt = tq.optim.SGD(model.parameters(), lr=0.1)
    for p in model.parameters():
        p.grad = np.ones(p.shape, dtype=np.float32)
    opt.step()
    np.testing.assert_allclose(a.weight.data, before - 0.1, rtol=1e-6)   # one step, not two
    assert set(model.state_dict()) == {"0.weight", "0.bias", "1.weight", "1.bias"}   # both names saved


def test_sequential_slice_keeps_the_state_dict_names():
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    tail = model[2:]
    assert list(tail.state_dict()) == ["2.weight", "2.bias", "4.weight", "4.bias"]
    assert tail[0] is model[2] and len(tail) == 3
    x = tq.tensor(np.ones((1, 3), dtype=np.float32))
    np.testing.assert_array_equal(tail(x).data, model[4](model[3](model[2](x))).data)


def test_assigning_a_plain_tensor_to_a_parameter_raises():
    layer = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="Parameter or None expected"):
        layer.weight = tq.tensor(np.zeros((2, 2), dtype=np.float32))
    assert "weight" in dict(layer.named_parameters())
    layer.bias = None                                            # None unregisters it, as in PyTorch
    assert "bias" not in dict(layer.named_parameters())
    layer.bias = nn.Parameter(np.zeros(2, dtype=np.float32))
    assert list(dict(layer.named_parameters())) == ["weight", "bias"]


def test_evaluating_restores_each_module_mode():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.ReLU())
    model.train()
    model[1].eval()                                              # a frozen BatchNorm inside a training model
    with model.evaluating():
        assert not any(m.training for m in model.modules())
    assert model.training and model[0].training and not model[1].training
