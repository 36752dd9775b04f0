"""A pipeline run in a few lines of Markdown for the Kubeflow UI, with the link to its MLflow run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def mlflow_run_link(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """The MLflow UI's page of a run where the tracking URI is a server, else ``<uri> run <id>``."""
    from .secrets import scrub

    uri = scrub(tracking_uri).rstrip("/")
    if uri.startswith(("http://", "https://")):
        return f"{uri}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"{uri} run {run_id}"


def summary_markdown(tracking_uri: str, experiment_id: str, parent_id: str, pipeline_run_id: str,
                     metrics: Mapping[str, Any], registration: Mapping[str, Any]) -> str:
    """The pipeline run in a few lines for the Kubeflow UI: test metrics, the version, the MLflow run."""
    link = mlflow_run_link(tracking_uri, experiment_id, parent_id)
    lines = [f"# RaSeRec pipeline run `{pipeline_run_id}`", ""]
    if metrics:
        lines += ["| test metric | value |", "|---|---|"]
        lines += [f"| {k.removeprefix('test_').replace('_at_', '@')} | {float(v):.4f} |" for k, v in sorted(metrics.items())]
        lines.append("")
    if registration:
        lines.append(f"Registered **{registration.get('name', '')}** version **{registration.get('version', '')}** "
                     f"as `@{registration.get('alias', '')}` ({registration.get('reason', '')}).")
        lines.append("")
    target = f"[{link}]({link})" if link.startswith("http") else f"`{link}`"
    lines.append(f"MLflow: {target}")
    return "\n".join(lines) + "\n"
