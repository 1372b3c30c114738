"""Every command, every option, bad values: exit code 2, one line naming the option, no traceback, and
nothing written under --out (everything is validated before any work starts). Issue 12."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tinyq as tq
from tinyq import models
from tinyq.cli import main

NOT_A_NUMBER = ["abc", "nan", "inf"]


def checkpoint_of_another_model(folder: Path) -> Path:
    """The state dict `tinyq train --model mlp` writes (hidden 512): not the sweep's mlp (256, 128)."""
    path = folder / "train-mlp.npz"
    tq.save(models.for_images("mlp", (1, 8, 8), 10, rng=np.random.default_rng(0)).state_dict(), path)
    return path


def garbage_file(folder: Path) -> Path:
    path = folder / "garbage.npz"
    path.write_bytes(b"this is not a zip archive")
    return path


# command -> (valid base argv without --out, {option: [bad values]}); a value is a list of argv words or a
# callable(tmp_path) -> list of words. Every case must fail before any work.
TABLE = {
    "train": (["train", "--epochs", "1", "--no-progress"], {
        "--model": [["resnet"]],
        "--dataset": [["cifar"]],
        "--epochs": [["0"], ["-1"], ["1.5"], *[[v] for v in NOT_A_NUMBER]],
        "--batch-size": [["0"], ["-4"], ["x"]],
        "--lr": [["0"], ["-0.1"], ["1e400"], *[[v] for v in NOT_A_NUMBER]],
        "--val-fraction": [["1"], ["1.5"], ["-0.1"], ["0.9999"], ["nan"]],
        "--seed": [["-1"], ["1e3"], ["x"], [str(2 ** 64)]],
        "--resume": [[]],                        # nothing to resume in a new folder
    }),
    "sweep": (["sweep", "--epochs", "1", "--qat-epochs", "1", "--bits", "4", "--no-progress"], {
        "--model": [["resnet"], ["lenet"]],       # lenet needs 28x28 images, digits are 8x8
        "--dataset": [["cifar"]],
        "--checkpoint": [["missing.npz"], lambda tmp: [str(tmp)], lambda tmp: [str(garbage_file(tmp))],
                         lambda tmp: [str(checkpoint_of_another_model(tmp))]],
        "--epochs": [["0"], ["-2"], ["x"]],
        "--bits": [["1"], ["17"], ["4.5"], ["x"]],
        "--observers": [["kl"]],
        "--qat": [["dorefa"]],
        "--qat-epochs": [["0"], ["-1"]],
        "--sensitivity-bits": [["1"], ["99"]],
        "--seed": [["-1"], ["x"]],
        "--resume": [[]],
    }),
    "sensitivity": (["sensitivity", "--epochs", "1", "--no-progress"], {
        "--model": [["lenet"]],
        "--checkpoint": [lambda tmp: [str(garbage_file(tmp))], lambda tmp: [str(checkpoint_of_another_model(tmp))]],
        "--bits": [["1"], ["17"]],
        "--observer": [["kl"]],
        "--epochs": [["0"]],
        "--seed": [["-1"]],
    }),
    "lowprec": (["lowprec", "--epochs", "1", "--hidden", "8", "--word-bits", "8", "--frac-bits", "4",
                 "--no-progress"], {
        "--word-bits": [["0"], ["1"], ["-3"], ["17"], ["x"], ["3"]],     # 3: no fraction length fits with n=4
        "--frac-bits": [["99"], ["-1"], ["x"]],
        "--epochs": [["0"], ["-1"]],
        "--lr": [["0"], ["-1"], *[[v] for v in NOT_A_NUMBER]],
        "--batch-size": [["0"]],
        "--hidden": [["0"], ["-5"]],
        "--activation-rounding": [["floor"]],
        "--dataset": [["cifar"]],
        "--seed": [["-1"], ["x"]],
    }),
    "amp": (["amp", "--runs", "fp32", "--epochs", "1", "--limit", "64", "--no-progress"], {
        "--runs": [["fp4"]],
        "--dataset": [["cifar"]],
        "--model": [["resnet"]],
        "--width": [["0"]],
        "--epochs": [["0"], ["x"]],
        "--lr": [["0"], ["nan"]],
        "--batch-size": [["0"]],
        "--loss-multiplier-log2": [["3"], ["x"]],
        "--static-scale-log2": [["-1"], ["200"]],
        "--growth-interval": [["0"]],
        "--limit": [["0"]],
        "--seed": [["-1"]],
    }),
    "prune": (["prune", "--epochs", "1", "--retrain-epochs", "1", "--skip-sweep", "--no-progress"], {
        "--dataset": [["cifar"]],
        "--model": [["resnet"]],
        "--sparsities": [["1"], ["-0.1"], ["nan"]],
        "--retrain-epochs": [["0"]],
        "--epochs": [["0"]],
        "--k": [["0"], ["x"]],
        "--compression-sparsity": [["1.5"]],
        "--seed": [["-1"]],
    }),
    "distill": (["distill", "--temperatures", "2", "--alphas", "0.9", "--seeds", "1", "--student-epochs", "1",
                 "--teacher-epochs", "1", "--teacher-width", "4", "--limit", "64", "--no-progress"], {
        "--dataset": [["cifar"]],
        "--temperatures": [["0"], ["-1"], ["nan"], ["x"]],
        "--alphas": [["1.5"], ["-0.1"], ["nan"]],
        "--seeds": [["0"]],
        "--hidden": [["0"]],
        "--student-epochs": [["0"]],
        "--lr": [["0"]],
        "--seed": [["-1"]],
    }),
    "report": (["report", "--teacher-epochs", "1", "--student-epochs", "2", "--hidden", "8", "--clusters", "4",
                "--limit", "64", "--batch-size", "16", "--no-progress"], {
        "--dataset": [["cifar"]],
        "--temperature": [["0"], ["inf"]],
        "--alpha": [["2"]],
        "--sparsity": [["1"], ["-0.5"]],
        "--clusters": [["0"]],
        "--batch-size": [["0"]],
        "--seed": [["x"]],
    }),
}


