"""An analysis's outputs: each figure as a PNG and as the CSV of exactly what it plots, the table of every
row (CSV and JSON), and a Markdown report linking them."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Figure:
    """``rows`` plotted as ``kind``: ``bar`` (one bar per ``series`` value at each ``x``), ``line`` (one line
    per series over a numeric ``x``) or ``barline`` (bars, plus the gain of the last series over the first
    as a line on a second axis). One panel per ``y`` column."""

    name: str
    title: str
    kind: str
    x: str
    y: tuple[str, ...]
    series: str
    rows: tuple[dict[str, Any], ...]


def _columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(k for r in rows for k in r))


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=_columns(rows))
        w.writeheader()
        w.writerows(rows)


def gain(base: float, new: float) -> float:
    """Relative improvement of ``new`` over ``base`` in percent (0 when the base is 0)."""
    return 100.0 * (new - base) / base if base else 0.0


def draw(fig: Figure, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    xs = list(dict.fromkeys(r[fig.x] for r in fig.rows))
    series = list(dict.fromkeys(r[fig.series] for r in fig.rows))
    value = {(r[fig.x], r[fig.series]): r for r in fig.rows}
    figure, axes = plt.subplots(1, len(fig.y), figsize=(5.5 * len(fig.y), 3.8), squeeze=False)
    width = 0.8 / max(1, len(series))
    for ax, y in zip(axes[0], fig.y):
        for j, s in enumerate(series):
            if fig.kind == "line":  # each series over its own x values
                own = sorted(x for x in xs if (x, s) in value)
                ax.plot(own, [value[(x, s)][y] for x in own], marker="o", label=str(s))
            else:
                ys = [value[(x, s)][y] if (x, s) in value else np.nan for x in xs]
                ax.bar(np.arange(len(xs)) + j * width, ys, width, label=str(s))
        if fig.kind != "line":
            ax.set_xticks(np.arange(len(xs)) + width * (len(series) - 1) / 2, [str(x) for x in xs], rotation=20)
        if fig.kind == "barline" and len(series) > 1:
            base, new = series[0], series[-1]
            gains = [gain(value[(x, base)][y], value[(x, new)][y]) if (x, base) in value and (x, new) in value
                     else np.nan for x in xs]
            twin = ax.twinx()
            twin.plot(np.arange(len(xs)) + width * (len(series) - 1) / 2, gains, color="black", marker="o",
                      label=f"gain of {new} (%)")
            twin.set_ylabel("gain (%)")
            twin.legend(loc="upper right", fontsize=7)
        ax.set_xlabel(fig.x)
        ax.set_ylabel(y)
        ax.legend(loc="upper left", fontsize=7)
        ax.grid(alpha=0.3)
    figure.suptitle(fig.title)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    columns = list(columns or [c for c in _columns(rows) if c != "dump"])
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_outputs(output: Path, name: str, title: str, about: str, rows: Sequence[dict[str, Any]],
                  figures: Sequence[Figure], options: dict[str, Any]) -> dict[str, Any]:
    """Every file of an analysis's folder; returns the record ``result.json`` holds."""
    output.mkdir(parents=True, exist_ok=True)
    write_csv(rows, output / f"{name}.csv")
    lines = [f"# {title}", "", about, "", f"Options: `{json.dumps(options, sort_keys=True)}`", "",
             markdown_table(rows), ""]
    for fig in figures:
        write_csv(fig.rows, output / f"{fig.name}.csv")
        draw(fig, output / f"{fig.name}.png")
        lines += [f"## {fig.title}", "", f"![{fig.title}]({fig.name}.png)", "", f"Data: [{fig.name}.csv]({fig.name}.csv)", ""]
    record = {"name": name, "title": title, "options": options, "rows": list(rows),
              "figures": [{"name": f.name, "title": f.title, "rows": list(f.rows)} for f in figures]}
    (output / "result.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (output / "report.md").write_text("\n".join(lines), encoding="utf-8")
    return record


def read_result(folder: Path) -> dict[str, Any]:
    """The record ``write_outputs`` left in an analysis's folder."""
    path = Path(folder) / "result.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing; is {folder} the output of 'raserec analyze'?")
    return json.loads(path.read_text(encoding="utf-8"))
