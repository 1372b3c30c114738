"""Mixed precision: the loss scaler's rule (by hand and against torch.amp.GradScaler), skipped steps,
clipping on unscaled gradients, underflow statistics, autocast's op policy, training on digits."""
import numpy as np
import pytest

import tinyq as tq
from tinyq import amp, lowp, nn, ops, optim
from tinyq import functional as F
from tinyq.formats import floats

F_, I_ = False, True          # a finite step, an inf step


# ------------------------------------------------------------------ the dynamic rule, by hand
# init 8, growth 2, backoff 0.5, interval 3. Derived step by step (t = growth tracker):
#   1 F t=1 S=8 | 2 F t=2 S=8 | 3 F t=3=interval -> S=16 t=0 | 4 I -> S=8 t=0 (skip) | 5 F t=1 | 6 F t=2
#   7 I -> S=4 t=0 (skip) | 8 F t=1 | 9 F t=2 | 10 F -> S=8 t=0 | 11 F t=1 S=8
SCRIPT = [F_, F_, F_, I_, F_, F_, I_, F_, F_, F_, F_]
SCALES_AFTER = [8, 8, 16, 8, 8, 8, 4, 4, 4, 8, 8]
TRACKERS_AFTER = [1, 2, 0, 0, 1, 2, 0, 1, 2, 0, 1]


@pytest.mark.exercise("12.1")
def test_update_scale_follows_the_hand_derived_sequence():
    scale, tracker, scales, trackers = 8.0, 0, [], []
    for found_inf in SCRIPT:
        scale, tracker = amp.update_scale(scale, tracker, found_inf, 2.0, 0.5, 3)
        scales.append(scale)
        trackers.append(tracker)
    assert scales == SCALES_AFTER and trackers == TRACKERS_AFTER


@pytest.mark.exercise("12.1")
def test_update_scale_defaults_and_other_factors():
    assert amp.update_scale(2.0 ** 16, 1998, False) == (2.0 ** 16, 1999)        # PyTorch's defaults
    assert amp.update_scale(2.0 ** 16, 1999, False) == (2.0 ** 17, 0)
    assert amp.update_scale(2.0 ** 16, 1999, True) == (2.0 ** 15, 0)
    assert amp.update_scale(12.0, 0, False, 3.0, 0.25, 1) == (36.0, 0)
    assert amp.update_scale(12.0, 5, True, 3.0, 0.25, 10) == (3.0, 0)
    big = float(np.finfo(np.float64).max)
    assert amp.update_scale(big, 0, False, 2.0, 0.5, 1) == (big, 0)               # growth to inf is refused


def _scripted_run(script, scaler, make_optimizer):
    """Drive scaler with gradients S*g where g = 1 (finite) or inf; returns (stepped flags, scales used, weights)."""
    p = nn.Parameter(np.ones(3, dtype=np.float32))
    optimizer = make_optimizer([p])
    stepped, used, weights = [], [], []
    for found_inf in script:
        scale = scaler.get_scale()
        p.grad = np.full(3, np.inf if found_inf else 1.0, dtype=np.float32) * np.float32(scale)
        stepped.append(scaler.step(optimizer))
        used.append(scale)
        scaler.update()
        weights.append(p.data.copy())
    return stepped, used, weights


@pytest.mark.exercise("12.3")
def test_loss_scaler_scales_and_skipped_steps_on_a_script():
    scaler = amp.LossScaler(init_scale=8.0, growth_interval=3)
    stepped, used, weights = _scripted_run(SCRIPT, scaler, lambda ps: optim.SGD(ps, lr=0.125))
    assert used == [8] + SCALES_AFTER[:-1]
    assert stepped == [not s for s in SCRIPT]
    assert scaler.get_scale() == SCALES_AFTER[-1]
    # the unscaled gradient is exactly 1: each applied step subtracts lr = 0.125, exactly
    expected = 1.0 - 0.125 * np.cumsum([not s for s in SCRIPT])
    np.testing.assert_array_equal([w[0] for w in weights], expected)
    assert scaler.history == list(zip([float(s) for s in used], stepped))


