"""The compression report: accounting by hand (bytes, ratio, integer-model bits), the Pareto front, latency
with a fake clock, stage composition, and a small end-to-end run of `tinyq report`."""
import itertools
import json
import math

import numpy as np
import pytest

from tinyq.experiments import report


# ------------------------------------------------------------------ 13.1 the Pareto front
@pytest.mark.exercise("13.1")
def test_pareto_front_by_hand():
    sizes = [100, 50, 50, 20, 80, 10]
    accuracies = [0.99, 0.97, 0.95, 0.97, 0.98, 0.50]
    # 2 (50, .95) is beaten by 1 (50, .97); 1 by 3 (20, .97: smaller, as good); 4 (80, .98) survives
    assert report.pareto_front(sizes, accuracies) == [5, 3, 4, 0]


@pytest.mark.exercise("13.1")
@pytest.mark.parametrize("seed", range(5))
def test_pareto_front_property(seed):
    rng = np.random.default_rng(seed)
    sizes, accuracies = rng.integers(1, 20, 30), rng.integers(0, 10, 30) / 10
    front = report.pareto_front(sizes, accuracies)
    for i in range(30):
        dominated = any(sizes[j] <= sizes[i] and accuracies[j] >= accuracies[i]
                        and (sizes[j] < sizes[i] or accuracies[j] > accuracies[i]) for j in range(30))
        assert (i in front) == (not dominated)
    assert [sizes[i] for i in front] == sorted(sizes[i] for i in front)
    # along the front, more bytes buy strictly more accuracy
    assert all(accuracies[a] < accuracies[b] for a, b in itertools.pairwise(front))


# ------------------------------------------------------------------ 13.2 latency
class FakeClock:
    def __init__(self, durations):
        self.now, self.durations, self.calls = 0.0, list(durations), 0

    def __call__(self):
        return self.now

    def work(self):
        self.now += self.durations[self.calls]
        self.calls += 1


@pytest.mark.exercise("13.2")
def test_median_latency_skips_warmup_and_takes_the_median():
    clock = FakeClock([100.0, 50.0, 3.0, 9.0, 1.0, 4.0, 2.0])   # two slow warm-up calls, then 5 timed
    assert report.median_latency(clock.work, warmup=2, repeats=5, clock=clock) == 3.0
    assert clock.calls == 7
    clock = FakeClock([7.0, 1.0, 2.0, 30.0])
    assert report.median_latency(clock.work, warmup=0, repeats=4, clock=clock) == 4.5   # (2 + 7) / 2
    with pytest.raises(ValueError, match="repeats >= 1"):
        report.median_latency(lambda: None, repeats=0)


# ------------------------------------------------------------------ 13.3 bytes and ratio
@pytest.mark.exercise("13.3")
def test_compression_ratio_rounds_bytes_once():
    assert report.compression_ratio(32 * 100, [4, 4, 4]) == (2, 200.0)       # 12 bits -> 2 bytes, 400 / 2
    assert report.compression_ratio(8000, 8000) == (1000, 1.0)
    assert report.compression_ratio(100, [1]) == (1, 13.0)                     # ceil(100/8) = 13
    stored, ratio = report.compression_ratio(32 * 2410, [7 * 9, 5])
    assert stored == 9 and ratio == pytest.approx(9640 / 9)
    with pytest.raises(ValueError, match=">= 0"):
        report.compression_ratio(10, [-1])


# ------------------------------------------------------------------ 13.4 composing stages
@pytest.mark.exercise("13.4")
def test_run_stages_applies_each_stage_to_the_previous_result():
    seen = []
    stages = [("double", lambda m: m * 2), ("add three", lambda m: m + 3), ("same", lambda m: m)]
    records = report.run_stages(5, stages, lambda m: (seen.append(m), {"value": m})[1])
    assert records == [{"stage": "double", "value": 10}, {"stage": "add three", "value": 13},
                       {"stage": "same", "value": 13}]
    assert seen == [10, 13, 13]
    assert report.run_stages(1, [], lambda m: {}) == []


