"""Run folders never lie (issue 12): one manifest commits a run's files together; a run folder holding a run
is never reused silently; a resumed run continues the same history; kills at any point leave a folder
that describes one run, and the next run cleans up after them."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import tinyq as tq
from tinyq import run_folder
from tinyq.cli import main
from tinyq.run_folder import MANIFEST, RunFolder, RunFolderError, repair, verify
from tinyq.train import run

REPO = Path(__file__).resolve().parents[1]


def strict_json(path: Path):
    def refuse(constant):
        raise AssertionError(f"{path}: bare {constant} is not JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


def writer(text: str):
    return lambda tmp: Path(tmp).write_text(text)


# ---------------------------------------------------------------------------- the protocol

def test_commit_names_every_file_by_hash_and_refuses_reuse(tmp_path):
    folder = RunFolder(tmp_path / "r", "demo", {"seed": 1}, outputs=("a.txt", "b.txt"))
    folder.open()
    folder.commit({"a.txt": writer("one")})
    folder.commit({"a.txt": writer("two"), "b.txt": writer("three")}, status="finished")
    assert verify(tmp_path / "r") == []
    manifest = strict_json(tmp_path / "r" / MANIFEST)
    assert manifest["status"] == "finished" and set(manifest["files"]) == {"a.txt", "b.txt"}
    assert sorted(os.listdir(tmp_path / "r")) == ["a.txt", "b.txt", MANIFEST]
    with pytest.raises(RunFolderError, match="already holds a finished `tinyq demo` run.*--overwrite"):
        RunFolder(tmp_path / "r", "demo", {"seed": 1}, outputs=("a.txt",)).open()
    with pytest.raises(RunFolderError, match="seed=1 \\(now 2\\)"):
        RunFolder(tmp_path / "r", "demo", {"seed": 2}).open(resume=True)
    again = RunFolder(tmp_path / "r", "demo", {"seed": 2}, outputs=("a.txt", "b.txt"))
    again.open(overwrite=True)
    assert sorted(os.listdir(tmp_path / "r")) == [MANIFEST] and verify(tmp_path / "r") == []


def test_files_of_an_older_tinyq_without_manifest_are_not_overwritten_silently(tmp_path):
    (tmp_path / "best.npz").write_bytes(b"old")
    with pytest.raises(RunFolderError, match="files of an earlier run \\(best.npz\\)"):
        RunFolder(tmp_path, "train", {}, outputs=("best.npz",)).open()
    (tmp_path / "notes.txt").write_text("mine")
    RunFolder(tmp_path, "train", {}, outputs=("best.npz",)).open(overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["notes.txt", MANIFEST]   # files of other programs are left alone


class Crash(Exception):
    pass


@pytest.mark.parametrize("crash_at", range(6))
def test_a_crash_at_any_step_of_a_commit_leaves_one_run_and_repair_completes_it(tmp_path, monkeypatch, crash_at):
    """Simulated kill at the k-th file-system step of a commit (each os.replace); then repair + verify."""
    folder = RunFolder(tmp_path, "demo", {}, outputs=("a.txt", "b.txt"))
    folder.open()
    folder.commit({"a.txt": writer("a1"), "b.txt": writer("b1")})
    real_replace, calls = os.replace, []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) > crash_at:
            raise Crash()
        real_replace(src, dst)
    monkeypatch.setattr(os, "replace", replace)
    try:
        folder.commit({"a.txt": writer("a2"), "b.txt": writer("b2")})
        committed = True
    except Crash:
        committed = False
    monkeypatch.setattr(os, "replace", real_replace)
    # the commit's steps: pending a, pending b, the manifest (commit point), rename a, rename b
    repair(tmp_path)
    assert verify(tmp_path) == []
    texts = ((tmp_path / "a.txt").read_text(), (tmp_path / "b.txt").read_text())
    assert texts == (("a2", "b2") if crash_at >= 3 else ("a1", "b1"))    # never a1 with b2
    assert committed == (crash_at >= 5)


# ---------------------------------------------------------------------------- tinyq train

def history_of(out: Path):
    return strict_json(out / "history.json")["records"]


def test_a_resumed_run_continues_the_same_history_bit_for_bit(tmp_path):
    whole = run("mlp", "digits", epochs=3, seed=4, out=tmp_path / "whole", echo=None, progress=False)

    def interrupt_after_epoch_2(line):
        if line.startswith("    2 "):
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        run("mlp", "digits", epochs=3, seed=4, out=tmp_path / "cut", echo=interrupt_after_epoch_2, progress=False)
    assert len(history_of(tmp_path / "cut")) == 2 and verify(tmp_path / "cut") == []
    with pytest.raises(RunFolderError, match="--resume to continue it"):
        run("mlp", "digits", epochs=3, seed=4, out=tmp_path / "cut", echo=None, progress=False)
    resumed = run("mlp", "digits", epochs=3, seed=4, out=tmp_path / "cut", resume=True, echo=None, progress=False)
    assert resumed["history"] == whole["history"] == history_of(tmp_path / "cut")
    for name in ("best.npz", "last.npz"):
        a, b = tq.load(tmp_path / "whole" / name), tq.load(tmp_path / "cut" / name)
        assert all(np.array_equal(a[k], b[k]) for k in a)
    assert resumed["summary"]["test_accuracy"] == whole["summary"]["test_accuracy"]


def test_rerunning_into_a_finished_folder_is_refused_then_overwritten(tmp_path, capsys):
    out = tmp_path / "r"
    argv = ["train", "--epochs", "1", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    before = {name: (out / name).read_bytes() for name in os.listdir(out)}
    assert main(argv + ["--seed", "1"]) == 2
    assert "already holds a finished `tinyq train` run" in capsys.readouterr().err
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == before   # untouched
    assert main(argv + ["--resume"]) == 0 and "nothing to resume" in capsys.readouterr().out
    assert main(argv + ["--seed", "1", "--overwrite"]) == 0
    assert strict_json(out / "history.json")["metadata"]["seed"] == 1 and verify(out) == []


# ---------------------------------------------------------------------------- real kills

def start(argv, cwd, fast=True):
    env = {**os.environ, "PYTHONPATH": str(REPO), "TINYQ_FAST": "1" if fast else "0"}
    return subprocess.Popen([sys.executable, "-m", "tinyq", *argv], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill_when(process, condition, delay: float, timeout: float = 120.0):
    """SIGKILL process `delay` seconds after condition() holds (or when it ends by itself)."""
    deadline = time.monotonic() + timeout
    while not condition() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(delay)
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait()


def manifest_epoch(out: Path) -> int:
    try:
        return strict_json(out / MANIFEST)["info"].get("epoch", 0)
    except (OSError, AssertionError, ValueError):
        return -1


def assert_describes_one_run(out: Path, command: str, settings: dict | None = None):
    """After a kill, before any repair: the manifest parses; each file it names is there with its hash (or
    its pending copy is, to be renamed by the next run); what it names loads and agrees with it."""
    if not (out / MANIFEST).exists():
        visible = [n for n in os.listdir(out) if not n.startswith(".")] if out.exists() else []
        assert visible == [], visible                         # killed before the run claimed the folder
        return
    manifest = strict_json(out / MANIFEST)
    assert manifest["command"] == command
    if settings:
        assert {k: manifest["settings"][k] for k in settings} == settings
    for name, digest in manifest["files"].items():
        pending = out / f".{name}.pending"
        path = pending if pending.exists() and run_folder.sha256_file(pending) == digest else out / name
        assert run_folder.sha256_file(path) == digest, name
        if name.endswith(".npz"):
            tq.load(path)
        elif name.endswith(".json"):
            payload = strict_json(path)
            if name == "history.json":
                assert len(payload["records"]) == manifest["info"]["epoch"]
                assert [r["epoch"] for r in payload["records"]] == list(range(1, manifest["info"]["epoch"] + 1))
                assert payload["metadata"]["seed"] == manifest["settings"]["seed"]
    repair(out)
    assert verify(out) == []


def assert_no_leftovers(out: Path):
    assert [n for n in os.listdir(out) if n.endswith((".tmp", ".pending"))] == []


@pytest.mark.slow
def test_sigkill_of_tinyq_train_at_several_points_including_a_rerun_into_a_finished_folder(tmp_path):
    out = tmp_path / "r"
    train = ["train", "--epochs", "2", "--no-progress", "--out", str(out)]
    # 1. before and after the folder is claimed, and in the middle of epochs (first run)
    for condition, delay in [(lambda: True, 0.2), (lambda: (out / MANIFEST).exists(), 0.0),
                             (lambda: manifest_epoch(out) >= 1, 0.05), (lambda: manifest_epoch(out) >= 1, 0.4)]:
        kill_when(start(train + ["--overwrite"], tmp_path), condition, delay)
        assert_describes_one_run(out, "train")
    # a stale temporary of a killed writer, as a kill inside atomic_open leaves it
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = out / f".last.npz.{int(dead.stdout)}-0badc0de.tmp"
    stale.write_bytes(b"half")
    # 2. resume to the end: the history continues
    assert start(train + ["--resume"], tmp_path).wait() == 0 or manifest_epoch(out) == 0
    if strict_json(out / MANIFEST)["status"] != "finished":          # killed before epoch 1: nothing to resume
        assert start(train + ["--overwrite"], tmp_path).wait() == 0
    assert_no_leftovers(out)
    finished = strict_json(out / "history.json")
    assert strict_json(out / MANIFEST)["status"] == "finished" and len(finished["records"]) == 2
    # 3. rerun into the finished folder with --overwrite and another seed, killed at several points
    for condition, delay in [(lambda: True, 0.3), (lambda: manifest_epoch(out) == 0, 0.0),
                             (lambda: manifest_epoch(out) == 1, 0.0), (lambda: manifest_epoch(out) == 1, 0.3)]:
        kill_when(start(train + ["--overwrite", "--seed", "5"], tmp_path), condition, delay)
        assert_describes_one_run(out, "train")
        seed = strict_json(out / MANIFEST)["settings"]["seed"]
        if (out / "history.json").exists():
            assert strict_json(out / "history.json")["metadata"]["seed"] == seed     # never the old run's
    assert start(train + ["--overwrite", "--seed", "5"], tmp_path).wait() == 0
    assert_no_leftovers(out)
    assert verify(out) == [] and strict_json(out / "history.json")["metadata"]["seed"] == 5


@pytest.mark.slow
def test_sigkill_of_tinyq_sweep_leaves_one_run(tmp_path):
    out = tmp_path / "s"
    sweep = ["sweep", "--epochs", "1", "--bits", "4", "--observers", "minmax", "--qat", "ste", "--no-progress",
             "--out", str(out)]
    float_saved = lambda: "float.npz" in (strict_json(out / MANIFEST)["files"]  # noqa: E731
                                          if (out / MANIFEST).exists() else {})
    for condition, delay in [(lambda: (out / MANIFEST).exists(), 0.0), (float_saved, 0.0), (float_saved, 0.5)]:
        kill_when(start(sweep + ["--overwrite"], tmp_path), condition, delay)
        assert_describes_one_run(out, "sweep")
    assert start(sweep + ["--resume"], tmp_path).wait() == 0
    assert_no_leftovers(out)
    assert verify(out) == [] and strict_json(out / MANIFEST)["status"] == "finished"
    records = strict_json(out / "sweep.json")["records"]
    assert [r["method"] for r in records] == ["fp32", "ptq-minmax", "qat-ste"]
