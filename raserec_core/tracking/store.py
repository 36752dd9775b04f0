"""The MLflow store: its client, its lock, and experiments found or created by name.

Concurrency: a fresh SQLite store is created and migrated by the first ``client`` of a process under
``store_lock`` (a ``flock`` on ``<db>.lock`` beside the database), so pipeline runs started at once on a
fresh root do not migrate it twice. Other stores lock a file in the temp folder named by the URI's hash:
that orders processes of one machine only.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

_READY: set[str] = set()  # tracking URIs whose stores this process has opened (MLflow caches them per URI)


def store_lock_path(tracking_uri: str) -> Path:
    """``<db>.lock`` beside a SQLite store; for any other store a file in the temp folder named by the
    URI's hash (one machine's processes only)."""
    if tracking_uri.startswith("sqlite:///"):
        db = tracking_uri[len("sqlite:///"):].split("?")[0]
        if db and db != ":memory:":
            return Path(db).with_name(Path(db).name + ".lock")
    digest = hashlib.sha256(tracking_uri.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "raserec-locks" / f"mlflow-{digest}.lock"


@contextlib.contextmanager
def store_lock(tracking_uri: str) -> Iterator[None]:
    """An exclusive lock on the store at ``tracking_uri`` (see ``store_lock_path``); not re-entrant."""
    from ..storage.locks import file_lock

    with file_lock(store_lock_path(tracking_uri)):
        yield


def client(tracking_uri: str):
    """An ``MlflowClient``; the first one of a process opens (creates, migrates) the store under its lock."""
    from mlflow import MlflowClient

    from ..redact import install_log_filter

    install_log_filter()  # MLflow's logger has its own handler, made when mlflow is first imported
    if not tracking_uri.startswith("sqlite:") or tracking_uri in _READY:
        return MlflowClient(tracking_uri=tracking_uri)
    # MLflow creates and migrates a SQLite store when it first opens it (the client's constructor may
    # already), once for the tracking tables and once for the registry's: two processes doing that at
    # once break the migration.
    with store_lock(tracking_uri):
        c = MlflowClient(tracking_uri=tracking_uri)
        c.search_experiments(max_results=1)
        c.search_registered_models(max_results=1)
    _READY.add(tracking_uri)
    return c


def ensure_experiment(mlflow_client, name: str, artifact_location: str | None = None) -> str:
    """The experiment's id, created (with ``artifact_location`` if given) when missing."""
    exp = mlflow_client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    from mlflow.exceptions import MlflowException

    try:
        return mlflow_client.create_experiment(name, artifact_location=artifact_location)
    except MlflowException:  # created concurrently by another step
        return mlflow_client.get_experiment_by_name(name).experiment_id