def test_static_scaler_keeps_its_scale_but_still_skips():
    scaler = amp.LossScaler(init_scale=4.0, dynamic=False, growth_interval=1)
    stepped, used, _ = _scripted_run([F_, I_, F_, F_], scaler, lambda ps: optim.SGD(ps, lr=0.1))
    assert used == [4.0] * 4 and stepped == [True, False, True, True]


def test_loss_scaler_agrees_with_torch_grad_scaler():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    script = list(rng.random(60) < 0.2)
    nan_steps = set(np.flatnonzero(rng.random(60) < 0.3))
    ours = amp.LossScaler(init_scale=2.0 ** 10, growth_factor=4.0, backoff_factor=0.25, growth_interval=3)
    theirs = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10, growth_factor=4.0, backoff_factor=0.25,
                                  growth_interval=3)
    p_ours = nn.Parameter(np.ones(2, dtype=np.float32))
    p_theirs = torch.nn.Parameter(torch.ones(2))
    opt_ours, opt_theirs = optim.SGD([p_ours], lr=2 ** -6), torch.optim.SGD([p_theirs], lr=2 ** -6)
    for i, bad in enumerate(script):
        theirs.scale(p_theirs.sum())                       # GradScaler needs one scale() per iteration
        g = np.float32(np.nan if i in nan_steps else np.inf) if bad else np.float32(0.5)
        p_ours.grad = np.full(2, g, dtype=np.float32) * np.float32(ours.get_scale())
        p_theirs.grad = torch.full((2,), float(g)) * theirs.get_scale()
        ours.step(opt_ours)
        theirs.step(opt_theirs)
        ours.update()
        theirs.update()
        assert ours.get_scale() == theirs.get_scale()
        assert ours.state_dict()["_growth_tracker"] == theirs.state_dict()["_growth_tracker"]
        np.testing.assert_array_equal(p_ours.data, p_theirs.detach().numpy())
    assert {k: float(v) for k, v in ours.state_dict().items() if k != "dynamic"} == \
        {k: float(v) for k, v in theirs.state_dict().items()}


# ------------------------------------------------------------------ skipping, unscaling, clipping
@pytest.mark.exercise("12.3")
def test_a_skipped_step_changes_no_weight_and_no_optimizer_moment():
    p = nn.Parameter(np.array([1.0, -2.0, 3.0], dtype=np.float32))
    optimizer = optim.Adam([p], lr=0.1)
    scaler = amp.LossScaler(init_scale=2.0 ** 4)
    p.grad = np.array([0.5, 0.25, -1.0], dtype=np.float32) * np.float32(16)
    assert scaler.step(optimizer) is True
    scaler.update()
    before = (p.data.copy(), {k: np.copy(v) for k, v in optimizer.state[0].items()})
    p.grad = np.array([np.inf, 1.0, np.nan], dtype=np.float32)
    assert scaler.step(optimizer) is False
    np.testing.assert_array_equal(p.data, before[0])
    assert optimizer.state[0].keys() == before[1].keys()
    for key, value in before[1].items():
        np.testing.assert_array_equal(optimizer.state[0][key], value)
    assert scaler.update() == 8.0


@pytest.mark.exercise("12.2")
def test_unscale_grads_is_exact_for_powers_of_two_and_finds_inf_and_nan(rng):
    grads = [rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal(5).astype(np.float32)]
    scaled = [g * np.float32(2.0 ** 13) for g in grads]
    unscaled, found_inf = amp.unscale_grads(scaled, 2.0 ** -13)
    assert found_inf is False
    for g, u in zip(grads, unscaled):
        assert u.dtype == np.float32
        np.testing.assert_array_equal(u, g)                 # exact: scaling by 2^k shifts the exponent
    for bad in (np.inf, -np.inf, np.nan):
        broken = [scaled[0], scaled[1].copy()]
        broken[1][2] = bad
        assert amp.unscale_grads(broken, 2.0 ** -13)[1] is True
    # a float16 gradient is unscaled in float32: 60000 * 2^-20 is far below fp16's normal range
    half = [np.array([60000.0, 3.0], dtype=np.float16)]
    out, _ = amp.unscale_grads(half, 2.0 ** -20)
    assert out[0].dtype == np.float32 and out[0][0] == np.float32(60000.0 * 2.0 ** -20)


