"""The exercise list: tinyq/grading/exercises.toml read into Exercise records, validated."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

EXERCISES_FILE = Path(__file__).resolve().parent / "exercises.toml"


@dataclass(frozen=True)
class Exercise:
    """One graded exercise: a solution region in the code plus the tests marked with its id."""

    id: str
    title: str
    chapter: str
    points: int
    prerequisites: tuple[str, ...] = ()


def load_exercises(path=None) -> dict[str, Exercise]:
    """{id: Exercise} in file order, from exercises.toml (default: the one next to this module)."""
    path = Path(path) if path is not None else EXERCISES_FILE
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ValueError(f"{path}: cannot read the exercise list ({error})") from None
    exercises: dict[str, Exercise] = {}
    for number, entry in enumerate(table.get("exercise", []), start=1):
        missing = {"id", "title", "chapter", "points"} - set(entry)
        if missing:
            raise ValueError(f"{path}: exercise #{number} lacks {sorted(missing)}")
        ex_id = str(entry["id"])
        if ex_id in exercises:
            raise ValueError(f"{path}: exercise id {ex_id!r} appears twice")
        if not isinstance(entry["points"], int) or entry["points"] < 0:
            raise ValueError(f"{path}: exercise {ex_id} points must be a non-negative int, got {entry['points']!r}")
        exercises[ex_id] = Exercise(ex_id, str(entry["title"]), str(entry["chapter"]), entry["points"],
                                    tuple(str(p) for p in entry.get("prerequisites", [])))
    for exercise in exercises.values():
        unknown = [p for p in exercise.prerequisites if p not in exercises]
        if unknown:
            raise ValueError(f"{path}: exercise {exercise.id} has unknown prerequisites {unknown}")
    for ex_id in exercises:  # prerequisites must form a DAG
        all_prerequisites(exercises, ex_id)
    return exercises


def all_prerequisites(exercises: dict[str, Exercise], ex_id: str) -> list[str]:
    """The transitive prerequisites of ex_id (ValueError on a cycle)."""
    seen: list[str] = []

    def visit(current: str, path: tuple[str, ...]) -> None:
        for prerequisite in exercises[current].prerequisites:
            if prerequisite in path:
                raise ValueError(f"exercise prerequisites form a cycle: {' -> '.join(path + (prerequisite,))}")
            if prerequisite not in seen:
                seen.append(prerequisite)
            visit(prerequisite, path + (prerequisite,))

    visit(ex_id, (ex_id,))
    return seen
