"""``raserec report``: the analyses' folders gathered into one Markdown report, each beside what the paper
publishes for it (``published.py``): its numbers where it gives any, else its claim."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .figures import markdown_table, read_result
from .published import PUBLISHED


def gather(folders: list[Path], output: Path) -> dict[str, Any]:
    """Reads each folder's ``result.json``; writes ``output`` (Markdown, images linked relative to it)."""
    output = Path(output)
    lines = ["# RaSeRec analyses", ""]
    names = []
    for folder in folders:
        record = read_result(folder)
        name = record["name"]
        names.append(name)
        paper = PUBLISHED.get(name, {})
        lines += [f"## {record['title']}", "", f"Paper: {paper.get('claim', 'nothing published.')}", ""]
        if paper.get("rows"):
            lines += ["Published:", "", markdown_table(paper["rows"]), ""]
        lines += ["Ours:", "", markdown_table(record["rows"]), ""]
        for fig in record["figures"]:
            rel = os.path.relpath(Path(folder) / f"{fig['name']}.png", output.parent)
            lines += [f"![{fig['title']}]({rel})", ""]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(lines), encoding="utf-8")
    return {"report": str(output), "analyses": names}