def test_clipping_happens_on_unscaled_gradients(rng):
    grads = [rng.standard_normal((4, 3)).astype(np.float32) * 3, rng.standard_normal(4).astype(np.float32)]
    start = [rng.standard_normal(g.shape).astype(np.float32) for g in grads]
    # reference: fp32, no scaling
    ref = [nn.Parameter(w.copy()) for w in start]
    for p, g in zip(ref, grads):
        p.grad = g.copy()
    ref_norm = optim.clip_grad_norm(ref, 1.0)
    optim.SGD(ref, lr=0.5).step()
    # scaled by 2^10, unscaled before clipping
    params = [nn.Parameter(w.copy()) for w in start]
    for p, g in zip(params, grads):
        p.grad = g * np.float32(2.0 ** 10)
    optimizer = optim.SGD(params, lr=0.5)
    scaler = amp.LossScaler(init_scale=2.0 ** 10)
    scaler.unscale_(optimizer)
    assert optim.clip_grad_norm(params, 1.0) == pytest.approx(ref_norm, rel=1e-6)
    assert scaler.step(optimizer) is True                  # does not unscale a second time
    for p, r in zip(params, ref):
        np.testing.assert_allclose(p.data, r.data, rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------ bad input, checkpoints
@pytest.mark.parametrize("scale", [0.0, -1.0, np.inf, np.nan])
def test_a_non_finite_or_non_positive_scale_is_an_error(scale):
    with pytest.raises(ValueError, match="finite, positive"):
        amp.LossScaler(init_scale=scale)
    state = amp.LossScaler().state_dict()
    state["scale"] = np.array(scale)
    with pytest.raises(ValueError, match="finite, positive"):
        amp.LossScaler().load_state_dict(state)


def test_scaler_misuse_gives_clear_errors():
    p = nn.Parameter(np.ones(2, dtype=np.float32))
    p.grad = np.ones(2, dtype=np.float32)
    optimizer = optim.SGD([p], lr=0.1)
    scaler = amp.LossScaler()
    with pytest.raises(RuntimeError, match="update.. needs a step"):
        scaler.update()
    scaler.unscale_(optimizer)
    with pytest.raises(RuntimeError, match="already been called"):
        scaler.unscale_(optimizer)
    scaler.step(optimizer)
    with pytest.raises(RuntimeError, match="step.. has already been called"):
        scaler.step(optimizer)
    for bad in (dict(growth_factor=1.0), dict(backoff_factor=1.0), dict(growth_interval=0),
                dict(growth_interval=2.5)):
        with pytest.raises(ValueError):
            amp.LossScaler(**bad)
    with pytest.raises(TypeError):
        amp.LossScaler(init_scale="big")
    with pytest.raises(TypeError, match="Tensor or a number"):
        scaler.scale("loss")
    with pytest.raises(TypeError, match="optimizer or an iterable"):
        amp.LossScaler().unscale_(3)


def test_state_dict_round_trips_through_a_checkpoint(tmp_path):
    scaler = amp.LossScaler(init_scale=2.0 ** 5, growth_interval=4, backoff_factor=0.25)
    _scripted_run([F_, I_, F_, F_], scaler, lambda ps: optim.SGD(ps, lr=0.1))
    tq.save(scaler.state_dict(), tmp_path / "scaler.npz")
    resumed = amp.LossScaler()
    resumed.load_state_dict(tq.load(tmp_path / "scaler.npz"))
    assert repr(resumed) == repr(scaler)
    rest = [F_, F_, I_, F_, F_, F_, F_]
    assert _scripted_run(rest, resumed, lambda ps: optim.SGD(ps, lr=0.1))[1] == \
        _scripted_run(rest, scaler, lambda ps: optim.SGD(ps, lr=0.1))[1]
    state = scaler.state_dict()
    del state["dynamic"]
    with pytest.raises(KeyError, match="missing keys"):
        resumed.load_state_dict(state)


# ------------------------------------------------------------------ underflow statistics
@pytest.mark.exercise("12.4")
def test_underflow_fractions_match_numpy_float16(rng):
    grads = (rng.choice([-1, 1], 4000) * 2.0 ** rng.uniform(-30, -10, 4000)).astype(np.float32)
    grads[:100] = 0.0
    as_half = grads.astype(np.float16)                       # NumPy's conversion rounds to nearest even
    nonzero = np.count_nonzero(grads)
    expected_zero = np.count_nonzero((grads != 0) & (as_half == 0)) / nonzero
    expected_sub = np.count_nonzero((as_half != 0) & (np.abs(as_half) < np.finfo(np.float16).tiny)) / nonzero
    stats = amp.underflow_fractions(grads, floats.FP16)
    assert stats["nonzero"] == nonzero == 3900
    assert stats["zero"] == pytest.approx(expected_zero, abs=1e-12)
    assert stats["subnormal"] == pytest.approx(expected_sub, abs=1e-12)
    assert 0.2 < stats["zero"] < 0.3 and 0.5 < stats["subnormal"] < 0.6   # 5 and 11 of the 20 binades


@pytest.mark.exercise("12.4")
def test_underflow_fractions_at_the_tie_points():
    q, normal = 2.0 ** -24, 2.0 ** -14                        # fp16: smallest subnormal, smallest normal
    edges = np.array([q / 2, np.nextafter(q / 2, 1), normal - q / 2, np.nextafter(normal - q / 2, 0), normal])
    # q/2 ties to 0 (even); just above it rounds to q (subnormal); normal - q/2 ties up to 2^-14 (normal),
    # just below it rounds down to 2^-14 - q (the largest subnormal)
    np.testing.assert_array_equal(edges.astype(np.float16), [0, q, normal, normal - q, normal])
    stats = amp.underflow_fractions(edges, floats.FP16)
    assert stats == {"zero": 1 / 5, "subnormal": 2 / 5, "nonzero": 5}
    bf16 = amp.underflow_fractions(edges, floats.BF16)
    assert bf16 == {"zero": 0.0, "subnormal": 0.0, "nonzero": 5}
    assert amp.underflow_fractions(np.zeros(4), floats.FP16) == {"zero": 0.0, "subnormal": 0.0, "nonzero": 0}


def test_log2_histogram_counts_binades():
    grads = np.array([0.0, 1.0, 1.5, -2.0, 2.0 ** -30, 2.0 ** -50, 2.0 ** 30, np.inf], dtype=np.float64)
    counts = amp.log2_histogram(grads, amp.log2_bins(-40, 20))
    assert counts.sum() == 6                                  # zeros and inf are left out
    assert counts[40] == 2 and counts[41] == 1 and counts[10] == 1
    assert counts[0] == 1 and counts[-1] == 1                 # out of range lands in the end bins
    assert amp.format_range(floats.FP16) == {"min_subnormal": -24.0, "min_normal": -14.0,
                                             "max": pytest.approx(np.log2(65504.0))}


# ------------------------------------------------------------------ autocast
def _tiny_model(rng):
    return nn.Sequential(nn.Linear(6, 5, rng=rng), nn.ReLU(), nn.Linear(5, 3, rng=rng))


def _grads(model, x, y, multiplier, dtype=None, scale=1.0, statistics=None):
    model.zero_grad()
    with amp.autocast(dtype or "float16", statistics=statistics, enabled=dtype is not None):
        loss = F.cross_entropy(model(tq.tensor(x)), y) * multiplier
    (loss * scale).backward()
    return [p.grad / np.float32(scale) for p in model.parameters()]


def test_small_gradients_underflow_in_fp16_survive_with_scaling_and_in_bf16(rng):
    model = _tiny_model(rng)
    x = rng.standard_normal((8, 6)).astype(np.float32)
    y = rng.integers(0, 3, 8)
    multiplier = 2.0 ** -28                                    # every gradient is below fp16's 2^-24 / 2
    exact = _grads(model, x, y, multiplier)
    assert all(np.count_nonzero(g) == g.size for g in exact)
    assert max(float(np.max(np.abs(g))) for g in exact) < 2.0 ** -25
    stats = amp.GradientStatistics()
    fp16 = _grads(model, x, y, multiplier, "float16", statistics=stats)
    assert all(np.count_nonzero(g) == 0 for g in fp16)        # everything underflowed
    rows = {(r["layer"], r["gradient"]): r for r in stats.table()}
    assert rows[("1.Linear", "output")]["underflow_to_zero"] == 1.0   # the statistic shows it at the first rounding
    scaled = _grads(model, x, y, multiplier, "float16", scale=2.0 ** 20)
    bf16 = _grads(model, x, y, multiplier, "bf16", statistics=(bf16_stats := amp.GradientStatistics()))
    # scaling is exact: the same as a 2^20 times larger loss, unscaled by 2^-20 in fp32, bit for bit
    large_loss = _grads(model, x, y, multiplier * 2.0 ** 20, "float16")
    for g, g_large in zip(scaled, large_loss):
        np.testing.assert_array_equal(g, g_large * np.float32(2.0 ** -20))
    for low, tolerance in ((scaled, 2 ** -7), (bf16, 2 ** -4)):   # fp16 / bf16 roundings in forward and backward
        for g, ref in zip(low, exact):
            np.testing.assert_allclose(g, ref, rtol=tolerance, atol=tolerance * float(np.max(np.abs(ref))))
        assert all(np.count_nonzero(g) == g.size for g in low)
    assert all(r["underflow_to_zero"] == 0.0 and r["subnormal"] == 0.0 for r in bf16_stats.table())


def test_autocast_matmul_is_the_lowp_gemm_and_gradients_are_fp16(rng):
    a = tq.tensor(rng.standard_normal((5, 7)).astype(np.float32), requires_grad=True)
    b = tq.tensor(rng.standard_normal((7, 4)).astype(np.float32), requires_grad=True)
    with amp.autocast("float16"):
        out = a @ b
    out.backward(np.full((5, 4), 0.1, dtype=np.float32))
    a2 = tq.tensor(a.data, requires_grad=True)
    b2 = tq.tensor(b.data, requires_grad=True)
    ref = lowp.lowp_matmul(a2, b2, floats.FP16)
    ref.backward(np.full((5, 4), 0.1, dtype=np.float16))
    assert out.dtype == np.float32 and a.grad.dtype == np.float32 and b.grad.dtype == np.float32
    np.testing.assert_array_equal(out.data, ref.data.astype(np.float32))
    np.testing.assert_array_equal(a.grad, a2.grad)
    np.testing.assert_array_equal(b.grad, b2.grad)
    assert lowp.on_grid(a.grad, floats.FP16) and lowp.on_grid(b.grad, floats.FP16)
    plain = a @ b                                             # outside the block: plain fp32 again
    np.testing.assert_allclose(plain.data, a.data @ b.data, rtol=1e-6)
    assert not lowp.on_grid(plain, floats.FP16)


def test_autocast_conv_matches_lowp_conv2d(rng):
    x = tq.tensor(rng.standard_normal((2, 3, 6, 6)).astype(np.float32))
    w = tq.tensor(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), requires_grad=True)
    with amp.autocast("bf16"):
        out = F.conv2d(x, w, padding=1)
    ref = lowp.lowp_conv2d(x, w, fmt=floats.BF16, padding=1)
    # the two GEMMs add the same exact products in different orders: at most one bf16 step apart
    np.testing.assert_allclose(out.data, ref.data, rtol=2 ** -7, atol=0)
    assert np.mean(out.data == ref.data) > 0.95
    assert lowp.on_grid(out, floats.BF16)


