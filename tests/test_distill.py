"""Knowledge distillation: softmax with temperature, the KD loss and its hand-derived gradient, T² scaling,
ensembles, hints, the Distiller (teacher frozen), bad input; torch as an optional oracle."""
import numpy as np
import pytest

import tinyq as tq
from tinyq import distill, models, nn, optim
from tinyq import functional as F
from tinyq.gradcheck import gradcheck


def logits(seed, n=6, c=5, spread=2.0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, c)) * spread, rng.standard_normal((n, c)) * spread * 1.5, rng.integers(0, c, n)


# ------------------------------------------------------------------ 11.1 softmax with temperature
@pytest.mark.exercise("11.1")
def test_softmax_with_temperature_by_hand():
    z = np.array([[0.0, np.log(2.0), np.log(4.0)]])
    # T = 1: exp(z) = 1, 2, 4 -> /7. T = 2: exp(z/2) = 1, sqrt2, 2 -> /(3 + sqrt2)
    np.testing.assert_allclose(distill.softmax_with_temperature(z, 1.0), [[1 / 7, 2 / 7, 4 / 7]], rtol=1e-12)
    root2 = np.sqrt(2.0)
    np.testing.assert_allclose(distill.softmax_with_temperature(z, 2.0),
                               [[1 / (3 + root2), root2 / (3 + root2), 2 / (3 + root2)]], rtol=1e-12)


@pytest.mark.exercise("11.1")
@pytest.mark.parametrize("seed", range(3))
def test_softmax_with_temperature_properties(seed):
    z, _, _ = logits(seed, spread=5.0)
    previous_entropy = -np.inf
    for temperature in (0.5, 1.0, 2.0, 4.0, 16.0):
        p = distill.softmax_with_temperature(z, temperature)
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
        np.testing.assert_array_equal(np.argmax(p, axis=1), np.argmax(z, axis=1))   # T keeps the ranking
        entropy = -np.sum(p * np.log(p))
        assert entropy > previous_entropy                                            # and softens
        previous_entropy = entropy
    large = distill.softmax_with_temperature(z, 1e6)
    np.testing.assert_allclose(large, 1.0 / z.shape[1], rtol=1e-4)                  # T -> inf: uniform
    tensor_out = distill.softmax_with_temperature(tq.tensor(z), 3.0)
    assert isinstance(tensor_out, tq.Tensor)
    np.testing.assert_allclose(tensor_out.data, np.exp(z / 3) / np.exp(z / 3).sum(1, keepdims=True), rtol=1e-12)


