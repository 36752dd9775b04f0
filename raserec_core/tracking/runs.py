"""MLflow runs: one parent run per pipeline run, one nested run per step, found through tags.

Every run carries the tag ``raserec.pipeline_run_id``; the parent has ``raserec.role = pipeline``, a
step's run ``raserec.role = step`` and ``raserec.step = <name>`` plus MLflow's own
``mlflow.parentRunId``. A step never receives its parent's MLflow id: it looks the parent up by tag
(creating it if it is the first step to run), which is what lets independent pods of one Kubeflow run
share a parent. A step that Kubeflow served from its cache does not run at all; a later step that
receives its artifacts logs a run for it from their metadata (tagged ``raserec.cached = true``).

Parameters and tags pass through ``secrets.safe_params`` (nothing secret reaches MLflow); the store
and its lock are ``store``'s. Metric names use ``evaluation.metrics.mlflow_key`` (``valid/ndcg@10`` ->
``valid_ndcg_at_10``): MLflow rejects ``@``.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import flatten
from .secrets import is_sensitive, safe_params, scrub
from .store import client, ensure_experiment

log = logging.getLogger("raserec.tracking")

TAG_RUN = "raserec.pipeline_run_id"
TAG_ROLE = "raserec.role"
TAG_STEP = "raserec.step"
TAG_CACHED = "raserec.cached"
TAG_FINGERPRINT = "raserec.dataset_fingerprint"
TAG_ALLOCATOR = "raserec.allocator"  # the step process's malloc: "mimalloc" or "system"
TAG_WRITER = "raserec.writer"  # <pid>@<host> of the process running a step (storage.locks.writer_tag)
PARENT_TAG = "mlflow.parentRunId"
_RUN_ID_OK = re.compile(r"^[A-Za-z0-9._:-]{1,200}$")


# ----- metric names and pipeline run ids --------------------------------------------------------


def metric_values(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Finite numeric leaves of ``metrics`` under MLflow-safe names (bools and strings are skipped)."""
    from ..evaluation.metrics import mlflow_key

    out = {}
    for key, value in flatten(metrics, sep="_").items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        name = mlflow_key(f"{prefix}_{key}" if prefix else key)
        if not is_sensitive(name):
            out[name] = float(value)
    return out


def check_run_id(pipeline_run_id: str) -> str:
    if not _RUN_ID_OK.match(pipeline_run_id or ""):
        raise ValueError(f"pipeline run id {pipeline_run_id!r}: use 1-200 of A-Z a-z 0-9 . _ : -")
    return pipeline_run_id


# ----- experiments and runs ---------------------------------------------------------------------


def _search(mlflow_client, experiment_id: str, pipeline_run_id: str, role: str, step: str | None = None):
    flt = f"tags.`{TAG_RUN}` = '{check_run_id(pipeline_run_id)}' AND tags.`{TAG_ROLE}` = '{role}'"
    if step:
        flt += f" AND tags.`{TAG_STEP}` = '{step}'"
    return list(mlflow_client.search_runs([experiment_id], filter_string=flt, order_by=["attributes.start_time ASC"]))


def find_parent(mlflow_client, experiment_id: str, pipeline_run_id: str):
    runs = _search(mlflow_client, experiment_id, pipeline_run_id, "pipeline")
    return runs[0] if runs else None


def parent_run(
    mlflow_client, experiment_id: str, pipeline_run_id: str, params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
) -> str:
    """The parent run of ``pipeline_run_id``: found by tag, or created (with ``params``) if missing.

    If two steps create it at once, both converge on the older run and the younger one is deleted.
    """
    found = find_parent(mlflow_client, experiment_id, pipeline_run_id)
    if found is not None:
        if found.info.status != "RUNNING":
            mlflow_client.update_run(found.info.run_id, status="RUNNING")
        return found.info.run_id
    run = mlflow_client.create_run(
        experiment_id,
        run_name=pipeline_run_id,
        tags={TAG_RUN: pipeline_run_id, TAG_ROLE: "pipeline", **safe_params(tags or {})},
    )
    oldest = find_parent(mlflow_client, experiment_id, pipeline_run_id)
    if oldest.info.run_id != run.info.run_id:
        mlflow_client.delete_run(run.info.run_id)
        return oldest.info.run_id
    if params:
        _log_params(mlflow_client, run.info.run_id, params)
    log.info("MLflow parent run %s for pipeline run %s", run.info.run_id, pipeline_run_id)
    return run.info.run_id