def test_autocast_policy_fp32_ops_and_master_weights(rng):
    model = _tiny_model(rng)
    x16 = tq.tensor(rng.standard_normal((4, 6)).astype(np.float16))
    with amp.autocast("float16") as mode:
        logp = ops.log_softmax(x16)
        total = x16.sum()
        loss = F.cross_entropy(model(tq.tensor(rng.standard_normal((4, 6)).astype(np.float32))), [0, 1, 2, 0])
    assert logp.dtype == np.float32 and total.dtype == np.float32 and loss.dtype == np.float32
    loss.backward()
    for p in model.parameters():
        assert p.dtype == np.float32 and p.grad.dtype == np.float32 and lowp.on_grid(p.grad, floats.FP16)
    text = str(mode)
    for word in ("Linear", "Conv2d", "MatMul", "LogSoftmax", "Sum", "Mean", "Var", "fp32", "fp16"):
        assert word in text
    assert "e5m2" in amp.policy_table("fp8")
    with pytest.raises(ValueError, match="autocast dtype must be one of"):
        with amp.autocast("int8"):
            pass


def test_fp8_per_tensor_scaling_keeps_tiny_gradients(rng):
    tiny = (rng.standard_normal(1000) * 1e-9).astype(np.float32)
    rounded, s = amp.round_scaled(tiny, floats.FP8_E5M2, per_tensor=True)
    assert floats.FP8_E5M2.max / 2 <= np.max(np.abs(tiny)) * s <= floats.FP8_E5M2.max
    assert np.log2(s) == int(np.log2(s))
    big = np.abs(tiny) > np.max(np.abs(tiny)) * 2.0 ** -12              # within e5m2's normal range after scaling
    np.testing.assert_allclose(rounded[big], tiny[big], rtol=2 ** -3)
    unscaled, _ = amp.round_scaled(tiny, floats.FP8_E5M2, per_tensor=False)
    assert np.count_nonzero(unscaled) == 0                                 # without scaling: all below 2^-17
    assert amp.per_tensor_scale(0.0, floats.FP8_E4M3) == 1.0
    assert amp.per_tensor_scale(448.0, floats.FP8_E4M3) == 1.0


