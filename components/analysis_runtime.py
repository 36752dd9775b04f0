"""What the analysis pipeline's tasks run (pipelines/analysis.py): one task per setting, then one for the
report. The six stages' runtime is ``components.runtime``; these two share its log format and its config
(``components.config``)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from components.config import pipeline_config
from components.runtime import LOG_FORMAT


def analysis_point(name: str, setting_json: str, options_json: str, inputs_json: str, output: str, cache: str,
                   config_yaml: str) -> str:
    """One setting of analysis ``name``: its rows as JSON text (the models it needs made in ``cache``)."""
    from raserec_core.analysis.run import run_point
    from raserec_core.analysis.workspace import Inputs, Workspace
    from raserec_core.device import resolve_device

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, force=os.environ.get("_KFP_RUNTIME") == "true")
    cfg = pipeline_config(config_yaml)
    inputs = Inputs(**{k: Path(v) for k, v in json.loads(inputs_json).items()})
    ws = Workspace(inputs, cfg, Path(cache), Path(output), resolve_device(cfg.device))
    return json.dumps(run_point(name, ws, json.loads(setting_json), json.loads(options_json)))


def analysis_report(name: str, rows_json: list[str], options_json: str, output: str, tracking_uri: str,
                    experiment: str) -> str:
    """The report of analysis ``name`` from every setting's rows; logged to MLflow when a URI is given
    (``MLFLOW_TRACKING_URI`` otherwise). Returns the output folder's ``result.json`` path."""
    from raserec_core.analysis.run import finish

    rows = [row for text in rows_json for row in json.loads(text)]
    tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    finish(name, Path(output), rows, json.loads(options_json), tracking_uri, experiment)
    return str(Path(output) / "result.json")
