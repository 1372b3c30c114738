"""Tests for tinyq.experiments.bitwidth: quality on digits with a fixed seed (int8 PTQ ≈ fp32, 4-bit QAT close,
2-bit LSQ far above 2-bit PTQ), determinism, the `sweep` and `sensitivity` commands and their errors."""
import json

import pytest

from tinyq.cli import main
from tinyq.experiments import bitwidth

SEED = 0


@pytest.fixture(scope="module")
def trained():
    """The sweep's default float model (mlp on digits), trained from SEED as `tinyq sweep` does."""
    train_set, test_set = bitwidth.load_data("digits")
    model = bitwidth.build_model("mlp", train_set.x.shape[1:], 10, rng=bitwidth.generator(SEED, 0))
    bitwidth.train_float(model, train_set, SEED)
    return model, train_set, test_set, bitwidth.evaluate(model, test_set)


def accuracy_of(records, method, bits):
    return next(r["accuracy"] for r in records if r["method"] == method and r["bits"] == bits)


def test_float_model_is_a_reasonable_baseline(trained):
    assert trained[3] >= 0.97


def test_int8_ptq_is_within_half_a_point_of_fp32(trained):
    model, train_set, test_set, fp32 = trained
    calibration = bitwidth.calibration_loader(train_set)
    for observer in ("minmax", "percentile", "mse"):
        qmodel, _ = bitwidth.run_ptq(model, calibration, 8, observer)
        assert bitwidth.evaluate(qmodel, test_set) >= fp32 - 0.005, observer


@pytest.mark.parametrize("method", ["ste", "lsq"])
def test_4bit_qat_is_within_two_points_of_fp32(trained, method):
    model, train_set, test_set, fp32 = trained
    qmodel, _ = bitwidth.run_qat(model, train_set, 4, method, epochs=3, rng=bitwidth.generator(SEED, 2, 4))
    assert bitwidth.evaluate(qmodel, test_set) >= fp32 - 0.02


def test_2bit_lsq_is_clearly_above_2bit_ptq(trained):
    model, train_set, test_set, _ = trained
    records = bitwidth.sweep(model, train_set, test_set, bits=[2], observers=["minmax", "mse"], qat_methods=["lsq"],
                             qat_epochs=3, seed=SEED)
    lsq = accuracy_of(records, "qat-lsq", 2)
    assert lsq >= accuracy_of(records, "ptq-minmax", 2) + 0.10
    assert lsq > accuracy_of(records, "ptq-mse", 2)
    sizes = {r["method"]: r["size_bytes"] for r in records}
    assert sizes["qat-lsq"] == sizes["ptq-minmax"] < sizes["fp32"] / 10


def test_the_same_seed_gives_the_same_numbers(trained):
    model, train_set, test_set, _ = trained

    def numbers():
        records = bitwidth.sweep(model, train_set, test_set, bits=[3], observers=["minmax"], qat_methods=["ste"],
                                 qat_epochs=1, seed=7)
        return [{k: v for k, v in r.items() if k != "seconds"} for r in records]
    assert numbers() == numbers()


def test_sensitivity_reports_one_record_per_layer(trained):
    model, train_set, test_set, fp32 = trained
    records = bitwidth.sensitivity(model, train_set, test_set, bits=2)
    assert [r["layer"] for r in records] == ["1", "3", "5"]
    for r in records:
        assert r["drop"] == pytest.approx(fp32 - r["accuracy"])
        assert r["accuracy"] < fp32                      # 2 bits in any one layer costs something


def test_sweep_command_writes_table_json_csv_and_plot(tmp_path, capsys):
    out = tmp_path / "sweep"
    code = main(["sweep", "--epochs", "2", "--bits", "8", "3", "--observers", "minmax", "--qat", "lsq",
                 "--qat-epochs", "1", "--out", str(out), "--no-progress", "--sensitivity"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "ptq-minmax" in printed and "qat-lsq" in printed and "size (bytes)" in printed and "wall time" in printed
    payload = json.loads((out / "sweep.json").read_text())
    methods = [(r["method"], r["bits"]) for r in payload["records"]]
    assert methods == [("fp32", 32), ("ptq-minmax", 8), ("ptq-minmax", 3), ("qat-lsq", 8), ("qat-lsq", 3)]
    assert payload["metadata"]["seed"] == 0
    assert (out / "sweep.csv").read_text().startswith("method,kind,bits,accuracy,size_bytes,seconds")
    for name in ("sweep.png", "float.npz", "sensitivity.json", "sensitivity.png"):
        assert (out / name).stat().st_size > 0
    # reuse the trained float model
    code = main(["sensitivity", "--checkpoint", str(out / "float.npz"), "--bits", "3", "--out", str(tmp_path / "s"),
                 "--no-progress"])
    assert code == 0 and "loaded mlp" in capsys.readouterr().out
    assert len(json.loads((tmp_path / "s" / "sensitivity.json").read_text())["records"]) == 3


@pytest.mark.parametrize("argv, message", [
    (["sweep", "--bits", "1"], "argument --bits: expected an integer in 2..16"),
    (["sweep", "--bits", "17"], "argument --bits: expected an integer in 2..16"),
    (["sweep", "--observers", "kl"], "unknown observer 'kl'"),
    (["sweep", "--qat", "dorefa"], "invalid choice: 'dorefa'"),
    (["sweep", "--model", "lenet"], "lenet expects 28x28"),
    (["sensitivity", "--bits", "1"], "argument --bits: expected an integer in 2..16"),
    (["sweep", "--checkpoint", "missing.npz"], "does not exist"),
])
def test_bad_arguments_are_one_line_errors(argv, message, tmp_path, capsys):
    extra = ["--qat-epochs", "1"] if argv[0] == "sweep" else []
    try:
        code = main(argv + extra + ["--epochs", "1", "--out", str(tmp_path / "out"), "--no-progress"])
    except SystemExit as exit_info:                      # argparse's own errors
        code = exit_info.code
    assert code == 2
    assert not (tmp_path / "out").exists()
    assert message in capsys.readouterr().err
