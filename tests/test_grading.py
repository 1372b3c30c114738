"""Student-copy generator and grader: on the fixture repository, then the invariant on the real one.

Hostile submissions are in test_grading_hostile.py; the trusted checks themselves (registry, fairness
under 100 seeds, prerequisites) in test_grading_checks.py.
"""
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tinyq.grading import (
    GradingError,
    MarkerError,
    format_report,
    grade,
    load_exercises,
    make_student_copy,
)
from tinyq.grading import student as student_module
from tinyq.grading.grader import reference_root

FIXTURE = Path(__file__).parent / "fixtures" / "minirepo"


@pytest.fixture
def repo(tmp_path):
    """A private copy of the fixture repository that a test may break."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "reference"))


def rows(report):
    return {row["id"]: row for row in report["exercises"]}


# ---------------------------------------------------------------- generator

def test_student_copy_replaces_every_region(repo, tmp_path):
    (repo / "tinyq" / "__pycache__").mkdir()
    (repo / "tinyq" / "__pycache__" / "arith.cpython-311.pyc").write_bytes(b"junk")
    (repo / ".git").mkdir()
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    counts = make_student_copy(repo, tmp_path / "student")
    student = tmp_path / "student"
    assert counts == {"1.1": 1, "1.2": 1, "2.1": 1, "2.2": 1}
    arith = (student / "tinyq" / "arith.py").read_text(encoding="utf-8")
    geometry = (student / "tinyq" / "geometry.py").read_text(encoding="utf-8")
    assert "SOLUTION" not in arith + geometry
    assert "total = a + b" not in arith and "4 * self.side" not in geometry
    # the raise sits at the marker's indentation: 4 spaces in a function, 8 in a method, 12 two classes deep
    assert "\n    raise NotImplementedError('Exercise 1.1: add two numbers — see chapters/01_arith.ipynb')\n" in arith
    assert "\n        raise NotImplementedError('Exercise 1.2: accumulate" in arith
    assert "\n            raise NotImplementedError('Exercise 2.1: square area" in geometry
    assert 'raise ValueError("negative side")' in geometry  # code before a region is kept
    assert "def untouched(x):\n    return 2 * x" in arith
    assert not (student / ".git").exists() and not (student / "tinyq" / "__pycache__").exists()
    # tests are copied verbatim; notebooks lose outputs and execution counts
    assert (student / "tests" / "test_fixture_arith.py").read_bytes() == \
        (repo / "tests" / "test_fixture_arith.py").read_bytes()
    notebook = json.loads((student / "chapters" / "01_arith.ipynb").read_text(encoding="utf-8"))
    code_cells = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert code_cells and all(c["outputs"] == [] and c["execution_count"] is None for c in code_cells)
    # the copy imports, and a stripped function raises the exercise's message
    probe = "import tinyq.arith as a\ntry:\n    a.add(1, 2)\nexcept NotImplementedError as e:\n    print(e)"
    out = subprocess.run([sys.executable, "-c", probe], cwd=student, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "Exercise 1.1: add two numbers — see chapters/01_arith.ipynb"


BAD_MARKERS = {
    "unclosed": ("def f():\n    ### BEGIN SOLUTION 1.1\n    return 1\n", 2, "never closed"),
    "nested": (("def f():\n    ### BEGIN SOLUTION 1.1\n    ### BEGIN SOLUTION 1.2\n    return 1\n"
                "    ### END SOLUTION\n    ### END SOLUTION\n"), 3, "cannot nest"),
    "end without begin": ("def f():\n    return 1\n    ### END SOLUTION\n", 3, "without a BEGIN"),
    "unknown id": ("def f():\n    ### BEGIN SOLUTION 9.9\n    return 1\n    ### END SOLUTION\n", 2, "unknown exercise id '9.9'"),
    "missing id": ("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n", 2, "expected"),
    "indent mismatch": ("def f():\n    if True:\n        ### BEGIN SOLUTION 1.1\n        return 1\n    ### END SOLUTION\n",
                        5, "indented differently"),
    "module level": ("x = 1\n### BEGIN SOLUTION 1.1\ny = 2\n### END SOLUTION\n", 2, "not inside a function"),
    "partial block": ("def f(x):\n    ### BEGIN SOLUTION 1.1\n    if x:\n    ### END SOLUTION\n        return 1\n",
                      None, "does not parse"),
}


@pytest.mark.parametrize("case", sorted(BAD_MARKERS))
def test_malformed_markers_name_file_and_line(repo, tmp_path, case):
    text, line, phrase = BAD_MARKERS[case]
    (repo / "tinyq" / "bad.py").write_text(text, encoding="utf-8")
    out = tmp_path / "student"
    with pytest.raises(MarkerError) as error:
        make_student_copy(repo, out)
    message = str(error.value)
    assert phrase in message
    location = "tinyq/bad.py:" + (str(line) + ":" if line is not None else "")
    assert message.startswith(location), message
    assert not out.exists() or not any(out.iterdir()), "nothing may be written when a marker is malformed"


def test_student_copy_refuses_bad_destinations(repo, tmp_path):
    with pytest.raises(ValueError, match="outside the source"):
        make_student_copy(repo, repo / "student")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ValueError, match="not empty"):
        make_student_copy(repo, tmp_path / "full")
    with pytest.raises(ValueError, match="no tinyq/ folder"):
        make_student_copy(tmp_path / "full", tmp_path / "out")


def test_student_copy_takes_what_git_tracks(repo, tmp_path):
    """In a git checkout the copy holds the tracked files only: no grade-report.json, no ignored runs/."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    git = ["git", "-c", "user.email=t@example.org", "-c", "user.name=t", "-C", str(repo)]
    subprocess.run(git + ["init", "-q"], check=True)
    (repo / ".gitignore").write_text("grade-report.json\nruns/\n")
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-qm", "fixture"], check=True)
    (repo / "grade-report.json").write_text("{}")
    (repo / "runs").mkdir()
    (repo / "runs" / "model.npz").write_bytes(b"x")
    (repo / "notes-untracked.txt").write_text("private")
    make_student_copy(repo, tmp_path / "student")
    copied = {p.relative_to(tmp_path / "student").as_posix() for p in (tmp_path / "student").rglob("*") if p.is_file()}
    assert "tinyq/arith.py" in copied and ".gitignore" in copied
    assert not {"grade-report.json", "runs/model.npz", "notes-untracked.txt"} & copied


