"""The fixed-point training experiment (Gupta et al. 2015): the rounding mechanism and well-formed records."""
import json
import math

import numpy as np
import pytest

import tinyq as tq
from tinyq.cli import main
from tinyq.experiments import fixed_point_training as fpt
from tinyq.formats.fixed_point import QFormat

Q_FEW_BITS = QFormat(int_bits=3, frac_bits=4)          # 8-bit word, step 1/16


def test_an_update_below_half_a_step_never_moves_a_weight_under_nearest_rounding():
    step = Q_FEW_BITS.resolution
    weights = np.arange(-16, 17, dtype=np.float64) * step          # grid values
    update = 0.45 * step
    moved = weights.copy()
    for _ in range(100):                                           # 100 identical small updates
        moved = fpt.fixed_point_round(moved - update, Q_FEW_BITS, "nearest_even")
    np.testing.assert_array_equal(moved, weights)                  # all of them lost


def test_stochastic_rounding_applies_a_small_update_on_average():
    """SR(w - d) is w - step with probability d / step, else w: its mean is w - d.

    With p = 0.3 and n draws the sample mean has standard deviation step sqrt(p (1 - p) / n);
    we allow 5 of them (a false alarm once in ~3.5 million runs)."""
    step, draws = Q_FEW_BITS.resolution, 20_000
    weight, update = 0.5, 0.3 * step
    rng = np.random.default_rng(0)
    rounded = fpt.fixed_point_round(np.full(draws, weight - update), Q_FEW_BITS, "stochastic", rng)
    assert set(np.unique(rounded)) == {weight - step, weight}       # only the two neighbours
    tolerance = 5 * step * math.sqrt(0.3 * 0.7 / draws)
    assert abs(rounded.mean() - (weight - update)) < tolerance


def test_repeated_small_updates_accumulate_under_stochastic_rounding():
    step = Q_FEW_BITS.resolution
    rng = np.random.default_rng(1)
    weights = np.zeros(2000)
    for _ in range(50):
        weights = fpt.fixed_point_round(weights - 0.1 * step, Q_FEW_BITS, "stochastic", rng)
    expected = -50 * 0.1 * step                                     # the float result: -5/16
    # each step adds an independent error of variance <= step^2 / 4; 50 steps, mean over 2000 weights
    assert abs(weights.mean() - expected) < 5 * step * math.sqrt(50 / 4 / 2000)


def test_round_function_rounds_errors_and_stops_them_where_the_forward_saturated():
    fmt = QFormat(int_bits=1, frac_bits=3)                          # range [-2, 1.875], step 1/8
    x = tq.tensor(np.array([0.3, -0.7, 5.0, -9.0]), requires_grad=True)
    y = fpt.FixedPointRound.apply(x, fmt=fmt, rounding="nearest_even", rng=None)
    np.testing.assert_array_equal(y.data, [0.25, -0.75, 1.875, -2.0])
    y.backward(np.array([0.26, 0.3, 1.0, 1.0]))
    np.testing.assert_array_equal(x.grad, [0.25, 0.25, 0.0, 0.0])


def test_a_short_run_returns_well_formed_deterministic_records():
    options = dict(word_bits=(8,), frac_bits=(4,), epochs=1, hidden=16, seed=3, progress=False)
    records = fpt.run(**options)
    assert [r["rounding"] for r in records] == ["fp32", "nearest_even", "stochastic"]
    for r in records:
        assert set(r) == {"word_bits", "frac_bits", "format", "rounding", "test_accuracy", "train_loss",
                          "updates_applied", "outputs_saturated", "seconds"}
        assert 0.0 <= r["test_accuracy"] <= 1.0 and 0.0 <= r["updates_applied"] <= 1.0
        assert math.isfinite(r["train_loss"])
    assert records[1]["format"] == "Q3.4" and records[0]["word_bits"] == 32
    # the mechanism inside training: at step 1/16, round-to-nearest drops (almost) every update
    assert records[1]["updates_applied"] < records[2]["updates_applied"]
    again = fpt.run(**options)
    def strip(rows):                                                # NaN != NaN, so compare as text
        return json.dumps([{k: v for k, v in r.items() if k != "seconds"} for r in rows])
    assert strip(records) == strip(again)


def test_lowprec_command_writes_table_json_csv_and_plot(tmp_path, capsys):
    out = tmp_path / "lowprec"
    code = main(["lowprec", "--word-bits", "8", "--frac-bits", "6", "--epochs", "1", "--hidden", "8",
                 "--no-progress", "--out", str(out)])
    assert code == 0
    assert "Q1.6" in capsys.readouterr().out
    def refuse(constant):
        raise AssertionError(f"bare {constant} is not JSON")
    payload = json.loads((out / "lowprec.json").read_text(), parse_constant=refuse)   # strict JSON
    assert len(payload["records"]) == 3 and payload["metadata"]["seed"] == 0
    assert payload["records"][0]["frac_bits"] is None                 # the fp32 row has no fraction bits
    assert (out / "lowprec.csv").read_text().startswith("word_bits,")
    assert (out / "lowprec.png").stat().st_size > 1000


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="rounding"):
        fpt.train_one(8, 4, "floor")
    with pytest.raises(ValueError, match="fraction bits"):
        fpt.train_one(8, 8, "nearest_even")


def test_the_same_data_options_as_train(tmp_path, capsys):
    """lowprec takes --dataset like every experiment command (one shared definition)."""
    from tinyq.cli import COMMANDS
    for name in ("train", "sweep", "sensitivity", "lowprec"):
        options = {names[0]: spec for names, spec in COMMANDS[name].args}
        assert options["--dataset"]["choices"] == ("digits", "mnist", "fashion"), name
        assert options["--seed"]["type"].__name__ == "seed_int" and "--no-progress" in options, name
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        fpt.run((8,), (4,), dataset="cifar")


def test_bad_arguments_to_the_library_are_value_errors():
    for options, phrase in [(dict(epochs=0), "epochs must be a positive int"),
                            (dict(hidden=0), "hidden must be a positive int"),
                            (dict(lr=float("nan")), "lr must be a finite number")]:
        with pytest.raises(ValueError, match=phrase):
            fpt.train_one(8, 4, **options)
    for word_bits, frac_bits, phrase in [((0,), None, "word_bits must be in 2..16"),
                                         ((8,), (99,), "frac_bits 99 fits none"),
                                         ((3,), None, "word_bits 3 gets no fraction length")]:
        with pytest.raises(ValueError, match=phrase):
            fpt.configurations(word_bits, frac_bits)