def reap_dead_runs(mlflow_client, experiment_id: str) -> list[str]:
    """Mark KILLED every RUNNING step run of the experiment whose process (on this host) is gone, and its
    parent unless a live step still runs under it; returns the ids marked. Called when a step starts, so
    a SIGKILLed run is honest from the next start on."""
    from ..storage.locks import writer_is_dead

    running = mlflow_client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=5000)
    dead = [r for r in running if writer_is_dead(r.data.tags.get(TAG_WRITER, ""))]
    dead_ids = {r.info.run_id for r in dead}
    live_parents = {r.data.tags.get(PARENT_TAG) for r in running if r.info.run_id not in dead_ids}
    parents = {r.data.tags.get(PARENT_TAG) for r in dead} - live_parents - {None}
    running_ids = {r.info.run_id for r in running}
    marked = sorted(dead_ids) + sorted(p for p in parents if p in running_ids)
    for run_id in marked:
        mlflow_client.set_terminated(run_id, status="KILLED")
    if marked:
        log.warning("marked %d MLflow runs of dead processes KILLED: %s", len(marked), ", ".join(marked))
    return marked


class Terminated(BaseException):
    """SIGTERM arrived (a pod being deleted, a killed ``raserec run``): unwinds the step like Ctrl-C."""


def raise_on_sigterm() -> None:
    """Turn SIGTERM into ``Terminated`` in this process (main thread only), so a step marks its runs
    KILLED on the way out instead of leaving them RUNNING."""
    import signal
    import threading

    def _raise(signum, frame):
        raise Terminated(f"signal {signum}")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise)


def failure_status(exc: BaseException) -> str:
    """The MLflow status of a run that ended with ``exc``: KILLED for a signal or Ctrl-C, else FAILED."""
    return "KILLED" if isinstance(exc, (Terminated, KeyboardInterrupt)) else "FAILED"


def step_runs(mlflow_client, experiment_id: str, pipeline_run_id: str) -> dict[str, list]:
    """Every step run of a pipeline run, by step name (oldest first: retries add runs)."""
    out: dict[str, list] = {}
    for run in _search(mlflow_client, experiment_id, pipeline_run_id, "step"):
        out.setdefault(run.data.tags.get(TAG_STEP, "?"), []).append(run)
    return out


