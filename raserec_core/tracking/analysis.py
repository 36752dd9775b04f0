"""An analysis in MLflow: one run per analysis with its options, its rows' metrics and every file of its
output folder (report, plots, CSVs; the top-K dumps stay in the folder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

MEASURED = {"hr@10", "ndcg@10", "retrieval_s", "users", "entries", "dump"}


def log_analysis(tracking_uri: str, experiment: str, name: str, folder: Path, rows: list[dict[str, Any]],
                 options: dict[str, Any]) -> str:
    import json
    import re

    from ..evaluation.metrics import mlflow_key
    from .store import client, ensure_experiment

    c = client(tracking_uri)
    run = c.create_run(ensure_experiment(c, experiment), run_name=f"analysis-{name}", tags={"raserec.analysis": name})
    run_id = run.info.run_id
    c.log_param(run_id, "options", json.dumps(options, sort_keys=True)[:6000])
    for row in rows:  # a row is named by its settings (e.g. ``raserec_g1``); its measurements are metrics
        label = "_".join(str(v) for k, v in row.items() if k not in MEASURED)
        for key, value in row.items():
            if key in MEASURED and isinstance(value, (int, float)):
                c.log_metric(run_id, re.sub(r"[^\w.\-/]", "_", mlflow_key(f"{label}_{key}"))[:250], float(value))
    for path in sorted(Path(folder).iterdir()):
        if path.is_file():
            c.log_artifact(run_id, str(path))
    c.set_terminated(run_id, "FINISHED")
    return run_id
