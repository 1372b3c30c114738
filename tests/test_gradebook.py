"""Gradebook of a class: serial, local pool and Dask give the same rows; resumable; bad input refused.

The class is six tiny submissions built from the fixture repository (tests/fixtures/minirepo, four
exercises worth 10 points): two correct, two with a wrong answer, one that crashes at import and one
that hangs at import. Grading one takes a second or two, so these tests stay fast.
"""
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from tinyq.cli import main
from tinyq.grading.gradebook import files_hash, find_submissions, grade_class

FIXTURE = Path(__file__).parent / "fixtures" / "minirepo"
TIMEOUT = 2.0          # per exercise and for `import tinyq`: the hanging submission costs about this much
SEED = 12345


def _student(root: Path, name: str, edit=None) -> Path:
    folder = root / name
    shutil.copytree(FIXTURE / "tinyq", folder / "tinyq")
    if edit is not None:
        relative, old, new = edit
        path = folder / "tinyq" / relative
        text = path.read_text()
        assert old in text, f"{old!r} not in {path}"
        path.write_text(text.replace(old, new, 1))
    return folder


def make_class(root: Path) -> Path:
    """Six students: correct (alice, bob), wrong answers (carol, dave), crash and hang at import."""
    root.mkdir(parents=True)
    _student(root, "alice")
    _student(root, "bob")
    _student(root, "carol", ("arith.py", "    total = a + b\n", "    total = a + b + (a > 50)\n"))
    _student(root, "dave", ("geometry.py", "return self.side * self.side", "return self.side * self.side + 1"))
    _student(root, "erin", ("__init__.py", '"""', 'import os\nos._exit(3)\n"""'))
    _student(root, "frank", ("__init__.py", '"""', 'import time\ntime.sleep(600)\n"""'))
    return root


def cells(book):
    """Every cell of the gradebook except the times."""
    return [{k: v for k, v in row.items() if k != "seconds"} for row in book["rows"]]


@pytest.fixture(scope="module")
def klass(tmp_path_factory):
    return make_class(tmp_path_factory.mktemp("class") / "submissions")


