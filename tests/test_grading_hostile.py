"""Hostile submissions: each tries one way to get marks it did not earn, or to stop the grader reporting.

Every submission is the fixture repository's student copy with exercise 2.2 (square perimeter, 1 point)
honestly implemented, plus one trick. Each test asserts that the grade is what was honestly implemented,
that the JSON report exists, and that no process of the submission survives the grade.
"""
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

import tinyq.grading as tinyq_grading
from tinyq.grading import grade, make_student_copy
from tinyq.grading.sandbox import bwrap_works

FIXTURE = Path(__file__).parent / "fixtures" / "minirepo"
HONEST_POINTS = 1          # exercise 2.2
# CI sets TINYQ_REQUIRE_BWRAP=1 (.ci/run installs bubblewrap): there a missing sandbox fails instead of skipping
needs_bwrap = pytest.mark.skipif(not bwrap_works() and not os.environ.get("TINYQ_REQUIRE_BWRAP"),
                                 reason="bubblewrap (bwrap) is not installed or cannot run here")
SANDBOXES = ["none", pytest.param("bwrap", marks=needs_bwrap)]


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """(reference, submission): the fixture as reference, its student copy with 2.2 implemented honestly.
    The grader's own temporary folders go under tmp_path, so leftover processes can be found by path."""
    reference = Path(shutil.copytree(FIXTURE, tmp_path / "reference"))
    submission = tmp_path / "submission"
    make_student_copy(reference, submission)
    geometry = submission / "tinyq" / "geometry.py"
    text = geometry.read_text()
    stub = "            raise NotImplementedError('Exercise 2.2: square perimeter — see chapters/02_geometry.ipynb')\n"
    assert stub in text
    geometry.write_text(text.replace(stub, "            return self.side + self.side + 2 * self.side\n"))
    (tmp_path / "work").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "work"))
    return reference, submission