# ------------------------------------------------------------------ integer-model bits
def test_integer_model_bits_counts_sparse_codes_when_smaller():
    from tinyq import models
    from tinyq.data import ArrayDataset, DataLoader
    from tinyq.quant import QuantConfig, quantize_ptq
    from tinyq.quant.int_modules import stored_bits, to_integer
    rng = np.random.default_rng(0)
    model = models.mlp((64, 16, 10), rng=rng)
    x, y = rng.standard_normal((64, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, 64)
    for bits in (8, 4):
        qsim = quantize_ptq(model, DataLoader(ArrayDataset(x, y), batch_size=64), QuantConfig.uniform(8, weight_bits=bits))
        integer = to_integer(qsim)
        dense = stored_bits(integer)
        # a dense model: the weights as int_modules packs them (1040 + 160 codes of `bits` bits)
        assert dense["weights"] == (64 * 16 + 16 * 10) * bits
        assert report.integer_model_bits(integer, model, bits) == dense["total"]
    pruned = models.mlp((64, 16, 10), rng=np.random.default_rng(1))
    for layer in (pruned[1], pruned[3]):
        layer.weight.data[:, 1:] = 0.0                       # one nonzero per row: 16 + 10 nonzeros
    integer = to_integer(quantize_ptq(pruned, DataLoader(ArrayDataset(x, y), batch_size=64)))
    total = report.integer_model_bits(integer, pruned, 8)
    dense = stored_bits(integer)
    assert total < dense["total"]
    assert total >= dense["biases"] + dense["qparams"] + 26 * 8              # at least the 26 nonzero codes


# ------------------------------------------------------------------ the pipeline and `tinyq report`
@pytest.fixture(scope="module")
def small_report():
    return report.run(teacher_epochs=1, student_epochs=2, hidden=8, agp_steps=2, clusters=4, limit=120,
                      batch_size=32)


def test_report_records_are_consistent(small_report):
    stages = [r["stage"] for r in small_report]
    assert stages[0].startswith("teacher") and stages[1].startswith("student") and len(stages) == 6
    teacher, student = small_report[0], small_report[1]
    assert student["stored_bytes"] == 4 * student["parameters"]               # dense fp32, no buffers
    assert teacher["ratio_vs_teacher"] == 1.0 and student["ratio_vs_student"] == 1.0
    for r in small_report:
        assert r["ratio_vs_teacher"] == pytest.approx(teacher["stored_bytes"] / r["stored_bytes"])
        assert 0.0 <= r["test_accuracy"] <= 1.0 and r["latency_ms"] > 0
    pruned = small_report[2]
    assert pruned["nonzero"] <= math.ceil(0.2 * student["nonzero"]) + 2           # 80 % of the weights gone
    assert pruned["stored_bytes"] < student["stored_bytes"]
    assert small_report[4]["engine"].startswith("integer-only (int8")
    assert small_report[5]["stored_bytes"] < small_report[4]["stored_bytes"]   # int4 codes beat int8
    fig = report.plot(small_report)
    assert fig.axes[0].get_xscale() == "log"


def test_report_command(tmp_path, capsys):
    from tinyq.cli import main
    code = main(["report", "--teacher-epochs", "1", "--student-epochs", "2", "--hidden", "8", "--clusters", "4",
                 "--limit", "120", "--batch-size", "32", "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "ratio_vs_teacher" in out and "integer-only" in out
    payload = json.loads((tmp_path / "report.json").read_text())
    assert len(payload["records"]) == 6 and "threads" in payload["metadata"]
    assert (tmp_path / "report.csv").exists() and (tmp_path / "report.png").exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "--sparsity", "1.5", "--out", str(tmp_path / "never")])
    assert exit_info.value.code == 2 and not (tmp_path / "never").exists()