def test_student_copy_outside_git_leaves_reports_out(repo, tmp_path):
    (repo / "grade-report.json").write_text("{}")
    make_student_copy(repo, tmp_path / "student")
    assert not (tmp_path / "student" / "grade-report.json").exists()
    assert (tmp_path / "student" / "tinyq" / "arith.py").exists()


def test_interrupted_student_copy_leaves_no_partial_tree(repo, tmp_path, monkeypatch):
    copied = []

    def copy_then_die(src, dst, *args, **kwargs):
        if len(copied) == 2:
            raise KeyboardInterrupt("killed half-way")
        copied.append(src)
        return shutil.copy2(src, dst)
    monkeypatch.setattr(student_module.shutil, "copy2", copy_then_die)
    with pytest.raises(KeyboardInterrupt):
        make_student_copy(repo, tmp_path / "student")
    assert not (tmp_path / "student").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["reference"], "the temporary build folder must be removed"


# ---------------------------------------------------------------- grader on the fixture

def test_reference_passes_and_student_copy_fails(repo, tmp_path):
    make_student_copy(repo, tmp_path / "student")
    good = grade(repo, reference=repo, timeout=20, json_path=tmp_path / "good.json")
    assert good["ok"] and good["earned"] == good["points"] == 10
    assert json.loads((tmp_path / "good.json").read_text())["earned"] == 10
    bad = grade(tmp_path / "student", reference=repo, timeout=20)
    status = {ex_id: row["status"] for ex_id, row in rows(bad).items()}
    assert status == {"1.1": "failed", "1.2": "blocked", "2.1": "failed", "2.2": "failed"}
    assert not bad["ok"] and bad["earned"] == 0
    assert rows(bad)["1.2"]["blocked_by"] == ["1.1"]
    failure = rows(bad)["2.2"]["failures"][0]
    assert failure["message"].startswith("NotImplementedError: Exercise 2.2: square perimeter")
    assert failure["where"] == "tinyq/geometry.py:17 in perimeter" and "sides" in failure["input"]  # the raise line
    table = format_report(bad)
    assert "NotImplementedError: Exercise 2.2: square perimeter" in table and "0/4 exercises passed" in table


