"""Student copy: the repository with every solution region replaced by a NotImplementedError.

A region is a run of lines between a BEGIN marker line (three hashes, then
`BEGIN SOLUTION <id>`) and an END marker line (three hashes, then
`END SOLUTION`) at the same indentation. It becomes one line,
`raise NotImplementedError("Exercise <id>: <title> — see chapters/<chapter>")`,
at the marker's indentation. Files under tests/ are copied as they are (tests
never hold solutions; the fixtures there hold deliberate markers), notebooks
lose their outputs.

Which files: in a git checkout, exactly the files git tracks (`git ls-files`),
so ignored files (a grade-report.json, runs/, caches) never reach students;
outside git, every file except caches, virtual environments, build output, runs/
and *.json reports at the top level. The copy is built in a temporary folder
beside OUT and renamed to OUT at the end, so a run that is killed or fails leaves
no partial tree.
"""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .exercises import EXERCISES_FILE, Exercise, load_exercises

BEGIN = re.compile(r"^(?P<indent>[ \t]*)### BEGIN SOLUTION(?P<rest>.*?)\s*$")
END = re.compile(r"^(?P<indent>[ \t]*)### END SOLUTION(?P<rest>.*?)\s*$")
SKIP_NAMES = {".git", "__pycache__", ".pytest_cache", ".hypothesis", ".ipynb_checkpoints", ".venv", "venv",
              "build", "dist", "runs", ".mypy_cache", ".ruff_cache", ".tox", ".nox"}
SKIP_SUFFIXES = (".pyc", ".pyo", ".nbi", ".nbc", ".egg-info")
SKIP_RELATIVE = {Path("benchmarks/results")}
VERBATIM_TOP = {"tests"}


class MarkerError(ValueError):
    """A malformed solution marker; the message starts with file:line."""


@dataclass(frozen=True)
class Region:
    """Lines begin..end (1-based, markers included) of one solution for exercise_id."""

    exercise_id: str
    begin: int
    end: int
    indent: str


def find_regions(lines: list[str], filename: str, exercises: dict[str, Exercise]) -> list[Region]:
    """The solution regions in lines, validated: ids known, no nesting, each BEGIN closed by one END."""
    regions: list[Region] = []
    open_at: tuple[int, str, str] | None = None  # (line, id, indent)
    for number, line in enumerate(lines, start=1):
        begin, end = BEGIN.match(line), END.match(line)
        if begin:
            ex_id = begin["rest"].strip()
            if open_at is not None:
                raise MarkerError(f"{filename}:{number}: BEGIN SOLUTION {ex_id} inside the region of "
                                  f"exercise {open_at[1]} opened at line {open_at[0]} (regions cannot nest)")
            if not begin["rest"][:1].isspace() or not ex_id or " " in ex_id:
                raise MarkerError(f"{filename}:{number}: expected '### BEGIN SOLUTION <id>', got {line.strip()!r}")
            if ex_id not in exercises:
                raise MarkerError(f"{filename}:{number}: unknown exercise id {ex_id!r} "
                                  f"(known: {', '.join(exercises)})")
            open_at = (number, ex_id, begin["indent"])
        elif end:
            if end["rest"].strip():
                raise MarkerError(f"{filename}:{number}: expected '### END SOLUTION' alone, got {line.strip()!r}")
            if open_at is None:
                raise MarkerError(f"{filename}:{number}: END SOLUTION without a BEGIN SOLUTION")
            if end["indent"] != open_at[2]:
                raise MarkerError(f"{filename}:{number}: END SOLUTION indented differently from its "
                                  f"BEGIN SOLUTION {open_at[1]} at line {open_at[0]}")
            regions.append(Region(open_at[1], open_at[0], number, open_at[2]))
            open_at = None
    if open_at is not None:
        raise MarkerError(f"{filename}:{open_at[0]}: BEGIN SOLUTION {open_at[1]} is never closed "
                          "by an END SOLUTION")
    return regions


def placeholder(exercise: Exercise) -> str:
    """The statement a region becomes in the student copy."""
    message = f"Exercise {exercise.id}: {exercise.title} — see chapters/{exercise.chapter}"
    return f"raise NotImplementedError({message!r})"


