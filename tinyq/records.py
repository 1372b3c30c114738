"""Records are a list of dicts (one row each): print them as a table, save them as JSON or CSV atomically."""
from __future__ import annotations

import csv
import io
import math

from tinyq.atomic import write_json, write_text


def _cell(value) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def format_table(records: list, columns: list | None = None, title: str | None = None) -> str:
    """A plain-text table; columns default to the keys of the first record, in order."""
    if not records:
        return (title + "\n" if title else "") + "(no rows)"
    columns = columns or list(records[0])
    cells = [[_cell(r.get(c, "")) for c in columns] for r in records]
    widths = [max(len(str(c)), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    right = [all(isinstance(r.get(c), (int, float)) for r in records) for c in columns]

    def line(values):
        return "  ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)).rstrip()
    out = [title] if title else []
    out += [line([str(c) for c in columns]), line(["-" * w for w in widths])]
    out += [line(row) for row in cells]
    return "\n".join(out)


def pivot(records: list, row: str, column: str, value: str) -> list:
    """Records with one row per distinct `row` value and one column per distinct `column` value."""
    rows, columns = {}, []
    for r in records:
        key = r[row]
        if r[column] not in columns:
            columns.append(r[column])
        rows.setdefault(key, {row: key})[f"{column}={r[column]}" if not isinstance(r[column], str) else r[column]] \
            = r[value]
    return list(rows.values())


def save_json(records, path, metadata: dict | None = None) -> None:
    payload = {"records": records} if metadata is None else {"metadata": metadata, "records": records}
    write_json(path, payload, default=_json_default)


def save_csv(records: list, path) -> None:
    columns = []
    for r in records:
        columns += [k for k in r if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(records)
    write_text(path, buffer.getvalue())


def _json_default(value):
    import numpy as np
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in JSON")