@pytest.fixture(scope="module")
def serial_book(klass, tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    book = grade_class(klass, out, reference=FIXTURE, timeout=TIMEOUT, seed=SEED, jobs=1, echo=lambda *a: None)
    return book, out


def grade_with(klass, out, **options):
    return grade_class(klass, out, reference=FIXTURE, timeout=TIMEOUT, seed=SEED, echo=lambda *a: None, **options)


# ---------------------------------------------------------------- what the rows say

def test_serial_gradebook_has_one_row_per_student_and_contains_failures(serial_book):
    book, out = serial_book
    rows = {row["student"]: row for row in book["rows"]}
    assert list(rows) == ["alice", "bob", "carol", "dave", "erin", "frank"]
    assert book["exercises"] == ["1.1", "1.2", "2.1", "2.2"]
    for name in ("alice", "bob"):
        assert rows[name]["status"] == "passed" and rows[name]["total"] == rows[name]["points"] == 10
    assert rows["carol"]["1.1"] == 0 and rows["carol"]["2.1"] > 0 and rows["carol"]["status"] == "partial"
    assert rows["dave"]["2.1"] == 0 and rows["dave"]["1.1"] > 0
    for name in ("erin", "frank"):                       # a crash / a hang costs only its own row
        assert rows[name]["status"] == "zero" and rows[name]["total"] == 0 and rows[name]["note"]
    assert rows["frank"]["seconds"] < 60
    saved = json.loads((out / "gradebook.json").read_text())
    assert saved["records"] == book["rows"] and saved["metadata"]["run_seed"] == SEED
    csv_lines = (out / "gradebook.csv").read_text().splitlines()
    assert len(csv_lines) == 7 and csv_lines[0].startswith("student,status,total,points")
    assert sorted(p.name for p in (out / "reports").iterdir()) == [f"{n}.json" for n in rows]


def test_students_get_different_seeds_and_the_report_records_them(serial_book):
    _, out = serial_book
    seeds = {json.loads(p.read_text())["result"]["report"]["seed"] for p in (out / "reports").iterdir()}
    assert len(seeds) == 6


def test_local_pool_gives_the_same_gradebook(klass, serial_book, tmp_path):
    pooled = grade_with(klass, tmp_path, jobs=2)
    assert pooled["executor"].startswith("local (2 workers")
    assert cells(pooled) == cells(serial_book[0])


# ---------------------------------------------------------------- resuming

def test_rerun_grades_nothing_and_prints_the_same_gradebook(klass, tmp_path, capsys):
    argv = ["grade", str(klass), "--out", str(tmp_path), "--reference", str(FIXTURE), "--timeout", str(TIMEOUT),
            "--jobs", "2", "--no-progress"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "graded 6, reused 0" in first
    assert main(argv) == 0                 # no --seed: the run seed is taken from the gradebook
    second = capsys.readouterr().out
    assert "graded 0, reused 6" in second
    table = lambda text: text[text.index("gradebook ("):text.index("graded ")]
    assert table(first) == table(second)
    student = klass / "carol" / "tinyq" / "arith.py"    # a change re-grades that student only
    before = files_hash(klass / "carol")
    student.write_text(student.read_text().replace("a + b + (a > 50)", "a + b"))
    try:
        assert files_hash(klass / "carol") != before
        assert main(argv) == 0
        third = capsys.readouterr().out
        assert "graded 1, reused 5" in third
        rows = json.loads((tmp_path / "gradebook.json").read_text())["records"]
        assert {r["student"]: r["total"] for r in rows}["carol"] == 10
    finally:
        student.write_text(student.read_text().replace("    total = a + b\n", "    total = a + b + (a > 50)\n"))


# ---------------------------------------------------------------- bad input: a clear error, no gradebook

def test_empty_folder_duplicate_names_and_bad_jobs_are_refused(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no submissions"):
        find_submissions(tmp_path / "empty")
    _student(tmp_path / "group1", "sam")
    _student(tmp_path / "group2", "sam")
    with pytest.raises(ValueError, match="share a student name.*sam"):
        find_submissions([tmp_path / "group1", tmp_path / "group2"])
    with pytest.raises(ValueError, match="not a folder"):
        find_submissions(tmp_path / "missing")
    out = tmp_path / "book"
    common = ["--out", str(out), "--reference", str(FIXTURE), "--no-progress"]
    assert main(["grade", str(tmp_path / "empty"), *common]) == 2
    assert "holds no submissions" in capsys.readouterr().err and not out.exists()
    assert main(["grade", str(tmp_path / "group1"), str(tmp_path / "group2"), *common]) == 2
    assert "share a student name" in capsys.readouterr().err and not out.exists()
    with pytest.raises(SystemExit):
        main(["grade", str(tmp_path / "group1"), "--jobs", "0", *common])
    assert "expected a number of worker processes >= 1, got '0'" in capsys.readouterr().err and not out.exists()
    with pytest.raises(ValueError, match="--jobs must be an integer >= 1"):
        grade_class(tmp_path / "group1", out, reference=FIXTURE, jobs=0)
    assert not out.exists()


def test_a_folder_that_is_not_a_copy_of_tinyq_costs_its_row(tmp_path):
    _student(tmp_path / "class", "sam")
    (tmp_path / "class" / "tom" / "homework").mkdir(parents=True)
    book = grade_class(tmp_path / "class", tmp_path / "book", reference=FIXTURE, timeout=TIMEOUT, seed=SEED, jobs=1,
                       exercise="1.1", echo=lambda *a: None)
    rows = {row["student"]: row for row in book["rows"]}
    assert rows["sam"]["status"] == "passed" and rows["sam"]["1.1"] > 0
    assert rows["tom"]["status"] == "error" and "has no tinyq/ folder" in rows["tom"]["note"]


def test_unreachable_scheduler_fails_fast_without_a_gradebook(tmp_path):
    pytest.importorskip("dask.distributed", reason="the cluster extra (dask[distributed]) is not installed")
    _student(tmp_path / "class", "sam")
    started = time.monotonic()
    with pytest.raises(ConnectionError, match="cannot reach the Dask scheduler"):
        grade_class(tmp_path / "class", tmp_path / "book", reference=FIXTURE, scheduler="tcp://127.0.0.1:9",
                    connect_timeout=2, echo=lambda *a: None)
    assert time.monotonic() - started < 20
    assert not (tmp_path / "book").exists()


# ---------------------------------------------------------------- on a Dask LocalCluster

@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("dask.distributed", reason="the cluster extra (dask[distributed]) is not installed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as local:
        yield local


def test_dask_local_cluster_gives_the_serial_gradebook(klass, serial_book, cluster, tmp_path):
    book = grade_with(klass, tmp_path, scheduler=cluster.scheduler_address)
    assert book["executor"].startswith("dask (2 workers")
    assert cells(book) == cells(serial_book[0])


def test_killing_a_worker_mid_grade_reschedules_and_gives_the_same_gradebook(klass, serial_book, cluster, tmp_path):
    from dask.distributed import Client

    killed = []

    def kill_a_busy_worker():
        with Client(cluster.scheduler_address, timeout="10s") as client:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                busy = [address for address, tasks in client.processing().items() if tasks]
                if busy and (tmp_path / "reports").is_dir():     # one task done, others running
                    pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
                time.sleep(0.05)

    killer = threading.Thread(target=kill_a_busy_worker)
    killer.start()
    book = grade_with(klass, tmp_path, scheduler=cluster.scheduler_address)
    killer.join()
    assert killed, "no worker was busy long enough to be killed"
    assert cells(book) == cells(serial_book[0])
    assert len(list((tmp_path / "reports").iterdir())) == 6