# ------------------------------------------------------------------ 11.2 the KD loss and its gradient
@pytest.mark.exercise("11.2")
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("temperature, alpha", [(1.0, 0.5), (4.0, 0.9), (8.0, 0.3), (2.0, 1.0)])
def test_kd_gradient_equals_the_derivation(seed, temperature, alpha):
    """Derivation. Let p_s = softmax(z_s/T), p_t = softmax(z_t/T), q = softmax(z_s), N rows.
    KL term per row: Σ_c p_t (log p_t − log p_s); ∂(−log p_s[c])/∂z_s[j] = (p_s[j] − [c = j]) / T, so
    ∂KL_row/∂z_s = Σ_c p_t[c] (p_s − e_c)/T = (p_s − p_t)/T (Σ p_t = 1). Times α T² / N: α T (p_s − p_t)/N.
    CE term: ∂(−log q[y])/∂z_s = q − onehot(y), times (1 − α)/N. Sum of both = the claimed gradient."""
    z_s, z_t, y = logits(seed)
    student = tq.tensor(z_s, requires_grad=True)
    distill.kd_loss(student, z_t, y, temperature, alpha).backward()
    p_s = np.exp(z_s / temperature) / np.exp(z_s / temperature).sum(1, keepdims=True)
    p_t = np.exp(z_t / temperature) / np.exp(z_t / temperature).sum(1, keepdims=True)
    q = np.exp(z_s) / np.exp(z_s).sum(1, keepdims=True)
    expected = alpha * temperature * (p_s - p_t) / len(y) + (1 - alpha) * (q - np.eye(5)[y]) / len(y)
    np.testing.assert_allclose(student.grad, expected, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(distill.kd_logit_gradient(z_s, z_t, y, temperature, alpha), expected,
                               rtol=1e-10, atol=1e-14)


@pytest.mark.exercise("11.2")
@pytest.mark.parametrize("seed", range(3))
def test_kd_loss_gradcheck_and_value(seed):
    z_s, z_t, y = logits(seed)
    gradcheck(lambda s: distill.kd_loss(s, z_t, y, temperature=3.0, alpha=0.6), [z_s], name="kd_loss")
    # the value, in float64 by hand
    p_s = np.exp(z_s / 3) / np.exp(z_s / 3).sum(1, keepdims=True)
    p_t = np.exp(z_t / 3) / np.exp(z_t / 3).sum(1, keepdims=True)
    q = np.exp(z_s) / np.exp(z_s).sum(1, keepdims=True)
    kl = np.sum(p_t * (np.log(p_t) - np.log(p_s))) / len(y)
    ce = -np.mean(np.log(q[np.arange(len(y)), y]))
    value = distill.kd_loss(tq.tensor(z_s), z_t, y, temperature=3.0, alpha=0.6).data
    np.testing.assert_allclose(value, 0.6 * 9 * kl + 0.4 * ce, rtol=1e-12)


@pytest.mark.exercise("11.2")
def test_alpha_zero_is_cross_entropy_and_kd_is_zero_on_the_teacher():
    z_s, z_t, y = logits(7)
    np.testing.assert_allclose(distill.kd_loss(tq.tensor(z_s), z_t, y, 4.0, 0.0).data,
                               F.cross_entropy(tq.tensor(z_s), y).data, rtol=1e-14)
    assert abs(float(distill.kd_loss(tq.tensor(z_t), z_t, y, 4.0, 1.0).data)) < 1e-12  # KL(p ‖ p) = 0


@pytest.mark.exercise("11.2")
def test_t_squared_keeps_the_soft_gradient_comparable():
    """Without T² the soft gradient (p_s − p_t)/(NT) falls like 1/T² for large T; with it, it levels off."""
    z_s, z_t, y = logits(3, n=64, c=10)
    norms = {}
    for scale in (True, False):
        for temperature in (1.0, 4.0, 16.0, 64.0):
            s = tq.tensor(z_s, requires_grad=True)
            distill.kd_loss(s, z_t, y, temperature, alpha=1.0, scale_by_t2=scale).backward()
            norms[scale, temperature] = np.linalg.norm(s.grad)
            if not scale:   # exactly the scaled gradient divided by T²
                np.testing.assert_allclose(s.grad * temperature ** 2,
                                           distill.kd_logit_gradient(z_s, z_t, y, temperature, 1.0), rtol=1e-10)
    assert norms[False, 16.0] / norms[False, 64.0] == pytest.approx(16.0, rel=0.05)
    assert norms[True, 16.0] / norms[True, 64.0] == pytest.approx(1.0, rel=0.05)
    # the high-T limit: T (p_s − p_t) -> (z_s − z_t − row means)/C
    centred = (z_s - z_s.mean(1, keepdims=True)) - (z_t - z_t.mean(1, keepdims=True))
    limit = centred / 10 / 64
    np.testing.assert_allclose(distill.kd_logit_gradient(z_s, z_t, y, 1e4, 1.0), limit, rtol=0,
                               atol=1e-3 * np.abs(limit).max())


def test_kd_loss_against_torch():
    torch = pytest.importorskip("torch")
    z_s, z_t, y = logits(11)
    for temperature, alpha in ((1.0, 0.5), (4.0, 0.9), (16.0, 0.2)):
        s = tq.tensor(z_s, requires_grad=True)
        ours = distill.kd_loss(s, z_t, y, temperature, alpha)
        ours.backward()
        ts = torch.tensor(z_s, requires_grad=True)
        kl = torch.nn.functional.kl_div(torch.log_softmax(ts / temperature, 1),
                                        torch.log_softmax(torch.tensor(z_t) / temperature, 1),
                                        reduction="batchmean", log_target=True)
        theirs = alpha * temperature ** 2 * kl + (1 - alpha) * torch.nn.functional.cross_entropy(ts, torch.tensor(y))
        theirs.backward()
        np.testing.assert_allclose(ours.data, theirs.item(), rtol=1e-10)
        np.testing.assert_allclose(s.grad, ts.grad.numpy(), rtol=1e-9, atol=1e-14)


# ------------------------------------------------------------------ 11.3 ensembles, hard labels
@pytest.mark.exercise("11.3")
def test_ensemble_soft_targets_average_the_probabilities():
    rng = np.random.default_rng(5)
    zs = [rng.standard_normal((4, 3)) * 3 for _ in range(3)]
    probs = [np.exp(z / 2) / np.exp(z / 2).sum(1, keepdims=True) for z in zs]
    np.testing.assert_allclose(distill.ensemble_soft_targets(zs, 2.0), sum(probs) / 3, rtol=1e-12)
    np.testing.assert_allclose(distill.ensemble_soft_targets(zs, 2.0, weights=[0.5, 0.25, 0.25]),
                               0.5 * probs[0] + 0.25 * probs[1] + 0.25 * probs[2], rtol=1e-12)
    # averaging probabilities is not averaging logits: by hand, two teachers certain of different classes
    two = [np.array([[10.0, -10.0]]), np.array([[-10.0, 10.0]])]
    np.testing.assert_allclose(distill.ensemble_soft_targets(two, 1.0), [[0.5, 0.5]], rtol=1e-12)
    np.testing.assert_allclose(distill.ensemble_soft_targets([zs[1]], 2.0), probs[1], rtol=1e-12)


@pytest.mark.exercise("11.3")
def test_ensemble_kd_loss_with_one_teacher_is_kd_loss():
    z_s, z_t, y = logits(2)
    np.testing.assert_allclose(distill.ensemble_kd_loss(tq.tensor(z_s), [z_t, z_t], y, 4.0, 0.7).data,
                               distill.kd_loss(tq.tensor(z_s), z_t, y, 4.0, 0.7).data, rtol=1e-12)


def test_hard_label_loss_is_cross_entropy_on_the_teacher_argmax():
    z_s, z_t, _ = logits(4)
    np.testing.assert_allclose(distill.hard_label_loss(tq.tensor(z_s), z_t).data,
                               F.cross_entropy(tq.tensor(z_s), np.argmax(z_t, 1)).data, rtol=1e-14)


# ------------------------------------------------------------------ 11.4 hints
@pytest.mark.exercise("11.4")
def test_hint_loss_by_hand_and_gradcheck():
    regressor = distill.HintRegressor(3, 2, rng=np.random.default_rng(0))
    regressor.map.weight.data = np.array([[1.0, 0.0, 2.0], [0.0, -1.0, 0.0]])
    regressor.map.bias.data = np.array([0.5, 0.0])
    f_s = np.array([[1.0, 2.0, 3.0]])
    f_t = np.array([[7.0, -1.0]])
    # r(f_s) = [1 + 6 + 0.5, -2] = [7.5, -2]; errors 0.5, -1 -> mean of squares (0.25 + 1) / 2
    np.testing.assert_allclose(distill.hint_loss(tq.tensor(f_s), f_t, regressor).data, 0.625, rtol=1e-14)
    rng = np.random.default_rng(1)
    features, target = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    gradcheck(lambda f: distill.hint_loss(f, target, regressor), [features], name="hint_loss")
    s = tq.tensor(features, requires_grad=True)
    regressor.zero_grad()
    distill.hint_loss(s, target, regressor).backward()
    residual = features @ regressor.map.weight.data.T + regressor.map.bias.data - target
    np.testing.assert_allclose(regressor.map.weight.grad, 2 * residual.T @ features / residual.size, rtol=1e-10)


@pytest.mark.exercise("11.4")
def test_hint_loss_on_feature_maps_and_shape_error():
    regressor = distill.HintRegressor(2, 3, conv=True, rng=np.random.default_rng(0))
    rng = np.random.default_rng(2)
    f_s, f_t = rng.standard_normal((2, 2, 4, 4)), rng.standard_normal((2, 3, 4, 4))
    w, b = regressor.map.weight.data[:, :, 0, 0], regressor.map.bias.data
    mapped = np.einsum("oc,nchw->nohw", w, f_s) + b[None, :, None, None]
    np.testing.assert_allclose(distill.hint_loss(tq.tensor(f_s.astype(np.float32)), f_t.astype(np.float32),
                                                 regressor).data, np.mean((mapped - f_t) ** 2), rtol=1e-5)
    with pytest.raises(ValueError, match="teacher's features"):
        distill.hint_loss(tq.tensor(f_s.astype(np.float32)), f_t[:, :2].astype(np.float32), regressor)


# ------------------------------------------------------------------ the Distiller
def _teacher_student(seed=0):
    rng = np.random.default_rng(seed)
    teacher = models.mlp((64, 32, 10), rng=rng)
    student = models.mlp((64, 8, 10), rng=rng)
    x = rng.standard_normal((16, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, 16)
    return teacher, student, x, y


def test_distiller_never_touches_the_teacher():
    teacher, student, x, y = _teacher_student()
    before = {k: v.copy() for k, v in teacher.state_dict().items()}
    optimizer = optim.SGD(student.parameters(), lr=0.1, momentum=0.9)
    distiller = distill.Distiller(student, teacher, optimizer, temperature=4.0, alpha=0.9)
    student_before = student.state_dict()["1.weight"].copy()
    for _ in range(3):
        distiller.step(x, y)
    assert all(p.grad is None for p in teacher.parameters())
    for k, v in teacher.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    assert not np.array_equal(student.state_dict()["1.weight"], student_before)
    with pytest.raises(ValueError, match="teacher parameters"):
        distill.Distiller(student, teacher, optim.SGD(list(student.parameters()) + list(teacher.parameters()),
                                                      lr=0.1))


def test_distiller_step_is_the_kd_loss_gradient_and_lowers_the_loss():
    teacher, student, x, y = _teacher_student(1)
    copy = models.mlp((64, 8, 10), rng=np.random.default_rng(9))
    copy.load_state_dict(student.state_dict())
    distiller = distill.Distiller(student, teacher, optim.SGD(student.parameters(), lr=0.1), 4.0, 0.5)
    with tq.no_grad():
        z_t = teacher(tq.tensor(x)).data
    loss = distill.kd_loss(copy(tq.tensor(x)), z_t, y, 4.0, 0.5)
    loss.backward()
    expected = {name: p.data - 0.1 * p.grad for name, p in copy.named_parameters()}
    first = distiller.step(x, y)
    np.testing.assert_allclose(first, loss.data, rtol=1e-6)
    for name, p in student.named_parameters():
        np.testing.assert_allclose(p.data, expected[name], rtol=1e-5, atol=1e-7)
    losses = [distiller.step(x, y) for _ in range(30)]
    assert losses[-1] < first


def test_distiller_ensemble_hard_and_hint_modes_run():
    teacher, student, x, y = _teacher_student(2)
    other = models.mlp((64, 32, 10), rng=np.random.default_rng(3))
    ensemble = distill.Distiller(student, [teacher, other], optim.SGD(student.parameters(), lr=0.05), 2.0, 0.8)
    assert np.isfinite(ensemble.fit([(x, y)], epochs=2)).all()
    hard = distill.Distiller(student, teacher, optim.SGD(student.parameters(), lr=0.05), mode="hard")
    with tq.no_grad():
        z_t = teacher(tq.tensor(x)).data
        expected = F.cross_entropy(student(tq.tensor(x)), np.argmax(z_t, 1)).data
    np.testing.assert_allclose(hard.step(x, y), expected, rtol=1e-6)
    regressor = distill.HintRegressor(8, 32, rng=np.random.default_rng(4))
    params = list(student.parameters()) + list(regressor.parameters())
    hinted = distill.Distiller(student, teacher, optim.SGD(params, lr=0.05), hint=(3, 3, regressor, 0.5))
    before = regressor.map.weight.data.copy()
    hinted.step(x, y)
    assert not np.array_equal(before, regressor.map.weight.data)
    assert all(p.grad is None for p in teacher.parameters())


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_temperature(temperature):
    z_s, z_t, y = logits(0)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        distill.kd_loss(tq.tensor(z_s), z_t, y, temperature=temperature)
    with pytest.raises(ValueError, match="temperature"):
        distill.softmax_with_temperature(z_s, temperature)
    with pytest.raises(TypeError, match="temperature must be a number"):
        distill.kd_loss(tq.tensor(z_s), z_t, y, temperature="4")


@pytest.mark.parametrize("alpha", [-0.1, 1.5])
def test_bad_alpha(alpha):
    z_s, z_t, y = logits(0)
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        distill.kd_loss(tq.tensor(z_s), z_t, y, alpha=alpha)


def test_mismatched_class_counts_and_missing_labels():
    z_s, z_t, y = logits(0)
    with pytest.raises(ValueError, match="same number of classes: the teacher gives 4, the student 5"):
        distill.kd_loss(tq.tensor(z_s), z_t[:, :4], y)
    with pytest.raises(ValueError, match="same batch"):
        distill.kd_loss(tq.tensor(z_s), z_t[:3], y)
    with pytest.raises(ValueError, match="needs labels"):
        distill.kd_loss(tq.tensor(z_s), z_t, None, alpha=0.5)
    with pytest.raises(TypeError, match="as a Tensor"):
        distill.kd_loss(z_s, z_t, y)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(64, 7))
    _, student, x, y = _teacher_student()
    distiller = distill.Distiller(student, teacher, optim.SGD(student.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="same number of classes"):
        distiller.step(x, y)
    with pytest.raises(ValueError, match="mode must be"):
        distill.Distiller(student, teacher, optim.SGD(student.parameters(), lr=0.1), mode="medium")


# ------------------------------------------------------------------ the experiment and `tinyq distill`
def test_summarize_gain_and_noise_by_hand():
    from tinyq.experiments.distillation import summarize
    records = [{"method": "scratch", "temperature": None, "alpha": 0.0, "t2": False, "test_accuracy": a}
               for a in (0.90, 0.92, 0.94)]
    records += [{"method": "kd", "temperature": 4.0, "alpha": 0.9, "t2": True, "test_accuracy": a}
                for a in (0.95, 0.96, 0.97)]
    records += [{"method": "kd", "temperature": 8.0, "alpha": 0.9, "t2": True, "test_accuracy": a}
                for a in (0.91, 0.93, 0.95)]
    rows = {r["temperature"]: r for r in summarize(records)}
    # stds 0.02 and 0.01 (ddof 1), n = 3: se = sqrt(0.0004/3 + 0.0001/3) = 0.01291; gain 0.04 > 2 se
    assert rows[4.0]["gain"] == pytest.approx(0.04) and rows[4.0]["gain_se"] == pytest.approx(np.sqrt(0.0005 / 3))
    assert rows[4.0]["above_noise"] and not rows[8.0]["above_noise"]      # gain 0.01 < 2 * 0.01633
    assert rows[None]["accuracy_std"] == pytest.approx(0.02)


def test_experiment_small_run_is_reproducible_and_records_every_configuration():
    from tinyq.experiments.distillation import run, student_configurations
    settings = {"seeds": (0,), "temperatures": (1.0, 4.0), "alphas": (0.9,), "hidden": 8, "student_epochs": 2,
                    "teacher_epochs": 1, "teacher_width": 4, "limit": 96}
    first, second = run(**settings), run(**settings)
    assert [r["test_accuracy"] for r in first] == [r["test_accuracy"] for r in second]
    assert len(first) == len(student_configurations((1.0, 4.0), (0.9,))) == 4   # scratch, kd x2, noT2 at T=4
    assert {r["method"] for r in first} == {"scratch", "kd", "kd-noT2"}
    with pytest.raises(ValueError, match="temperature"):
        run(temperatures=(0.0,), seeds=(0,))


def test_distill_command_writes_table_and_files(tmp_path, capsys):
    from tinyq.cli import main
    code = main(["distill", "--temperatures", "2", "--alphas", "0.9", "--seeds", "2", "--student-epochs", "1",
                 "--teacher-epochs", "1", "--teacher-width", "4", "--limit", "96", "--out", str(tmp_path),
                 "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "above_noise" in out and "teacher test accuracy" in out
    assert all((tmp_path / f"distill.{ext}").exists() for ext in ("json", "csv", "png"))
    with pytest.raises(SystemExit) as exit_info:           # argparse refuses it before any work
        main(["distill", "--seeds", "0", "--out", str(tmp_path / "never")])
    assert exit_info.value.code == 2 and not (tmp_path / "never").exists()