def cases():
    for name, (base, options) in TABLE.items():
        for option, values in options.items():
            for i, value in enumerate(values):
                label = value if isinstance(value, list) else f"file{i}"
                yield pytest.param(name, base, option, value, id=f"{name} {option} {' '.join(map(str, label))}")


def run_cli(argv) -> int:
    try:
        return main(argv)
    except SystemExit as exit_info:           # argparse's errors exit 2 by themselves
        return exit_info.code


def assert_option_named(option: str, err: str):
    assert option in err or option.lstrip("-").replace("-", "_") in err, err


@pytest.mark.parametrize("command, base, option, value", list(cases()))
def test_bad_value_is_one_line_naming_the_option_and_writes_nothing(command, base, option, value, tmp_path, capsys):
    values = value(tmp_path) if callable(value) else value
    out = tmp_path / "out"
    # the bad value comes last so it overrides the base's (argparse keeps the last)
    code = run_cli(base + ["--out", str(out)] + [option] + values)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert err.startswith(("usage: tinyq", f"tinyq {command}: error:")), err
    error_lines = [line for line in err.splitlines() if "error:" in line]
    assert len(error_lines) == 1, err
    assert_option_named(option, error_lines[0])
    assert not out.exists(), sorted(os.listdir(out))


@pytest.mark.parametrize("command", ["train", "sweep", "sensitivity", "lowprec"])
def test_an_out_that_cannot_be_written_is_refused_before_any_work(command, tmp_path, capsys):
    afile = tmp_path / "a-file"
    afile.write_text("x")
    base = TABLE[command][0]
    for out in (afile, afile / "run"):
        assert run_cli(base + ["--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"tinyq {command}: error: --out: " in err and str(afile) in err, err
    assert afile.read_text() == "x"


def test_mismatched_checkpoint_says_which_keys_differ_and_what_it_holds(tmp_path, capsys):
    path = checkpoint_of_another_model(tmp_path)
    assert run_cli(["sweep", "--checkpoint", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "missing keys ['5.weight', '5.bias']" in err
    assert "1.weight has shape (512, 64), the model needs (256, 64)" in err
    assert "it seems to hold a `tinyq train --model mlp` model" in err


def test_the_console_script_prints_no_traceback(tmp_path):
    """The same through a real process (`python -m tinyq`), for one case of each kind."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for argv, option in [(["lowprec", "--hidden", "0"], "--hidden"),
                         (["sweep", "--checkpoint", str(checkpoint_of_another_model(tmp_path))], "--checkpoint"),
                         (["train", "--val-fraction", "0.9999"], "val_fraction")]:
        result = subprocess.run([sys.executable, "-m", "tinyq", *argv, "--out", str(tmp_path / "out")],
                                capture_output=True, text=True, env=env, timeout=120)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert option in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_stops_training_naming_the_epoch_and_json_stays_valid(tmp_path, capsys):
    out = tmp_path / "run"
    code = run_cli(["train", "--lr", "1e30", "--epochs", "3", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "training diverged in epoch 1" in err and "Traceback" not in err, err

    def strict(constant):
        raise AssertionError(f"bare {constant} in JSON")
    manifest = json.loads((out / "run.json").read_text(), parse_constant=strict)
    assert manifest["status"] == "failed" and "epoch 1" in manifest["info"]["error"]


@pytest.mark.parametrize("bad", [1, 17, True, 4.0, "8"])
def test_sweep_and_sensitivity_experiments_check_bits_with_the_one_bit_width_check(bad):
    """tinyq.experiments.bitwidth checks bits with formats.rounding.check_bits, before any work is done."""
    from tinyq.experiments.bitwidth import sensitivity, sweep
    with pytest.raises(ValueError, match=r"^sweep expects bits an integer in 2\.\.16, got"):
        sweep(None, None, None, bits=[8, bad])
    with pytest.raises(ValueError, match=r"^sensitivity expects bits an integer in 2\.\.16, got"):
        sensitivity(None, None, None, bits=bad)

