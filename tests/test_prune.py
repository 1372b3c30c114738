"""Pruning: masks survive optimizers, exact counts, torch's global_unstructured, schedules, structured shrink."""
import copy

import numpy as np
import pytest

import tinyq as tq
from tinyq import functional as F
from tinyq import models, nn, optim, prune


def _mlp(seed=0):
    return models.mlp((64, 32, 16, 10), rng=np.random.default_rng(seed))


def _batch(seed=1, n=24):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 64)).astype(np.float32), rng.integers(0, 10, n)


def _steps(model, opt, x, y, count):
    for _ in range(count):
        loss = F.cross_entropy(model(tq.tensor(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("make_optimizer", [
    lambda p: optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-3),
    lambda p: optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
    lambda p: optim.Adam(p, lr=0.01),
    lambda p: optim.AdamW(p, lr=0.01, weight_decay=0.1)], ids=["sgd-momentum-wd", "nesterov", "adam", "adamw"])
def test_pruned_weights_stay_exactly_zero_through_optimizer_state(make_optimizer):
    model, (x, y) = _mlp(), _batch()
    opt = make_optimizer(list(model.parameters()))
    _steps(model, opt, x, y, 5)                 # momentum / Adam moments are non-zero before pruning
    masks = prune.global_magnitude(model, 0.7)
    _steps(model, opt, x, y, 60)
    for key, (module, _) in prune.prunable(model).items():
        assert np.all(module.weight.data[masks[key] == 0] == 0)
        assert np.any(module.weight.data[masks[key] == 1] != 0)
    prune.remove_all(model)
    assert prune.sparsity_report(model)[-1]["zeros"] == round(0.7 * sum(m.size for m in masks.values()))


def test_global_magnitude_zeroes_exactly_the_k_smallest():
    model = _mlp(3)
    weights = {k: m.weight.data.copy() for k, (m, _) in prune.prunable(model).items()}
    masks = prune.global_magnitude(model, 0.37)
    everything = [(abs(float(v)), key, i) for key, w in weights.items() for i, v in enumerate(w.ravel())]
    k = round(0.37 * len(everything))
    expected_zero = {(key, i) for _, key, i in sorted(everything)[:k]}
    got_zero = {(key, i) for key, m in masks.items() for i in np.flatnonzero(m.ravel() == 0)}
    assert got_zero == expected_zero


def test_layerwise_magnitude_prunes_each_layer_to_the_sparsity():
    model = _mlp(4)
    masks = prune.magnitude(model, 0.5)
    for key, mask in masks.items():
        assert np.sum(mask == 0) == round(0.5 * mask.size)


def test_global_masks_equal_torch_global_unstructured():
    torch = pytest.importorskip("torch")
    from torch.nn.utils import prune as torch_prune
    model = _mlp(5)
    torch_layers = []
    for module, _ in prune.prunable(model).values():
        layer = torch.nn.Linear(module.in_features, module.out_features)
        layer.weight.data = torch.tensor(module.weight.data.copy())
        torch_layers.append(layer)
    torch_prune.global_unstructured([(layer, "weight") for layer in torch_layers],
                                    pruning_method=torch_prune.L1Unstructured, amount=0.8)
    masks = prune.global_magnitude(model, 0.8)
    for mask, layer in zip(masks.values(), torch_layers):
        np.testing.assert_array_equal(mask, layer.weight_mask.numpy())


def test_state_dict_saves_masks_and_strict_load_checks_them(tmp_path):
    model = _mlp(6)
    prune.global_magnitude(model, 0.6)
    tq.save(model.state_dict(), tmp_path / "m.npz")
    other = _mlp(7)
    prune.global_magnitude(other, 0.1)
    other.load_state_dict(tq.load(tmp_path / "m.npz"))
    x, _ = _batch()
    np.testing.assert_array_equal(other(tq.tensor(x)).data, model(tq.tensor(x)).data)
    with pytest.raises(KeyError, match="weight_mask"):
        _mlp(8).load_state_dict(model.state_dict())


def test_remove_keeps_the_parameter_object_and_the_zeros():
    model = _mlp(9)
    layer = model[1]
    param = layer.weight_orig if prune.is_pruned(layer) else layer.weight
    prune.magnitude(model, 0.5)
    assert layer.weight_orig is param
    prune.remove(layer)
    assert layer.weight is param and type(layer) is nn.Linear and "weight_mask" not in layer.state_dict()
    assert np.sum(param.data == 0) == round(0.5 * param.size)


def test_random_pruning_counts_and_is_seeded():
    a, b = _mlp(10), _mlp(10)
    ma = prune.random_prune(a, 0.3, np.random.default_rng(1))
    mb = prune.random_prune(b, 0.3, np.random.default_rng(1))
    for key in ma:
        np.testing.assert_array_equal(ma[key], mb[key])
        assert np.sum(ma[key] == 0) == round(0.3 * ma[key].size)


@pytest.mark.parametrize("sparsity", [-0.1, 1.0, 1.5])
def test_sparsity_outside_unit_interval_is_rejected(sparsity):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        prune.global_magnitude(_mlp(), sparsity)


def test_bad_inputs_have_clear_errors():
    model = _mlp()
    with pytest.raises(TypeError, match="sparsity"):
        prune.magnitude(model, "0.5")
    with pytest.raises(KeyError, match="no such parameter"):
        prune.magnitude(model, 0.5, names=["7.weight"])
    with pytest.raises(ValueError, match="shape"):
        prune.apply_mask(model[1], "weight", np.ones((2, 2)))
    prune.magnitude(model, 0.5)
    with pytest.raises(AttributeError, match="weight_orig"):
        model[1].weight = nn.Parameter(np.zeros((32, 64), np.float32))
    assert "1.weight" not in model.state_dict() and "1.weight_orig" in model.state_dict()
    with pytest.raises(ValueError, match="L1 or L2"):
        prune.unit_norms(np.ones((3, 3)), norm=3)


def test_iterative_pruning_only_grows_the_mask():
    model = _mlp(11)
    seen = []
    schedule = prune.iterative(model, 0.9, 3, retrain=lambda m: seen.append(prune.masks(m)))
    np.testing.assert_allclose(schedule[-1], 0.9)
    for before, after in zip(seen, seen[1:]):
        for key in before:
            assert np.all(after[key] <= before[key])


def test_lottery_ticket_rewinds_survivors_to_the_initial_weights():
    model = _mlp(12)
    initial = model.state_dict()
    x, y = _batch()
    opt = optim.SGD(list(model.parameters()), lr=0.1)
    rounds_seen = []

    def train(m):
        rounds_seen.append({k: m.weight.data.copy() for k, (m, _) in prune.prunable(m).items()})
        _steps(m, opt, x, y, 3)

    prune.lottery_ticket(model, initial, 0.8, 2, train)
    for key, mask in prune.masks(model).items():
        np.testing.assert_array_equal(rounds_seen[-1][key], initial[key] * mask)   # rewound, then trained
    assert prune.sparsity_report(model)[-1]["sparsity"] == pytest.approx(0.8, abs=1e-3)


@pytest.mark.exercise("9.1")
def test_magnitude_masks_by_hand():
    masks = prune.magnitude_masks([np.array([0.5, -0.1, 3.0]), np.array([[-2.0, 0.2], [0.05, 1.0]])], 3 / 7)
    np.testing.assert_array_equal(masks[0], [1, 0, 1])
    np.testing.assert_array_equal(masks[1], [[1, 0], [0, 1]])
    np.testing.assert_array_equal(prune.magnitude_masks([np.array([1.0, -1.0, 1.0, 2.0])], 0.5)[0], [0, 0, 1, 1])
    assert prune.magnitude_masks([np.arange(10.0)], 0.0)[0].sum() == 10


@pytest.mark.exercise("9.2")
def test_agp_schedule_formula():
    assert prune.agp_sparsity(0, 0.9, num_steps=10) == 0.0
    assert prune.agp_sparsity(5, 0.9, num_steps=10) == pytest.approx(0.9 * (1 - 0.5 ** 3))
    assert prune.agp_sparsity(10, 0.9, num_steps=10) == pytest.approx(0.9)
    assert prune.agp_sparsity(99, 0.9, num_steps=10) == pytest.approx(0.9)
    # t0 = 100, Δt = 10, n = 4: at t = 125 two updates happened (t = 110, 120)
    assert prune.agp_sparsity(125, 0.8, 0.2, start=100, num_steps=4, interval=10) == \
        pytest.approx(0.8 + (0.2 - 0.8) * (1 - 2 / 4) ** 3)
    assert prune.agp_sparsity(50, 0.8, 0.2, start=100, num_steps=4, interval=10) == pytest.approx(0.2)


# ---------------------------------------------------------------------------- structured pruning and shrink
def _convnet(seed=0):
    return models.convnet8(width=8, rng=np.random.default_rng(seed))


MODELS = {"mlp": (_mlp, (6, 64)), "convnet-bn": (_convnet, (6, 1, 8, 8)),
          "lenet": (lambda s: models.lenet5(image_size=28, rng=np.random.default_rng(s)), (6, 1, 28, 28)),
          "mlp-bn": (lambda s: models.mlp((64, 32, 16, 10), rng=np.random.default_rng(s), batch_norm=True), (6, 64))}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("training", [False, True])
def test_shrink_gives_identical_outputs_with_fewer_units(name, training):
    make, shape = MODELS[name]
    model = make(0)
    x = np.random.default_rng(2).normal(size=shape).astype(np.float32)
    prune.structured(model, 0.5, norm=2)
    model.train(training)
    small = prune.shrink(model)
    assert small.num_parameters() < model.num_parameters()
    assert not any(prune.is_pruned(m) for m in small.modules()) and not prune.masks(small)
    np.testing.assert_allclose(small(tq.tensor(x)).data, model(tq.tensor(x)).data, rtol=1e-5, atol=1e-5)
    for i, _, _, _ in prune.unit_chains(model):
        units = small[i].weight.shape[0]
        assert units == model[i].weight.shape[0] - round(0.5 * model[i].weight.shape[0])


def test_structured_drops_the_units_of_smallest_l1_norm():
    model = _mlp(1)
    norms = np.abs(model[1].weight.data).sum(axis=1)
    keep = prune.structured(model, 0.25, norm=1, layers=[1])[1]
    dropped = np.sort(np.argsort(norms)[:8])
    np.testing.assert_array_equal(np.flatnonzero(~keep), dropped)
    assert np.all(model[1].weight.data[~keep] == 0) and np.all(model[1].bias.data[~keep] == 0)
    with pytest.raises(KeyError, match="structured-prunable"):
        prune.structured(model, 0.5, layers=[5])


@pytest.mark.exercise("9.3")
def test_slice_input_units_by_hand():
    weight = np.arange(2 * 6, dtype=np.float64).reshape(2, 6)       # 3 units × 2 inputs each
    keep = np.array([True, False, True])
    np.testing.assert_array_equal(prune.slice_input_units(weight, keep, 2), [[0, 1, 4, 5], [6, 7, 10, 11]])
    conv = np.arange(2 * 3 * 2 * 2, dtype=np.float64).reshape(2, 3, 2, 2)
    np.testing.assert_array_equal(prune.slice_input_units(conv, keep, 1), conv[:, [0, 2]])


# ---------------------------------------------------------------------------- composition with quantization
def _loader(n=64):
    from tinyq.data import ArrayDataset, DataLoader
    rng = np.random.default_rng(3)
    return DataLoader(ArrayDataset(rng.normal(size=(n, 64)).astype(np.float32), rng.integers(0, 10, n)), 32)


def test_ptq_keeps_pruned_weights_as_exact_zero_codes():
    from tinyq.quant.config import QuantConfig
    from tinyq.quant.ptq import quantize_ptq
    from tinyq.quant.qat import quantized_weights
    model = _mlp(13)
    masks = prune.global_magnitude(model, 0.8)
    qsim = quantize_ptq(prune.remove_all(model), _loader(), QuantConfig.uniform(bits=4))   # bake the zeros in
    codes = quantized_weights(qsim)
    assert set(codes) == set(masks)
    for key, qweight in codes.items():
        assert np.all(qweight.values[masks[key] == 0] == 0)
        assert np.all(qweight.dequantize()[masks[key] == 0] == 0)


def test_qat_with_masks_carried_over_keeps_zero_codes():
    from tinyq.quant.config import QuantConfig
    from tinyq.quant.qat import convert, prepare_qat, quantized_weights
    model = _mlp(14)
    masks = prune.global_magnitude(model, 0.8)
    qmodel = prune.apply_masks(prepare_qat(prune.remove_all(model), QuantConfig.uniform(bits=4)), masks)
    opt = optim.SGD(list(qmodel.parameters()), lr=0.05, momentum=0.9)
    x, y = _batch()
    _steps(qmodel, opt, x, y, 20)
    codes = quantized_weights(convert(qmodel))
    assert set(codes) == set(masks)
    for key, qweight in codes.items():
        assert np.all(qweight.values[masks[key] == 0] == 0)


def test_prune_command_writes_its_tables(tmp_path, monkeypatch, capsys):
    import json
    from tinyq.cli import main
    monkeypatch.setenv("TINYQ_FAST", "1")
    code = main(["prune", "--sparsities", "0.5", "--retrain-epochs", "1", "--epochs", "1", "--out", str(tmp_path),
                 "--no-progress", "--seed", "3"])
    assert code in (None, 0)
    records = json.loads((tmp_path / "pruning.json").read_text())
    records = records["records"] if isinstance(records, dict) else records
    assert {r["method"] for r in records} >= {"one-shot global", "agp global", "one-shot structured"}
    assert (tmp_path / "compression.csv").exists() and (tmp_path / "pruning.png").exists()
    assert "Deep-Compression" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:      # argparse rejects it (tests/test_cli_bad_input.py)
        main(["prune", "--sparsities", "1.0", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "--sparsities" in capsys.readouterr().err


def test_ptq_quantizes_a_pruned_model_with_its_masks_kept():
    """A pruned layer is quantized, not skipped; same outputs as PTQ of the model with the zeros baked in."""
    from tinyq.quant.config import QuantConfig
    from tinyq.quant.ptq import quantize_ptq
    from tinyq.quant.qat import quantizable_layers, quantized_weights
    model = _mlp(15)
    masks = prune.global_magnitude(model, 0.8)
    assert {f"{name}.weight" for name in quantizable_layers(model)} == set(masks)
    config = QuantConfig.uniform(bits=4)
    qsim = quantize_ptq(model, _loader(), config)
    codes = quantized_weights(qsim)
    assert set(codes) == set(masks)
    for key, qweight in codes.items():
        assert np.all(qweight.values[masks[key] == 0] == 0)
        assert np.mean(qweight.values[masks[key] == 1] != 0) > 0.5
    assert set(prune.masks(qsim)) == set(masks)                  # the masks are kept
    for key, mask in prune.masks(qsim).items():
        np.testing.assert_array_equal(mask, masks[key])
    baked = quantize_ptq(prune.remove_all(copy.deepcopy(model)), _loader(), config)
    x, _ = _batch()
    np.testing.assert_array_equal(qsim(tq.tensor(x)).data, baked(tq.tensor(x)).data)


@pytest.mark.parametrize("fake_quant", ["ste", "lsq"])
def test_qat_on_a_pruned_model_keeps_pruned_weights_zero_codes_while_training(fake_quant):
    from tinyq.quant.config import QuantConfig
    from tinyq.quant.qat import QuantLinear, convert, prepare_qat, quantized_weights
    model = _mlp(16)
    masks = prune.global_magnitude(model, 0.8)
    qmodel = prepare_qat(model, QuantConfig.uniform(bits=4, fake_quant=fake_quant))
    assert sum(isinstance(m, QuantLinear) for m in qmodel.modules()) == len(masks)
    opt = optim.Adam(list(qmodel.parameters()), lr=0.01)
    x, y = _batch()
    before = {k: np.array(v, copy=True) for k, v in qmodel.state_dict().items()}
    _steps(qmodel, opt, x, y, 20)
    assert any(np.any(before[k] != np.asarray(v)) for k, v in qmodel.state_dict().items() if k.endswith("weight_orig"))
    codes = quantized_weights(convert(qmodel))
    assert set(codes) == set(masks)
    for key, qweight in codes.items():
        assert np.all(qweight.values[masks[key] == 0] == 0)


def test_fold_batchnorm_folds_into_a_pruned_conv_and_keeps_its_mask():
    from tinyq.quant.fold import fold_batchnorm
    rng = np.random.default_rng(17)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, rng=rng), nn.BatchNorm2d(3))
    bn = model[1]
    bn.running_mean, bn.running_var = rng.normal(size=3).astype(np.float32), rng.uniform(0.5, 2, 3).astype(np.float32)
    masks = prune.magnitude(model, 0.5)
    model.eval()
    folded = fold_batchnorm(model).eval()
    assert isinstance(folded[1], nn.Identity) and prune.is_pruned(folded[0])
    np.testing.assert_array_equal(prune.masks(folded)["0.weight"], masks["0.weight"])
    x = rng.normal(size=(2, 2, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(folded(tq.tensor(x)).data, model(tq.tensor(x)).data, rtol=1e-5, atol=1e-5)