def test_a_wrong_answer_is_reported_with_input_expected_and_got(repo):
    arith = repo / "tinyq" / "arith.py"
    arith.write_text(arith.read_text().replace("    total = a + b\n", "    total = a + b + (a > 50)\n"))
    report = grade(repo, reference=FIXTURE, timeout=20, seed=3)
    failure = rows(report)["1.1"]["failures"][0]
    assert "values differ" in failure["message"]
    assert set(failure["input"]) == {"a", "b"} and "total" in failure["expected"] and "total" in failure["got"]
    assert rows(report)["2.1"]["status"] == "passed"
    text = format_report(report)
    assert "expected: total=" in text and "got: total=" in text


def test_syntax_error_in_one_module_fails_only_its_exercises(repo):
    geometry = repo / "tinyq" / "geometry.py"
    geometry.write_text(geometry.read_text() + "\ndef broken(:\n", encoding="utf-8")
    report = grade(repo, reference=FIXTURE, timeout=20)
    status = {ex_id: row["status"] for ex_id, row in rows(report).items()}
    assert status == {"1.1": "passed", "1.2": "passed", "2.1": "failed", "2.2": "failed"}
    failure = rows(report)["2.1"]["failures"][0]
    assert "SyntaxError" in failure["message"] and "geometry.py" in failure["where"] + failure["message"]


def test_infinite_loop_costs_one_exercise_and_names_its_line(repo):
    arith = repo / "tinyq" / "arith.py"
    arith.write_text(arith.read_text().replace("    total = a + b\n", "    while True:\n        pass\n"))
    started = time.monotonic()
    report = grade(repo, reference=FIXTURE, timeout=1)
    assert time.monotonic() - started < 30
    status = {ex_id: row["status"] for ex_id, row in rows(report).items()}
    assert status == {"1.1": "failed", "1.2": "blocked", "2.1": "passed", "2.2": "passed"}
    failure = rows(report)["1.1"]["failures"][0]
    assert "timeout" in failure["message"] and failure["where"] in ("tinyq/arith.py:7 in add", "tinyq/arith.py:8 in add")


def test_hang_deaf_to_the_timeout_signal_and_a_crash_are_contained(repo):
    geometry = repo / "tinyq" / "geometry.py"
    text = geometry.read_text()
    text = text.replace("            return self.side * self.side\n",
                        "            import signal\n            signal.pthread_sigmask(signal.SIG_BLOCK, "
                        "{signal.SIGALRM})\n            while True:\n                pass\n")
    text = text.replace("            for _ in range(1):\n", "            import os\n            os._exit(3)\n"
                                                             "            for _ in range(1):\n")
    geometry.write_text(text)
    report = grade(repo, reference=FIXTURE, timeout=1)
    status = {ex_id: row["status"] for ex_id, row in rows(report).items()}
    assert status == {"1.1": "passed", "1.2": "passed", "2.1": "failed", "2.2": "failed"}
    hang = rows(report)["2.1"]["failures"][0]
    assert "ignored the timeout" in hang["message"] and hang["where"].startswith("tinyq/geometry.py:")
    crash = rows(report)["2.2"]["failures"][0]
    assert "os._exit(3)" in crash["message"] and crash["where"].startswith("tinyq/geometry.py:")


def test_grading_one_exercise_runs_it_and_its_prerequisites(repo):
    report = grade(repo, "1.2", reference=repo, timeout=20)
    assert [row["id"] for row in report["exercises"]] == ["1.1", "1.2"] and report["ok"]
    with pytest.raises(ValueError, match="unknown exercise '8.8'"):
        grade(repo, "8.8", reference=repo)


def test_grader_refuses_bad_paths_and_options(repo, tmp_path):
    with pytest.raises(GradingError, match="no tinyq/ folder"):
        grade(tmp_path / "nothing-here", reference=repo)
    for timeout in (0, -1, math.nan, math.inf, "soon"):
        with pytest.raises(ValueError, match="timeout"):
            grade(repo, reference=repo, timeout=timeout)
    with pytest.raises(ValueError, match="sandbox"):
        grade(repo, reference=repo, sandbox="docker")


