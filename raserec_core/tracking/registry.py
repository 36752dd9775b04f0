"""Model registry: log the recommender as a pyfunc model, register a version, champion/challenger gate.

Aliases, not stages (deprecated): a new version takes the alias ``champion`` only when its validation
NDCG@10 is strictly higher than the current champion's *on the same dataset* (fingerprint), both read
from model version tags; otherwise it takes ``challenger``. A champion trained on another dataset is
not comparable, so it is kept (promote by hand with ``set_registered_model_alias``). The first version
of a model is its champion.

The gate reads, compares and sets the alias under the store's lock (``store.store_lock``), so concurrent
registrations always leave the best-scoring version as champion. For a SQLite store the lock is a file
beside the database; for a remote tracking server it orders the registrations of one machine only:
registrations from several machines at the same moment can still race (MLflow has no compare-and-set
for aliases).

A version is tagged with the sha256 of what it packs (``TAG_MODEL_SHA``: the model folder without its
training leftovers, and the memory bank): registering the same model again, as a cached pipeline re-run
does, returns the existing version (``reused``) instead of adding a duplicate.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger("raserec.registry")

CHAMPION = "champion"
CHALLENGER = "challenger"
TAG_SCORE = "raserec.valid_ndcg_at_10"
TAG_FINGERPRINT = "raserec.dataset_fingerprint"
TAG_DECISION = "raserec.decision"
TAG_MODEL_SHA = "raserec.model_sha256"


def current_champion(mlflow_client, name: str):
    """The version holding ``@champion``, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return mlflow_client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def gate(mlflow_client, name: str, version: str, score: float, fingerprint: str) -> dict[str, Any]:
    """Give ``version`` the alias ``champion`` or ``challenger`` (under the store's lock); returns the
    decision and why."""
    from .store import store_lock

    with store_lock(mlflow_client.tracking_uri):
        return _gate(mlflow_client, name, version, score, fingerprint)


def _gate(mlflow_client, name: str, version: str, score: float, fingerprint: str) -> dict[str, Any]:
    champ = current_champion(mlflow_client, name)
    if champ is None:
        alias, reason = CHAMPION, "first version with a score"
    elif champ.tags.get(TAG_FINGERPRINT) != fingerprint:
        alias, reason = CHALLENGER, f"champion v{champ.version} was trained on another dataset"
    else:
        best = float(champ.tags.get(TAG_SCORE, "-inf"))
        if score > best:
            alias, reason = CHAMPION, f"valid NDCG@10 {score:.6f} > champion v{champ.version}'s {best:.6f}"
        else:
            alias, reason = CHALLENGER, f"valid NDCG@10 {score:.6f} <= champion v{champ.version}'s {best:.6f}"
    mlflow_client.set_registered_model_alias(name, alias, version)
    mlflow_client.set_model_version_tag(name, version, TAG_DECISION, f"{alias}: {reason}")
    log.info("%s v%s -> @%s (%s)", name, version, alias, reason)
    return {
        "alias": alias,
        "reason": reason,
        "previous_champion": str(champ.version) if champ is not None else "",
    }


def content_sha256(*paths: str | Path | None, skip: tuple[str, ...] = ()) -> str:
    """One sha256 over the files under ``paths`` (relative names and bytes, in sorted order); files
    whose name matches a pattern of ``skip`` (fnmatch) are left out."""
    from fnmatch import fnmatch

    h = hashlib.sha256()
    for root in (Path(p) for p in paths if p is not None):
        files = [root] if root.is_file() else sorted(
            p for p in root.rglob("*") if p.is_file() and not any(fnmatch(p.name, pat) for pat in skip))
        h.update(b"\x01")  # separates the roots
        for path in files:
            h.update(path.relative_to(root).as_posix().encode() + b"\x00" if path != root else b"\x00")
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            h.update(b"\x00")
    return h.hexdigest()


def find_version(mlflow_client, name: str, model_sha: str):
    """The oldest version of ``name`` tagged with ``model_sha``, or None."""
    from mlflow.exceptions import MlflowException

    try:
        found = mlflow_client.search_model_versions(f"name = '{name}' AND tags.`{TAG_MODEL_SHA}` = '{model_sha}'")
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
            return None
        raise
    return min(found, key=lambda mv: int(mv.version)) if found else None


def reused_version(mlflow_client, mv) -> dict[str, Any]:
    aliases = sorted(mlflow_client.get_model_version(mv.name, mv.version).aliases)
    champ = current_champion(mlflow_client, mv.name)
    reason = f"the same model (sha256 {mv.tags.get(TAG_MODEL_SHA, '')[:12]}) is version {mv.version} already"
    log.info("%s v%s reused: %s", mv.name, mv.version, reason)
    return {
        "name": mv.name, "version": str(mv.version), "model_uri": f"models:/{mv.name}/{mv.version}",
        "alias": ",".join(aliases), "reason": reason, "reused": True,
        "previous_champion": str(champ.version) if champ is not None else "",
    }


