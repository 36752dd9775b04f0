"""Run the pipeline through kfp's local runner, or submit it to a Kubeflow Pipelines endpoint.

The command line (``raserec run``, ``raserec pipeline submit``) parses its flags, resolves the config and
the environment, and calls these with plain values.

Local runs: the pipeline root (kfp's artifact store) is ``root``; MLflow is ``sqlite:///<root>/mlflow.db``
with artifacts in ``<root>/mlartifacts`` unless a tracking URI is given. ``export_root`` (an ``s3://``
URI; kfp's local runner cannot use one as its root) makes the steps export every artifact there
themselves, under ``<uri>/<pipeline run id>/<step>/<output>``. The training steps train in
``checkpoint_root`` (see ``steps._work_folder``), so rerunning an interrupted run resumes pre-training or
fine-tuning from its last epoch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def local_tracking(root: Path, experiment: str, tracking_uri: str = "") -> str:
    """``tracking_uri`` if given, else a SQLite store in ``root`` (the experiment's artifacts there too)."""
    location = None
    if not tracking_uri:
        tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
        location = (root / "mlartifacts").as_uri()
    from raserec_core.tracking.store import client, ensure_experiment

    ensure_experiment(client(tracking_uri), experiment, location)
    return tracking_uri


def run_local(
    data: str, config_yaml: str, root: Path, *, tracking_uri: str, experiment: str, model_name: str,
    pipeline_run_id: str = "", export_root: str = "", checkpoint_root: str = "", cache: bool = True,
) -> dict[str, Any]:
    """The whole pipeline, one subprocess per step; returns where everything is and the run's results.

    kfp's local runner prints the tasks' logs on ``sys.stdout``: the caller decides where that goes.
    """
    from kfp import local

    from raserec_core.errors import StepError

    from .raserec import build

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), enable_caching=cache)
    try:
        task = build(retries=False)(
            data_uri=data, config_yaml=config_yaml, model_name=model_name, mlflow_tracking_uri=tracking_uri,
            mlflow_experiment=experiment, pipeline_run_id=pipeline_run_id, artifact_root=export_root,
            checkpoint_root=checkpoint_root,
        )
    except RuntimeError as exc:  # kfp's local runner: a task failed (its log was printed)
        raise StepError(f"the pipeline failed ({exc}); artifacts under {root}") from None
    registration = dict(task.output.metadata)
    return {
        "pipeline_root": str(root),
        "artifacts": str(Path(task.output.path).parent.parent),
        "mlflow_tracking_uri": tracking_uri,
        "mlflow_experiment": experiment,
        "artifact_root": export_root or str(root),
        "registration": registration,
        **pipeline_run_record(tracking_uri, experiment, registration.get("pipeline_run_id", "")),
    }


def pipeline_run_record(tracking_uri: str, experiment: str, pipeline_run_id: str) -> dict[str, Any]:
    """The pipeline run's MLflow parent run id and its test metrics (``test/ndcg@10``: raw names)."""
    from raserec_core.tracking import runs
    from raserec_core.tracking.store import client

    c = client(tracking_uri)
    exp = c.get_experiment_by_name(experiment)
    parent = runs.find_parent(c, exp.experiment_id, pipeline_run_id) if exp and pipeline_run_id else None
    if parent is None:
        return {"mlflow_run_id": "", "test_metrics": {}}
    metrics = c.get_run(parent.info.run_id).data.metrics
    test = {k.replace("_at_", "@").replace("test_", "test/", 1): v for k, v in metrics.items()
            if k.startswith("test_") and "_pop_" not in k}
    return {"mlflow_run_id": parent.info.run_id, "mlflow_experiment_id": exp.experiment_id, "test_metrics": test}


def submit(
    host: str, data: str, config_yaml: str, *, experiment: str, model_name: str, run_name: str | None = None,
    tracking_uri: str = "", pipeline_run_id: str = "", export_root: str = "", checkpoint_root: str = "",
    cluster=None,
) -> dict[str, Any]:
    """Compile the pipeline (its pods as ``cluster`` says) and start a run of it on ``host``. With a
    checkpoint volume and no ``checkpoint_root``, the training steps train on the volume."""
    import tempfile

    import kfp

    from .compile import compile_pipeline

    with tempfile.TemporaryDirectory(prefix="raserec-submit-") as tmp:
        package = compile_pipeline(Path(tmp) / "raserec_pipeline.yaml", cluster)
        if not checkpoint_root and cluster is not None and cluster.checkpoint_pvc:
            checkpoint_root = cluster.mount_path
        result = kfp.Client(host=host).create_run_from_pipeline_package(
            str(package),
            arguments={
                "data_uri": data, "config_yaml": config_yaml, "model_name": model_name,
                "mlflow_tracking_uri": tracking_uri, "mlflow_experiment": experiment,
                "pipeline_run_id": pipeline_run_id, "artifact_root": export_root, "checkpoint_root": checkpoint_root,
            },
            run_name=run_name,
            experiment_name=experiment,
        )
    return {"run_id": result.run_id, "host": host, "experiment": experiment}