def append(path: Path, code: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text((path.read_text() if path.exists() else "") + "\n" + code + "\n")


def replace_in(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def survivors(marker: str) -> list[str]:
    """Command lines of live processes that mention marker (zombies excluded)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
            with open(f"/proc/{pid}/stat", "rb") as handle:
                state = handle.read().decode("ascii", "replace").rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z" and int(pid) != os.getpid():
            found.append(f"{pid}: {cmdline[:200]}")
    return found


def graded(setup, tmp_path, *, timeout=3.0, sandbox="auto", expect=HONEST_POINTS, max_seconds=40.0):
    reference, submission = setup
    report_path = tmp_path / "report.json"
    started = time.monotonic()
    report = grade(submission, reference=reference, timeout=timeout, sandbox=sandbox, json_path=report_path)
    seconds = time.monotonic() - started
    assert report_path.exists() and json.loads(report_path.read_text())["earned"] == report["earned"]
    time.sleep(0.1)
    assert not survivors(str(tmp_path)), survivors(str(tmp_path))
    statuses = {row["id"]: row["status"] for row in report["exercises"]}
    assert report["earned"] == expect, (statuses, [row["failures"][:1] for row in report["exercises"]])
    assert seconds < max_seconds, f"grading took {seconds:.1f} s"
    return {row["id"]: row for row in report["exercises"]}, report


# ---------------------------------------------------------------- honest controls

def test_honest_controls(setup, tmp_path):
    """The honest submission gets exactly 2.2; the reference gets full marks; the bare student copy none.
    (Correct solutions written differently pass under 50 seeds: test_grading_checks.py.)"""
    reference, _ = setup
    _, report = graded(setup, tmp_path)
    assert [r["id"] for r in report["exercises"] if r["status"] == "passed"] == ["2.2"]
    graded((reference, reference), tmp_path, expect=10)
    make_student_copy(reference, tmp_path / "bare")
    graded((reference, tmp_path / "bare"), tmp_path, expect=0)


def test_a_correct_solution_written_differently_gets_the_same_mark_on_50_draws(setup, tmp_path):
    """1.1 and 2.1 solved in another way than the reference: every one of 50 times the usual draws agrees."""
    reference, submission = setup
    replace_in(submission / "tinyq" / "arith.py",
               "    raise NotImplementedError('Exercise 1.1: add two numbers — see chapters/01_arith.ipynb')",
               "    return sum((b, a))")
    replace_in(submission / "tinyq" / "geometry.py",
               "            raise NotImplementedError('Exercise 2.1: square area — see chapters/02_geometry.ipynb')",
               "            return self.side ** 2")
    report = grade(submission, reference=reference, timeout=20, rounds=50, json_path=tmp_path / "r.json")
    assert {r["id"]: r["cases_passed"] for r in report["exercises"]} == {"1.1": 100, "1.2": 0, "2.1": 100, "2.2": 100}
    assert report["earned"] == 2 + 4 + 1 and not survivors(str(tmp_path))


# ---------------------------------------------------------------- attacks on the old pytest-based grader

@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_plugin_hook_sitecustomize_and_shadowed_packages_never_run(setup, tmp_path, sandbox):
    """pytest hooks in conftest.py and a plugin, sitecustomize/usercustomize, and shadowing pytest/ and
    numpy/ packages at the submission root: none of it is imported by the child, so none of it counts."""
    _, submission = setup
    marker = tmp_path / "ran"
    evil = (f"open({str(marker)!r} + '-' + __name__.replace('.', '_'), 'w').close()\n"
            "from tinyq.geometry import Shapes\nShapes.Square.area = lambda self: self.side * self.side\n")
    append(submission / "conftest.py", "import pytest\n\n@pytest.hookimpl(hookwrapper=True)\n"
           "def pytest_runtest_makereport(item, call):\n    outcome = yield\n    outcome.get_result().outcome = 'passed'\n")
    append(submission / "pytest.ini", "[pytest]\naddopts = -p evil_plugin")
    for name in ("evil_plugin.py", "sitecustomize.py", "usercustomize.py", "pytest/__init__.py", "numpy/__init__.py"):
        append(submission / name, evil)
    graded(setup, tmp_path, sandbox=sandbox)
    assert not list(tmp_path.glob("ran-*")), "submission code ran outside tinyq/"


def test_record_forgery_and_output_forgery_count_for_nothing(setup, tmp_path):
    """At import, write 'done' events and outputs for every task into the child's own output folder."""
    _, submission = setup
    append(submission / "tinyq" / "__init__.py", """
import json, os, sys
import numpy as np
plan = json.load(open(sys.argv[-1]))
with open(os.path.join(plan["out"], "events.jsonl"), "a") as events:
    for exercise in plan["exercises"]:
        events.write(json.dumps({"event": "start", "phase": exercise}) + "\\n")
        for task in plan["tasks"]:
            if task["exercise"] == exercise:
                np.savez(os.path.join(plan["out"], task["id"] + ".npz"), total=np.zeros(5), totals=np.zeros(6),
                         area=np.zeros(4), perimeter=np.zeros(4))
                events.write(json.dumps({"event": "done", "task": task["id"]}) + "\\n")
        events.write(json.dumps({"event": "end", "phase": exercise}) + "\\n")
    events.write(json.dumps({"event": "finished"}) + "\\n")
""")
    graded(setup, tmp_path)


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_rewriting_tests_and_patching_numpy_testing_changes_nothing(setup, tmp_path, sandbox):
    reference, submission = setup
    before = {p: p.read_bytes() for p in (reference / "tests").glob("*.py")}
    append(submission / "tinyq" / "__init__.py", f"""
import glob, numpy, numpy.testing
for path in glob.glob({str(reference / 'tests' / '*.py')!r}) + glob.glob({str(submission / 'tests' / '*.py')!r}):
    try:
        open(path, "w").write("def test_nothing():\\n    pass\\n")
    except OSError:
        pass
numpy.testing.assert_allclose = numpy.testing.assert_array_equal = lambda *a, **k: None
numpy.allclose = numpy.array_equal = lambda *a, **k: True
numpy.isclose = lambda a, b, **k: numpy.ones(numpy.shape(a), bool)
""")
    replace_in(submission / "tinyq" / "geometry.py",
               "            raise NotImplementedError('Exercise 2.1: square area — see chapters/02_geometry.ipynb')",
               "            return 42.0")
    graded(setup, tmp_path, sandbox=sandbox)
    if sandbox == "bwrap":
        assert {p: p.read_bytes() for p in (reference / "tests").glob("*.py")} == before


REWRITE_REFERENCE = """
import glob
for path in glob.glob({pattern!r}):
    try:
        text = open(path).read().replace("total = a + b", "raise NotImplementedError('rewritten')")
        open(path, "w").write(text)
    except OSError:
        pass
"""


@needs_bwrap
def test_rewriting_the_reference_is_impossible_in_the_sandbox(setup, tmp_path):
    reference, submission = setup
    before = (reference / "tinyq" / "arith.py").read_text()
    append(submission / "tinyq" / "__init__.py", REWRITE_REFERENCE.format(pattern=str(reference / "tinyq" / "*.py")))
    _, report = graded(setup, tmp_path, sandbox="bwrap")
    assert (reference / "tinyq" / "arith.py").read_text() == before and report["reference_changed"] == []


def test_rewriting_the_reference_without_sandbox_is_detected(setup, tmp_path):
    """Without a sandbox the child can write the reference; this grade is still right (the reference ran
    first) and the report says the reference changed, so later grades against it are not trusted."""
    reference, submission = setup
    append(submission / "tinyq" / "__init__.py", REWRITE_REFERENCE.format(pattern=str(reference / "tinyq" / "*.py")))
    _, report = graded(setup, tmp_path, sandbox="none")
    assert report["reference_changed"] == ["tinyq/arith.py"] and not report["ok"]
    assert any("changed during this run" in warning for warning in report["warnings"])


COPY_REFERENCE = """
    namespace = {{}}
    exec(open({path!r}).read(), namespace)
    return namespace["add"](a, b)
"""


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_copying_the_reference_solution(setup, tmp_path, sandbox):
    """add() runs the reference's own arith.py. Inside bubblewrap the reference is invisible, so 1.1 and
    1.2 fail; without a sandbox the copy works: the one risk the README and the report name."""
    reference, submission = setup
    replace_in(submission / "tinyq" / "arith.py",
               "    raise NotImplementedError('Exercise 1.1: add two numbers — see chapters/01_arith.ipynb')\n",
               COPY_REFERENCE.format(path=str(reference / "tinyq" / "arith.py")))
    installed = Path(tinyq_grading.__file__).resolve().parents[1] / "function.py"   # the installed solutions
    replace_in(submission / "tinyq" / "geometry.py",
               "            raise NotImplementedError('Exercise 2.1: square area — see chapters/02_geometry.ipynb')",
               f"            return float(len(open({str(installed)!r}).read()) * 0)")
    if sandbox == "bwrap":
        rows, _ = graded(setup, tmp_path, sandbox="bwrap")
        assert "FileNotFoundError" in rows["1.1"]["failures"][0]["message"]
        assert "FileNotFoundError" in rows["2.1"]["failures"][0]["message"]
    else:
        _, report = graded(setup, tmp_path, sandbox="none", expect=HONEST_POINTS + 2)
        assert any("reference solution" in warning for warning in report["warnings"])


# ---------------------------------------------------------------- a grader that always reports

@pytest.mark.parametrize("call, says", [("import sys\nsys.exit(0)", "SystemExit: 0"),
                                        ("import os\nos._exit(0)", "os._exit(0)")])
def test_exit_at_import_fails_everything_with_the_line(setup, tmp_path, call, says):
    _, submission = setup
    init = submission / "tinyq" / "__init__.py"
    append(init, call)
    line = len(init.read_text().splitlines())
    rows, _ = graded(setup, tmp_path, expect=0)
    for row in rows.values():
        failure = row["failures"][0]
        assert says in failure["message"] and failure["where"].startswith(f"tinyq/__init__.py:{line}")


def test_exit_inside_one_exercise_costs_only_that_exercise(setup, tmp_path):
    _, submission = setup
    replace_in(submission / "tinyq" / "geometry.py",
               "            raise NotImplementedError('Exercise 2.1: square area — see chapters/02_geometry.ipynb')",
               "            import os\n            os._exit(7)")
    rows, _ = graded(setup, tmp_path)
    assert "os._exit(7)" in rows["2.1"]["failures"][0]["message"] and rows["2.2"]["status"] == "passed"


def test_output_flood_and_non_utf8_bytes(setup, tmp_path):
    """2.1 floods stdout past the 32 MB limit; 1.1 writes bytes that are not UTF-8 and raises with them."""
    _, submission = setup
    replace_in(submission / "tinyq" / "geometry.py",
               "            raise NotImplementedError('Exercise 2.1: square area — see chapters/02_geometry.ipynb')",
               "            import os\n            while True:\n                os.write(1, b'flood' * 100000)")
    replace_in(submission / "tinyq" / "arith.py",
               "    raise NotImplementedError('Exercise 1.1: add two numbers — see chapters/01_arith.ipynb')",
               "    import os, sys\n    os.write(1, b'\\xff\\xfe\\x80 not utf-8')\n    os.write(2, b'\\xc3\\x28')\n"
               "    raise ValueError(b'\\xff\\xfe'.decode('utf-8', 'surrogateescape'))")
    rows, report = graded(setup, tmp_path)
    assert "32 MB" in rows["2.1"]["failures"][0]["message"]
    assert rows["1.1"]["failures"][0]["message"].startswith("ValueError")
    from tinyq.grading import format_report
    format_report(report).encode("utf-8")          # printable


def test_sleep_at_import_is_stopped_at_the_timeout_with_the_line(setup, tmp_path):
    _, submission = setup
    init = submission / "tinyq" / "__init__.py"
    append(init, "import time\ntime.sleep(600)")
    started = time.monotonic()
    rows, _ = graded(setup, tmp_path, timeout=2, expect=0)
    assert time.monotonic() - started < 20
    failure = rows["1.1"]["failures"][0]
    assert "timeout" in failure["message"] and failure["where"].startswith("tinyq/__init__.py:")


def test_sleep_at_import_deaf_to_the_alarm_is_stopped_too(setup, tmp_path):
    _, submission = setup
    append(submission / "tinyq" / "__init__.py",
           "import signal, time\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\ntime.sleep(600)")
    rows, _ = graded(setup, tmp_path, timeout=2, expect=0)
    failure = rows["2.2"]["failures"][0]
    assert "ignored the timeout" in failure["message"] and failure["where"].startswith("tinyq/__init__.py:")


def test_endless_loop_inside_hypothesis(setup, tmp_path):
    _, submission = setup
    replace_in(submission / "tinyq" / "geometry.py",
               "            raise NotImplementedError('Exercise 2.1: square area — see chapters/02_geometry.ipynb')",
               "            from hypothesis import given, settings, strategies as st\n"
               "            @settings(deadline=None, max_examples=10**9)\n"
               "            @given(st.integers())\n"
               "            def forever(n):\n"
               "                while True:\n"
               "                    pass\n"
               "            forever()")
    rows, _ = graded(setup, tmp_path, timeout=2)
    failure = rows["2.1"]["failures"][0]
    assert "timeout" in failure["message"] and failure["where"].startswith("tinyq/geometry.py:")


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_forked_and_daemonized_processes_do_not_survive(setup, tmp_path, sandbox):
    """area() starts 10 children and a daemon (double fork + setsid, out of the child's session), all
    sleeping; the grade ends with none of them alive."""
    _, submission = setup
    replace_in(submission / "tinyq" / "geometry.py",
               "            raise NotImplementedError('Exercise 2.1: square area — see chapters/02_geometry.ipynb')",
               "            import os, time\n"
               "            for _ in range(10):\n"
               "                if os.fork() == 0:\n"
               "                    time.sleep(600)\n"
               "                    os._exit(0)\n"
               "            if os.fork() == 0:\n"
               "                os.setsid()\n"
               "                if os.fork() == 0:\n"
               "                    signal = __import__('signal')\n"
               "                    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
               "                    time.sleep(600)\n"
               "                os._exit(0)\n"
               "            return -1.0")
    graded(setup, tmp_path, sandbox=sandbox)