def register_version(
    tracking_uri: str, model_uri: str, name: str, score: float, fingerprint: str, tags: dict[str, str] | None = None
) -> dict[str, Any]:
    """Register ``model_uri`` as a new version of ``name`` (tagged with its score and dataset), then gate it.

    With a ``TAG_MODEL_SHA`` tag that a version of ``name`` already has, that version is returned
    (``reused``) and nothing is registered. Lookup, registration and gate happen under the store's lock.
    """
    import math

    import mlflow

    from .store import client, store_lock

    if not math.isfinite(score):
        raise ValueError(f"validation NDCG@10 must be a finite number, got {score!r}")
    c = client(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    version_tags = {TAG_SCORE: repr(float(score)), TAG_FINGERPRINT: fingerprint, **(tags or {})}
    with store_lock(tracking_uri):
        same = find_version(c, name, version_tags[TAG_MODEL_SHA]) if version_tags.get(TAG_MODEL_SHA) else None
        if same is not None:
            return reused_version(c, same)
        mv = mlflow.register_model(model_uri, name, tags=version_tags)
        decision = _gate(c, name, mv.version, float(score), fingerprint)
    return {"name": name, "version": str(mv.version), "model_uri": f"models:/{name}/{mv.version}", "reused": False,
            **decision}


def register_model(
    data: str | Path, model: str | Path, *, valid_ndcg_at_10: float, tracking_uri: str, run_id: str, device,
    model_name: str = "raserec", memory: str | Path | None = None,
) -> dict[str, Any]:
    """Pack ``model`` (with ``memory`` for a fine-tuned model) as a recommender folder, log it as a pyfunc
    model in run ``run_id``, register a version of ``model_name`` and gate it.

    Returns the registration facts (name, version, alias, reason, model URI, the logged model's URI).
    """
    import mlflow

    from . import model_folder
    from .runs import TAG_RUN
    from .store import client, store_lock

    c = client(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    pipeline_run_id = c.get_run(run_id).data.tags.get(TAG_RUN, "")
    model_sha = content_sha256(model, memory, skip=model_folder.NOT_PACKED)
    with store_lock(tracking_uri):  # a version being registered right now is seen with its alias
        same = find_version(c, model_name, model_sha)
        reused = reused_version(c, same) if same is not None else None
    if reused is not None:  # a cached re-run: its model is registered already, nothing to log
        kind = json.loads((Path(model) / "model.json").read_text()).get("kind", "encoder")
        return {**reused, "logged_model_uri": same.source, "kind": kind}
    with tempfile.TemporaryDirectory(prefix="raserec-register-") as tmp:
        folder = Path(tmp) / "recommender"
        spec = model_folder.pack(model, data, folder, memory, device)
        info = log_folder(folder, run_id, example_history(data), device)
    result = register_version(
        tracking_uri, info.model_uri, model_name, valid_ndcg_at_10, spec["dataset_fingerprint"],
        tags={"raserec.pipeline_run_id": pipeline_run_id, "raserec.kind": spec["kind"], "raserec.mlflow_run_id": run_id,
              TAG_MODEL_SHA: model_sha},
    )
    return {**result, "logged_model_uri": info.model_uri, "kind": spec["kind"]}


def log_folder(folder: Path, run_id: str, example: list[str], device):
    """Log the recommender folder as a pyfunc model in run ``run_id``; returns MLflow's ModelInfo. Fails
    here, not at serving time, if the folder cannot recommend for ``example`` (MLflow would only warn)."""
    import mlflow

    from . import model_folder
    from .pyfunc import log_recommender

    items, _ = model_folder.load(folder, device).recommend([example], None, 1)
    if len(items) != 1 or len(items[0]) != 1:
        raise ValueError(f"{folder}: the packed recommender returned {items!r} for {example!r}")
    with mlflow.start_run(run_id=run_id):
        return log_recommender(folder, example_history=example)


def example_history(data: str | Path, n: int = 3) -> list[str]:
    """A few raw item ids from the dataset, for the model's input example."""
    from ..data.artifact import read_ids

    ids = read_ids(Path(data) / "items.parquet")
    return [str(x) for x in ids[1 : 1 + n]]


def describe(mlflow_client, name: str) -> dict[str, Any]:
    """Champion and challenger versions of ``name`` with their tags (for CLIs and tests)."""
    from mlflow.exceptions import MlflowException

    out = {}
    for alias in (CHAMPION, CHALLENGER):
        try:
            mv = mlflow_client.get_model_version_by_alias(name, alias)
        except MlflowException:
            continue
        out[alias] = {"version": str(mv.version), "tags": dict(mv.tags)}
    return out