def _log_params(mlflow_client, run_id: str, params: Mapping[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(k, v) for k, v in sorted(safe_params(params).items())]
    for start in range(0, len(items), 100):
        mlflow_client.log_batch(run_id, params=items[start : start + 100])


def _log_metrics(mlflow_client, run_id: str, rows: Iterable[tuple[str, float, int]]) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [Metric(k, v, now, step) for k, v, step in rows]
    for start in range(0, len(items), 1000):
        mlflow_client.log_batch(run_id, metrics=items[start : start + 1000])


@dataclass
class StepRun:
    """The nested MLflow run of one step, logging through an explicit client (no global active run)."""

    client: Any
    run_id: str
    parent_id: str
    step: str
    tracking_uri: str

    def log_params(self, params: Mapping[str, Any]) -> None:
        _log_params(self.client, self.run_id, params)

    def log_metrics(self, metrics: Mapping[str, Any], prefix: str = "", step: int = 0, to_parent: bool = False) -> dict[str, float]:
        values = metric_values(metrics, prefix)
        for run_id in (self.run_id, self.parent_id) if to_parent else (self.run_id,):
            _log_metrics(self.client, run_id, ((k, v, step) for k, v in values.items()))
        return values

    def log_history(self, history: list[Mapping[str, Any]]) -> None:
        """Per-epoch records (``history.json`` of the training loop) as stepped metrics plus a plot."""
        rows = []
        for record in history:
            epoch = int(record.get("epoch", len(rows)))
            rows += [(k, v, epoch) for k, v in metric_values({k: v for k, v in record.items() if k != "epoch"}).items()]
        _log_metrics(self.client, self.run_id, rows)
        if history:
            from .plots import training_curves

            fig = training_curves(history, title=self.step)
            self.client.log_figure(self.run_id, fig, "plots/training_curves.png")
            import matplotlib.pyplot as plt

            plt.close(fig)

    def set_tags(self, tags: Mapping[str, Any], to_parent: bool = False) -> None:
        for run_id in (self.run_id, self.parent_id) if to_parent else (self.run_id,):
            for key, value in safe_params(tags).items():
                self.client.set_tag(run_id, key, value)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def end(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)


def process_allocator() -> str:
    """``mimalloc`` when this process has it mapped (``raserec run`` preloads it into its steps), else
    ``system``: a long CPU step's epochs take ≈ 36% longer under glibc's, so a slow run's tags say why."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:  # not Linux
        return "system"
    return "mimalloc" if "libmimalloc" in maps else "system"


def start_step(
    tracking_uri: str, experiment: str, pipeline_run_id: str, step: str, params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None, artifact_location: str | None = None,
) -> StepRun:
    """Create the nested run of ``step`` under the pipeline run's parent (found or created by tag)."""
    from ..storage.locks import writer_tag

    c = client(tracking_uri)
    exp_id = ensure_experiment(c, experiment, artifact_location)
    reap_dead_runs(c, exp_id)
    parent = parent_run(c, exp_id, pipeline_run_id, tags=tags)
    run = c.create_run(
        exp_id,
        run_name=step,
        tags={PARENT_TAG: parent, TAG_RUN: pipeline_run_id, TAG_ROLE: "step", TAG_STEP: step,
              TAG_ALLOCATOR: process_allocator(), TAG_WRITER: writer_tag(), **safe_params(tags or {})},
    )
    sr = StepRun(c, run.info.run_id, parent, step, tracking_uri)
    if params:
        sr.log_params(params)
    return sr


def log_cached_step(run: StepRun, step: str, metadata: Mapping[str, Any]) -> str | None:
    """Log a finished run for ``step`` from its artifact's metadata if the pipeline run has none yet.

    Called by the steps downstream of ``step``: a cached step does not run, so its own run is missing
    from this pipeline run. Returns the new run's id, or None if ``step`` already has a run.
    """
    exp_id = run.client.get_run(run.run_id).info.experiment_id
    pipeline_run_id = run.client.get_run(run.run_id).data.tags[TAG_RUN]
    if step in step_runs(run.client, exp_id, pipeline_run_id):
        return None
    new = run.client.create_run(
        exp_id,
        run_name=step,
        tags={
            PARENT_TAG: run.parent_id, TAG_RUN: pipeline_run_id, TAG_ROLE: "step", TAG_STEP: step, TAG_CACHED: "true",
        },
    )
    values = metric_values({k: v for k, v in metadata.items()})
    _log_metrics(run.client, new.info.run_id, ((k, v, 0) for k, v in values.items()))
    strings = {k: v for k, v in metadata.items() if isinstance(v, str)}
    for key, value in safe_params(strings).items():
        run.client.set_tag(new.info.run_id, f"raserec.artifact.{key}", value[:5000])
    if strings.get("export_uri"):  # a re-run after a partial failure: its parent says where this step's export lives
        run.client.set_tag(run.parent_id, f"raserec.export.{step}", scrub(strings["export_uri"])[:5000])
    run.client.set_terminated(new.info.run_id, status="FINISHED")
    log.info("logged cached step %s of pipeline run %s from its artifact metadata", step, pipeline_run_id)
    return new.info.run_id


def log_parent_params(run: StepRun, params: Mapping[str, Any]) -> None:
    """Log ``params`` on the parent run unless it has them already (params are write-once in MLflow)."""
    have = run.client.get_run(run.parent_id).data.params
    todo = {k: v for k, v in safe_params(params).items() if k not in have}
    if todo:
        _log_params(run.client, run.parent_id, todo)


def end_pipeline(run: StepRun, status: str = "FINISHED") -> None:
    run.client.set_terminated(run.parent_id, status=status)