def strip_solutions(text: str, filename: str, exercises: dict[str, Exercise]) -> tuple[str, list[Region]]:
    """(student text, regions): each region replaced by placeholder(); checked to parse, raise inside a def."""
    lines = text.splitlines(keepends=True)
    regions = find_regions(lines, filename, exercises)
    if not regions:
        return text, regions
    out: list[str] = []
    raise_lines: list[tuple[int, Region]] = []
    cursor = 0
    for region in regions:
        out.extend(lines[cursor:region.begin - 1])
        newline = "\r\n" if lines[region.begin - 1].endswith("\r\n") else "\n"
        out.append(region.indent + placeholder(exercises[region.exercise_id]) + newline)
        raise_lines.append((len(out), region))
        cursor = region.end
    out.extend(lines[cursor:])
    student = "".join(out)
    try:
        tree = ast.parse(student, filename=filename)
    except SyntaxError as error:
        raise MarkerError(f"{filename}:{error.lineno}: the student copy does not parse ({error.msg}); a region "
                          "must enclose whole statements at the markers' indentation") from None
    function_spans = [(node.lineno, node.end_lineno) for node in ast.walk(tree)
                      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    for line_number, region in raise_lines:
        if not any(start < line_number <= stop for start, stop in function_spans):
            raise MarkerError(f"{filename}:{region.begin}: the region of exercise {region.exercise_id} is not "
                              "inside a function body (the student copy would raise on import)")
    return student, regions


def strip_notebook(text: str, filename: str, exercises: dict[str, Exercise]) -> tuple[str, list[Region]]:
    """(notebook JSON, regions): outputs and execution counts cleared, regions in code cells replaced."""
    notebook = json.loads(text)
    regions: list[Region] = []
    for index, cell in enumerate(notebook.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        cell["outputs"] = []
        cell["execution_count"] = None
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        lines = source.splitlines(keepends=True)
        cell_regions = find_regions(lines, f"{filename}[cell {index}]", exercises)
        if cell_regions:
            out, cursor = [], 0
            for region in cell_regions:
                out.extend(lines[cursor:region.begin - 1])
                out.append(region.indent + placeholder(exercises[region.exercise_id]) + "\n")
                cursor = region.end
            out.extend(lines[cursor:])
            cell["source"] = "".join(out)
            regions.extend(cell_regions)
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", regions


def _skipped(relative: Path) -> bool:
    if any(part in SKIP_NAMES or part.endswith(SKIP_SUFFIXES) for part in relative.parts):
        return True
    if len(relative.parts) == 1 and relative.suffix == ".json":      # reports such as grade-report.json
        return True
    return any(relative == skip or skip in relative.parents for skip in SKIP_RELATIVE)


def files_to_copy(src: Path) -> list[Path]:
    """Relative paths of the files a student copy holds: git's tracked files in a git checkout (minus
    deleted ones), else every file but caches, environments, build output, runs/ and top-level reports."""
    if (src / ".git").exists() and shutil.which("git"):
        listed = subprocess.run(["git", "-C", str(src), "ls-files", "-z", "--cached"], capture_output=True, check=False)
        if listed.returncode == 0:
            names = [n for n in listed.stdout.decode("utf-8", "surrogateescape").split("\0") if n]
            return sorted(Path(n) for n in names if (src / n).is_file() and not (src / n).is_symlink())
    return sorted(path.relative_to(src) for path in src.rglob("*")
                  if path.is_file() and not path.is_symlink() and not _skipped(path.relative_to(src)))


def make_student_copy(src_repo, out_dir, exercises_file=None) -> dict[str, int]:
    """Write the student copy of src_repo to out_dir; returns {exercise id: number of regions removed}."""
    src = Path(src_repo).resolve()
    out = Path(out_dir).resolve()
    if not (src / "tinyq").is_dir():
        raise ValueError(f"{src} does not look like a tinyq repository (no tinyq/ folder)")
    if out == src or src in out.parents:
        raise ValueError(f"the student copy {out} must be outside the source repository {src}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} exists and is not empty; choose a new folder for the student copy")
    exercises = load_exercises(exercises_file if exercises_file is not None
                               else src / "tinyq" / "grading" / "exercises.toml")
    plan = [(src / relative, relative) for relative in files_to_copy(src)]   # validate everything first
    outputs: dict[Path, str | None] = {}
    counts = {ex_id: 0 for ex_id in exercises}
    for path, relative in plan:
        verbatim = relative.parts[0] in VERBATIM_TOP
        if path.suffix == ".py" and not verbatim:
            text, regions = strip_solutions(path.read_text(encoding="utf-8"), str(relative), exercises)
        elif path.suffix == ".ipynb" and not verbatim:
            text, regions = strip_notebook(path.read_text(encoding="utf-8"), str(relative), exercises)
        else:
            text, regions = None, []
        outputs[relative] = text
        for region in regions:
            counts[region.exercise_id] += 1
    out.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        for path, relative in plan:
            target = building / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if outputs[relative] is None:
                shutil.copy2(path, target)
            else:
                with open(target, "w", encoding="utf-8", newline="") as handle:
                    handle.write(outputs[relative])
                shutil.copymode(path, target)
        os.chmod(building, 0o755)
        if out.exists():
            out.rmdir()                     # empty (checked above); rename needs it gone
        os.rename(building, out)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return counts


__all__ = ["EXERCISES_FILE", "MarkerError", "Region", "files_to_copy", "find_regions", "make_student_copy", "placeholder",
           "strip_notebook", "strip_solutions"]
