"""The accumulator experiment and the intcheck/accumulator commands on a briefly trained digits MLP."""
import json

import numpy as np
import pytest

from tinyq.cli import main
from tinyq.experiments.accumulator import (
    accumulator_sweep,
    equivalence,
    plot,
    quantized_pair,
)


@pytest.fixture(scope="module")
def pair():
    return quantized_pair("mlp", "digits", seed=0, bits=8, epochs=3)


def test_equivalence_of_the_pair(pair):
    rows, summary = equivalence(pair)
    assert summary["max_isolated_lsb"] <= 1 and summary["prediction_agreement"] >= 0.995
    assert [r["layer"] for r in rows] == ["1", "3", "5"]


def test_accumulator_sweep_properties(pair):
    records = accumulator_sweep(pair, widths=(8, 16, 32), samples=60)
    by_key = {(r["accumulator_bits"], r["overflow"]): r for r in records}
    for mode in ("wrap", "saturate"):
        assert by_key[(32, mode)]["overflows"] == 0 and by_key[(32, mode)]["agreement"] == 1.0
        assert by_key[(8, mode)]["overflows"] > by_key[(16, mode)]["overflows"] > 0   # 255·127 > 2^15 − 1
    # the exact int32 run equals the model without simulation
    codes = pair["integer"].quantize_input(pair["x_test"][:60])
    exact = pair["integer"].logits(codes).argmax(axis=1)
    assert by_key[(32, "wrap")]["accuracy"] == pytest.approx(float(np.mean(exact == pair["y_test"][:60])))
    assert plot(records) is not None


def test_intcheck_and_accumulator_commands(tmp_path, capsys):
    assert main(["intcheck", "--epochs", "2", "--no-progress", "--out", str(tmp_path / "ic")]) == 0
    saved = json.loads((tmp_path / "ic" / "intcheck.json").read_text())
    assert "prediction identical" not in saved and "logits" in capsys.readouterr().out
    assert main(["accumulator", "--epochs", "2", "--no-progress", "--widths", "16", "32", "--samples", "20",
                 "--out", str(tmp_path / "acc")]) == 0
    assert (tmp_path / "acc" / "accumulator.png").is_file()
    with pytest.raises(SystemExit):
        main(["intcheck", "--bits", "12", "--epochs", "1", "--out", str(tmp_path / "x")])


def test_intcheck_reads_a_checkpoint(tmp_path):
    import tinyq as tq
    from tinyq.experiments.bitwidth import build_model, generator
    model = build_model("mlp", (1, 8, 8), 10, rng=generator(5, 0))
    tq.save(model.state_dict(), tmp_path / "float.npz")
    code = main(["intcheck", "--checkpoint", str(tmp_path / "float.npz"), "--no-progress", "--out", str(tmp_path)])
    assert code in (0, 1)
    saved = json.loads((tmp_path / "intcheck.json").read_text())
    assert saved["metadata"]["checkpoint"].endswith("float.npz")
