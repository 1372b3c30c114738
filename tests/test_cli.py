"""The tinyq command line: help, argument errors, and the student/grade commands end to end."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tinyq.cli import COMMANDS, arg, build_parser, command, main

FIXTURE = Path(__file__).parent / "fixtures" / "minirepo"


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in ("student", "grade"):
        assert name in out and COMMANDS[name].help in " ".join(out.split())


def test_python_dash_m_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "tinyq", "--help"], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: tinyq")


def test_unknown_command_and_missing_command_are_argparse_errors(capsys):
    for argv, phrase in [(["frobnicate"], "invalid choice: 'frobnicate'"), ([], "required")]:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        assert phrase in capsys.readouterr().err


def test_adding_a_command_is_one_function(capsys):
    @command("echo-test", help="print the seed", args=[arg("--seed", type=int, default=0)])
    def echo(args):
        print(f"seed={args.seed}")
        return 3

    try:
        assert main(["echo-test", "--seed", "7"]) == 3
        assert capsys.readouterr().out == "seed=7\n"
        assert "echo-test" in build_parser().format_help()
    finally:
        del COMMANDS["echo-test"]


def test_student_then_grade_through_the_cli(tmp_path, capsys):
    out = tmp_path / "student"
    assert main(["student", str(out), "--src", str(FIXTURE)]) == 0
    printed = capsys.readouterr().out
    assert "4 solution regions removed for 4 of 4 exercises" in printed
    assert (out / "tinyq" / "arith.py").is_file()

    report_path = tmp_path / "report.json"
    code = main(["grade", str(out), "--reference", str(FIXTURE), "--json", str(report_path), "--timeout", "20"])
    assert code == 1  # nothing is solved in a fresh student copy
    table = capsys.readouterr().out
    assert "0/4 exercises passed, 0/10 points" in table and "blocked by 1.1" in table
    report = json.loads(report_path.read_text())
    assert [row["status"] for row in report["exercises"]] == ["failed", "blocked", "failed", "failed"]

    code = main(["grade", str(FIXTURE), "--reference", str(FIXTURE), "--exercise", "2.2",
                 "--json", str(tmp_path / "one.json")])
    assert code == 0
    assert "1/1 exercises passed, 1/1 points" in capsys.readouterr().out


def test_user_errors_print_one_line_and_exit_2(tmp_path, capsys):
    assert main(["grade", str(tmp_path / "missing"), "--json", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinyq grade: error:") and "has no tinyq/ folder" in err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "file").write_text("x")
    assert main(["student", str(tmp_path / "full"), "--src", str(FIXTURE)]) == 2
    assert "not empty" in capsys.readouterr().err


def test_train_same_seed_prints_the_same_numbers(tmp_path, capsys):
    outputs = []
    for run_dir in ("a", "b"):
        assert main(["train", "--model", "mlp", "--epochs", "2", "--seed", "3", "--out", str(tmp_path / run_dir),
                     "--no-progress"]) == 0
        lines = capsys.readouterr().out.splitlines()
        outputs.append([line for line in lines if not line.startswith(("wall time", "checkpoints"))])
    assert outputs[0] == outputs[1]
    assert any(line.startswith("test accuracy (last epoch):") for line in outputs[0])
    assert (tmp_path / "a" / "best.npz").is_file() and (tmp_path / "a" / "history.json").is_file()


def test_train_bad_choices_are_clear(capsys, tmp_path, monkeypatch):
    with pytest.raises(SystemExit):
        main(["train", "--model", "resnet"])
    assert "invalid choice: 'resnet'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--dataset", "cifar"])
    assert "invalid choice: 'cifar'" in capsys.readouterr().err
    assert main(["train", "--model", "lenet", "--out", str(tmp_path / "x")]) == 2
    assert "lenet expects 28x28" in capsys.readouterr().err
