"""Records (table, JSON, CSV) and plotting helpers."""
import csv
import json

import pytest

from tinyq import records
from tinyq.experiments import plotting

ROWS = [{"method": "ptq", "bits": 8, "accuracy": 0.97}, {"method": "ptq", "bits": 4, "accuracy": 0.8},
        {"method": "qat", "bits": 4, "accuracy": 0.95}]


def test_table_has_every_row_and_column():
    text = records.format_table(ROWS, title="demo")
    lines = text.splitlines()
    assert lines[0] == "demo" and lines[1].split() == ["method", "bits", "accuracy"]
    assert len(lines) == 2 + 1 + len(ROWS)
    assert "0.9500" in lines[-1]


def test_pivot_makes_one_row_per_key():
    table = records.pivot(ROWS, row="method", column="bits", value="accuracy")
    assert table == [{"method": "ptq", "bits=8": 0.97, "bits=4": 0.8}, {"method": "qat", "bits=4": 0.95}]


def test_json_and_csv_round_trip(tmp_path):
    records.save_json(ROWS, tmp_path / "r.json", metadata={"seed": 0})
    assert json.loads((tmp_path / "r.json").read_text()) == {"metadata": {"seed": 0}, "records": ROWS}
    records.save_csv(ROWS, tmp_path / "r.csv")
    with open(tmp_path / "r.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["method"], int(r["bits"]), float(r["accuracy"])) for r in rows] == \
        [(r["method"], r["bits"], r["accuracy"]) for r in ROWS]


def test_plots_return_figures_with_one_line_per_group(tmp_path):
    fig = plotting.line_plot(ROWS, x="bits", y="accuracy", group="method", reference={"fp32": 0.98})
    ax = fig.axes[0]
    assert len(ax.lines) == 3          # ptq, qat, the reference line
    plotting.save_figure(fig, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bars = plotting.bar_plot(ROWS, x="method", y="accuracy")
    assert len(bars.axes[0].patches) == 3


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "r.json"
    records.save_json(ROWS, path)
    with pytest.raises(TypeError):
        records.save_json([{"x": object()}], path)
    assert json.loads(path.read_text())["records"] == ROWS
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
