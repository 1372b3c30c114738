"""The project's plots. Each function takes records (list of dicts) and returns a matplotlib Figure;
saving is the caller's choice (`save_figure` writes atomically)."""
from __future__ import annotations

import os

import matplotlib

if not os.environ.get("DISPLAY") and "MPLBACKEND" not in os.environ:
    matplotlib.use("Agg")  # headless machines and CI: never try to open a window
from matplotlib.figure import Figure  # noqa: E402

from tinyq.atomic import atomic_path  # noqa: E402

_MARKERS = "osD^v<>ph*"


def line_plot(records: list, x: str, y: str, group: str | None = None, title: str = "", xlabel: str | None = None,
              ylabel: str | None = None, reference: dict | None = None, logx: bool = False,
              invert_x: bool = False) -> Figure:
    """One line per distinct value of `group` (or a single line), y against x.

    reference: {"label": value} horizontal lines, e.g. {"fp32": 0.97}.
    """
    fig = Figure(figsize=(6.4, 4.2), constrained_layout=True)
    ax = fig.add_subplot()
    groups = {}
    for r in records:
        groups.setdefault(r.get(group) if group else y, []).append(r)
    for i, (name, rows) in enumerate(groups.items()):
        rows = sorted(rows, key=lambda r: r[x])
        ax.plot([r[x] for r in rows], [r[y] for r in rows], marker=_MARKERS[i % len(_MARKERS)], label=str(name))
    for j, (label, value) in enumerate((reference or {}).items()):
        ax.axhline(value, color="black", linestyle="--" if j == 0 else ":", linewidth=1, label=label)
    if logx:
        ax.set_xscale("log", base=2)
    if invert_x:
        ax.invert_xaxis()
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or y)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if len(groups) > 1 or reference:
        ax.legend(fontsize="small")
    return fig


def bar_plot(records: list, x: str, y: str, title: str = "", xlabel: str | None = None,
             ylabel: str | None = None) -> Figure:
    """One bar per record: height y, labelled by x."""
    fig = Figure(figsize=(6.4, 4.2), constrained_layout=True)
    ax = fig.add_subplot()
    labels = [str(r[x]) for r in records]
    ax.bar(range(len(records)), [r[y] for r in records], color="tab:blue")
    ax.set_xticks(range(len(records)), labels, rotation=30, ha="right")
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or y)
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    return fig


def save_figure(fig: Figure, path, dpi: int = 120, format: str | None = None) -> None:
    """Write the figure to `path` (format from the suffix unless given) via a temporary file and a rename."""
    fmt = format or os.path.splitext(os.fspath(path))[1].lstrip(".") or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=fmt)
