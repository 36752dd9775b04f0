"""Live memory for a registered model, the MLflow side: resolve ``models:/NAME@ALIAS`` (or ``/VERSION``),
download its recommender folder, and register the grown folder as a new version of the same model.

The adding itself is ``memory_steps.memory_add_registered``'s, through the code path of the folder form
(``memory.dynamic``): no retraining, the bank's trained index only receives the new vectors. A new
version goes through the registry's gate (``registry.register_version``) like any other, with its own
measured validation NDCG@10 (what ``memory_steps`` measures is said there), and carries its lineage:

- ``raserec.parent_version``: the version it was grown from;
- ``raserec.interactions_sha256``: ``memory.dynamic.interactions_sha256`` of the added rows;
- ``raserec.entries_added``, ``raserec.bank_entries``: memories added, and the bank's size after;
- ``raserec.score_source``: how its score was measured.

Adding the same interactions to the same version again finds the version made the first time
(``find_addition``) and registers nothing; ``registry.TAG_MODEL_SHA`` catches a concurrent twin.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import StepError

TAG_PARENT = "raserec.parent_version"
TAG_INTERACTIONS = "raserec.interactions_sha256"
TAG_ADDED = "raserec.entries_added"
TAG_BANK = "raserec.bank_entries"
TAG_SCORE_SOURCE = "raserec.score_source"
STEP = "memory-add"
_URI = re.compile(r"^models:/([^/@]+)(?:@([^/@]+)|/(\d+))$")


def is_registered(model: str | Path) -> bool:
    """Whether ``model`` names a registered model (``models:/...``) rather than a folder."""
    return str(model).startswith("models:/")


def resolve(tracking_uri: str, model_uri: str):
    """The ``ModelVersion`` that ``model_uri`` names; a one-line error naming it if there is none."""
    from mlflow.exceptions import MlflowException

    from .secrets import scrub
    from .store import client

    m = _URI.match(model_uri)
    if m is None:
        raise StepError(f"{model_uri}: not a registered model URI (expected models:/NAME@ALIAS or models:/NAME/VERSION)")
    name, alias, version = m.groups()
    c = client(tracking_uri)
    try:
        return c.get_model_version_by_alias(name, alias) if alias else c.get_model_version(name, version)
    except MlflowException as exc:
        raise StepError(f"{model_uri}: no such model version in the registry at {scrub(tracking_uri)} "
                        f"({exc.error_code})") from None


def find_addition(tracking_uri: str, mv, interactions_sha: str):
    """The version that is ``mv`` grown by the interactions ``interactions_sha`` (``mv`` itself when it was
    made so), or None."""
    from .store import client

    if mv.tags.get(TAG_INTERACTIONS) == interactions_sha:
        return mv
    found = client(tracking_uri).search_model_versions(
        f"name = '{mv.name}' AND tags.`{TAG_PARENT}` = '{mv.version}' AND tags.`{TAG_INTERACTIONS}` = '{interactions_sha}'")
    return min(found, key=lambda v: int(v.version)) if found else None


def reused(tracking_uri: str, mv) -> dict[str, Any]:
    """The registration facts of an existing version (``reused``: nothing was registered)."""
    from .registry import reused_version
    from .store import client

    return {**reused_version(client(tracking_uri), mv), "parent_version": mv.tags.get(TAG_PARENT, "")}


def download(tracking_uri: str, mv, dst: Path) -> Path:
    """The recommender folder of version ``mv``, downloaded under ``dst``."""
    import mlflow
    import yaml

    from .pyfunc import ARTIFACT

    mlflow.set_tracking_uri(tracking_uri)
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{mv.name}/{mv.version}", dst_path=str(dst)))
    flavor = yaml.safe_load((local / "MLmodel").read_text()).get("flavors", {}).get("python_function", {})
    folder = local / flavor.get("artifacts", {}).get(ARTIFACT, {}).get("path", f"artifacts/{ARTIFACT}")
    if not (folder / "recommender.json").is_file():
        raise StepError(f"models:/{mv.name}/{mv.version}: holds no recommender folder (not registered by raserec)")
    return folder


def register_grown(
    tracking_uri: str, parent, folder: Path, *, example: list[str], score: float, fingerprint: str,
    metrics: dict[str, Any], lineage: dict[str, str], device,
) -> dict[str, Any]:
    """Log the grown recommender ``folder`` in a ``memory-add`` run of the parent version's experiment,
    register it as a new version of the parent's model with ``lineage`` tags, and gate it."""
    from . import model_folder
    from .registry import TAG_MODEL_SHA, content_sha256, log_folder, register_version
    from .runs import end_pipeline, start_step
    from .store import client

    c = client(tracking_uri)
    if not parent.run_id:
        raise StepError(f"models:/{parent.name}/{parent.version}: has no MLflow run, so no experiment to log into")
    experiment = c.get_experiment(c.get_run(parent.run_id).info.experiment_id).name
    run_name = f"{STEP}-{parent.name}-v{parent.version}-{lineage[TAG_INTERACTIONS][:12]}"
    step = start_step(tracking_uri, experiment, run_name, STEP, params={"parent": f"{parent.name}/{parent.version}"},
                      tags=lineage)
    try:
        step.log_metrics(metrics)
        info = log_folder(folder, step.run_id, example, device)
        result = register_version(
            tracking_uri, info.model_uri, parent.name, score, fingerprint,
            tags={**lineage, "raserec.kind": "raserec", "raserec.mlflow_run_id": step.run_id,
                  TAG_MODEL_SHA: content_sha256(folder, skip=model_folder.NOT_PACKED)},
        )
    except BaseException:
        step.end("FAILED")
        end_pipeline(step, "FAILED")
        raise
    step.end()
    end_pipeline(step)
    return {**result, "logged_model_uri": info.model_uri, "parent_version": str(parent.version)}