# ------------------------------------------------------------------ training on digits
def test_fp16_with_dynamic_scaling_trains_within_one_point_of_fp32():
    from tinyq.experiments import mixed_precision as mp
    data = mp.load_data("digits")
    settings = dict(width=8, epochs=4, statistics_steps=2, progress=False)
    fp32, dynamic = (mp.train_one(name, data, **settings) for name in ("fp32", "fp16+dynamic"))
    assert fp32["test_accuracy"] > 0.93
    assert abs(dynamic["test_accuracy"] - fp32["test_accuracy"]) <= 0.01
    plain = mp.train_one("fp16", mp.load_data("digits", limit=128), **{**settings, "epochs": 1})
    assert plain["zero_gradient_fraction"] > 0.3 and dynamic["zero_gradient_fraction"] < 0.01


def test_amp_command_writes_table_and_files(tmp_path, capsys):
    from tinyq.cli import main
    code = main(["amp", "--runs", "fp32", "fp16+static", "--epochs", "1", "--width", "4", "--limit", "128",
                 "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "fp16+static" in out and "op policy" in out
    for name in ("amp.json", "amp.csv", "amp.png"):
        assert (tmp_path / name).is_file()
    with pytest.raises(SystemExit) as exit_info:      # argparse rejects it (tests/test_cli_bad_input.py)
        main(["amp", "--epochs", "0", "--out", str(tmp_path)])
    assert exit_info.value.code == 2


def test_autocast_is_a_function_mode_that_leaves_the_stack_even_on_error(rng):
    from tinyq import function
    before = function.active_modes()
    with pytest.raises(RuntimeError, match="boom"):
        with amp.autocast("bf16") as mode:
            assert function.active_modes()[-1] is mode
            raise RuntimeError("boom")
    assert function.active_modes() == before
    with amp.autocast("float16", enabled=False) as mode:
        assert mode is None and function.active_modes() == before
    # under lowp's format-keeping mode too: a bf16-tagged operand is cast to fp16 on entry, the result is plain
    a = tq.tensor(rng.standard_normal((3, 4)).astype(np.float32)).to(floats.BF16)
    b = tq.tensor(rng.standard_normal((4, 2)).astype(np.float32)).to(floats.BF16)
    with amp.autocast("float16"):
        out = a @ b
    assert out.fmt is None and lowp.on_grid(out, floats.FP16)
