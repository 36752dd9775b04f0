"""Running an analysis: its settings one after the other (``run_analysis``), or one setting at a time and
the report from all rows (``run_point`` and ``finish``: what the pipeline variant's tasks call)."""

from __future__ import annotations

import importlib
import json
import logging
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from . import NAMES
from .figures import read_result, write_outputs
from .workspace import Workspace

log = logging.getLogger("raserec.analysis")


def module(name: str):
    if name not in NAMES:
        raise ConfigError(f"unknown analysis {name!r} (known: {', '.join(NAMES)})")
    return importlib.import_module(f"{__package__}.{name}")


def options_of(name: str, given: dict[str, Any] | None = None) -> dict[str, Any]:
    """The analysis's defaults with ``given`` (None values ignored) on top; an unknown option is an error."""
    defaults = module(name).DEFAULTS
    given = {k: v for k, v in (given or {}).items() if v is not None}
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ConfigError(f"analysis {name}: unknown option {unknown[0]!r} (known: {', '.join(defaults)})")
    return {**defaults, **given}


OWN = ("cache", "dumps", "pipeline", "result.json", "report.md", "*.csv", "*.png")  # what an analysis writes


def check_output(output: Path) -> None:
    """An analysis replaces its own files in ``output`` (a rerun, or one that was interrupted) and nothing else:
    a folder holding anything else is refused before any work."""
    from ..errors import StepError

    foreign = sorted(p.name for p in Path(output).iterdir() if not any(p.match(g) for g in OWN)) if Path(output).is_dir() else []
    if foreign:
        raise StepError(f"{output}: holds {foreign[0]!r}, which no analysis writes; use another --output")


def settings(name: str, options: dict[str, Any]) -> list[dict[str, Any]]:
    return module(name).settings(options)


def run_point(name: str, ws: Workspace, setting: dict[str, Any], options: dict[str, Any]) -> list[dict[str, Any]]:
    log.info("analysis %s: %s", name, setting)
    return module(name).point(ws, setting, options)


def finish(name: str, output: Path, rows: list[dict[str, Any]], options: dict[str, Any],
           tracking_uri: str = "", experiment: str = "raserec-analysis") -> dict[str, Any]:
    """Figures, CSVs and the report in ``output``; logged to MLflow when ``tracking_uri`` is given."""
    m = module(name)
    record = write_outputs(Path(output), name, m.TITLE, m.ABOUT, rows, m.figures(rows, options), options)
    if tracking_uri:
        from ..tracking.analysis import log_analysis

        record["mlflow_run_id"] = log_analysis(tracking_uri, experiment, name, Path(output), rows, options)
    return record


def run_analysis(name: str, ws: Workspace, options: dict[str, Any], tracking_uri: str = "",
                 experiment: str = "raserec-analysis") -> dict[str, Any]:
    rows = [row for s in settings(name, options) for row in run_point(name, ws, s, options)]
    record = finish(name, ws.output, rows, options, tracking_uri, experiment)
    return {"analysis": name, "output": str(ws.output), "rows": len(rows),
            **({"mlflow_run_id": record["mlflow_run_id"]} if "mlflow_run_id" in record else {})}


MEASURED = ("dump", "entries", "retrieval_s")  # a row's measurements besides its metrics (keys holding "@")


def setting_of(row: dict[str, Any]) -> str:
    """What a row was measured for (its settings, without its measurements), as a comparable key."""
    return json.dumps({k: v for k, v in row.items() if "@" not in k and k not in MEASURED}, sort_keys=True)


def _order(row: dict[str, Any]) -> tuple:
    return tuple((0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v))
                 for _, v in sorted((k, v) for k, v in row.items() if "@" not in k and k not in MEASURED))


def merge(folders: list[Path], output: Path) -> dict[str, Any]:
    """Outputs of one analysis over the same inputs, measured for different settings, united into
    ``output`` (figures, CSVs and report rewritten): an analysis extended without recomputing what was
    measured. A setting measured in several folders takes the last folder's rows; option lists are united."""
    records = [read_result(f) for f in folders]
    names = {r["name"] for r in records}
    if len(names) != 1:
        raise ConfigError(f"merge: the folders hold different analyses ({', '.join(sorted(names))})")
    name = names.pop()
    rows: dict[str, dict[str, Any]] = {}
    options: dict[str, Any] = {}
    for record in records:
        rows.update((setting_of(r), r) for r in record["rows"])
        for k, v in record["options"].items():
            options[k] = list(dict.fromkeys([*options.get(k, []), *v])) if isinstance(v, list) else v
    for k, v in options.items():
        if isinstance(v, list) and all(isinstance(x, (int, float)) for x in v):
            options[k] = sorted(v)
    return finish(name, Path(output), sorted(rows.values(), key=_order), options)