@pytest.mark.parametrize("value", ["0", "-2", "nan", "inf", "abc"])
def test_cli_rejects_bad_timeouts(value, capsys):
    from tinyq.cli import main
    with pytest.raises(SystemExit) as stop:
        main(["grade", str(FIXTURE), "--timeout", value])
    assert stop.value.code == 2 and "--timeout" in capsys.readouterr().err


def test_same_seed_same_inputs_and_the_seed_is_reported(repo):
    first = grade(repo, reference=repo, timeout=20, seed=12345, sandbox="none")
    assert first["seed"] == 12345 and first["sandbox"] == "none" and first["ok"]
    assert any("reference solution" in warning for warning in first["warnings"])


# ---------------------------------------------------------------- the invariant on the real repository

@pytest.mark.slow
def test_reference_gets_full_marks_and_student_copy_zero(tmp_path):
    """Every exercise in exercises.toml has a solution region; graded by the trusted checks, the reference
    gets every point and the generated student copy none (so no check is vacuous). Also: the copy imports,
    and a full grade stays well under a minute."""
    root = reference_root()
    exercises = load_exercises()
    counts = make_student_copy(root, tmp_path / "student")
    missing = [e for e, n in counts.items() if n == 0]
    assert not missing, f"exercises without a solution region: {missing}"
    probe = subprocess.run([sys.executable, "-c", "import tinyq; print(tinyq.__file__)"], cwd=tmp_path,
                           env={"PYTHONPATH": str(tmp_path / "student"), "PATH": "/usr/bin:/bin"},
                           capture_output=True, text=True, check=False)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip().startswith(str(tmp_path / "student"))

    started = time.monotonic()
    reference = grade(root, timeout=60, json_path=tmp_path / "reference.json")
    seconds = time.monotonic() - started
    not_passed = {r["id"]: r["failures"] for r in reference["exercises"] if r["status"] != "passed"}
    assert not not_passed, f"the reference must pass every trusted check: {not_passed}"
    assert set(rows(reference)) == set(exercises) and reference["earned"] == reference["points"]
    assert seconds < 60, f"a full grade took {seconds:.1f} s"

    student = grade(tmp_path / "student", timeout=60)
    passing = [r["id"] for r in student["exercises"] if r["cases_passed"]]
    assert not passing, f"trusted checks that pass without the solution (vacuous): {passing}"
    assert student["earned"] == 0 and all(r["status"] != "passed" for r in student["exercises"])


@pytest.mark.slow
def test_student_copy_fails_every_exercise_self_check_test(tmp_path):
    """The pytest exercise tests (students' self-checks) are not vacuous: on the student copy every one of
    them fails. (On the reference they pass: they are part of this suite.)"""
    from xml.etree import ElementTree
    make_student_copy(reference_root(), tmp_path / "student")
    student = tmp_path / "student"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTHONPATH")}
    env.update(PYTHONPATH=str(student), TINYQ_FAST="1", MPLBACKEND="Agg")
    marked = sorted(str(path.relative_to(student)) for path in (student / "tests").glob("test_*.py")
                    if "mark.exercise(" in path.read_text(encoding="utf-8"))        # collect only these: faster
    run = subprocess.run([sys.executable, "-m", "pytest", *marked, "-m", "exercise", "-q", "-p", "no:cacheprovider",
                          "--junitxml", str(tmp_path / "junit.xml"), "-o", "addopts=", "--timeout", "120"],
                         cwd=student, env=env, capture_output=True, text=True, check=False)
    cases = ElementTree.parse(tmp_path / "junit.xml").getroot().iter("testcase")
    outcomes = {f"{c.get('classname')}::{c.get('name')}": [child.tag for child in c] for c in cases}
    assert outcomes, run.stdout[-2000:]
    passing = sorted(name for name, tags in outcomes.items() if not {"failure", "error"} & set(tags))
    assert not passing, f"exercise tests that pass without the solution (vacuous): {passing}"
