"""A logged recommender model on disk, and requests to it (the server: ``raserec_core.tracking.local_server``)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path


def logged_model(packed: Path, tracking_uri: str, artifact_root: Path, out: Path, example: list[str]) -> Path:
    """Log the packed recommender folder as the project logs it, then download it to ``out``."""
    import mlflow

    from raserec_core.tracking import runs
    from raserec_core.tracking.pyfunc import log_recommender

    mlflow.set_tracking_uri(tracking_uri)
    step = runs.start_step(tracking_uri, "serving", "pipe-serve", "register", params={},
                           artifact_location=(artifact_root / "serving").as_uri())
    with mlflow.start_run(run_id=step.run_id):
        info = log_recommender(packed, example_history=example)
    step.end()
    return Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(out)))


def post(url: str, body: dict, timeout: float = 60) -> tuple[int, dict]:
    """POST JSON to ``url``; (status, decoded body) for success and HTTP errors alike."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


