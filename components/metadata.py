"""What a step puts in its output artifacts' metadata, and what later steps make of it in MLflow.

A step's output artifacts carry small scalar facts of its result (``metadata_facts``), the pipeline run
id, the URI of their export, and the config sections the step computed from (``config_sections``, as
JSON text). A step that Kubeflow served from its cache does not run, so the steps downstream of it log
its run from that metadata (``runtime.pipeline_task``) and give its sections to the parent run: the
parent holds the whole config even when upstream steps came from the cache. The last step
(``close_pipeline``) writes the parent's resolved config, its dataset input and the run's Markdown
summary, then closes the parent.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runtime import StepTask

_METADATA_STR_MAX = 512


def metadata_facts(result: Mapping[str, Any]) -> dict[str, Any]:
    """Small scalar facts of a step result for artifact metadata (MLflow-style keys, no nesting)."""
    from raserec_core.config import flatten
    from raserec_core.evaluation.metrics import mlflow_key
    from raserec_core.tracking.secrets import is_sensitive, scrub

    out: dict[str, Any] = {}
    for key, value in flatten(result, sep="_").items():
        name = mlflow_key(key)
        if is_sensitive(name):
            continue
        if isinstance(value, bool):
            out[name] = value
        elif isinstance(value, (int, float)) and math.isfinite(value):
            out[name] = value
        elif isinstance(value, str) and len(value) <= _METADATA_STR_MAX:
            out[name] = scrub(value)
    return out


def schema_title(artifact: Any) -> str:
    return getattr(type(artifact), "schema_title", "") or getattr(artifact, "schema_title", "")


def config_sections(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The config sections a step put in its artifact's metadata (JSON text), or none."""
    text = metadata.get("config")
    return json.loads(text) if isinstance(text, str) and text else {}


def log_dataset(run: Any, run_id: str, dataset: Mapping[str, Any]) -> None:
    """The dataset as an MLflow input of ``run_id``: its source and fingerprint from the dataset artifact's
    metadata (the data is not copied)."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag

    from raserec_core.tracking.secrets import scrub

    source = scrub(str(dataset.get("data_uri") or dataset.get("source", "")))
    fingerprint = str(dataset.get("fingerprint", ""))
    if not source or not fingerprint:
        return
    import warnings

    with warnings.catch_warnings():  # a path matches two equal local sources: MLflow warns, picks one
        warnings.simplefilter("ignore", UserWarning)
        dataset = MetaDataset(resolve_dataset_source(source), name=Path(source).name, digest=fingerprint[:36])
    tag = InputTag(key="mlflow.data.context", value="training")
    run.client.log_inputs(run_id, datasets=[DatasetInput(dataset=dataset._to_mlflow_entity(), tags=[tag])])


def close_pipeline(t: StepTask, upstream: Mapping[str, Mapping[str, Any]]) -> None:
    """The last step: the parent's whole config, dataset input and Markdown summary; then it is closed."""
    from raserec_core.config import from_dict
    from raserec_core.tracking import runs

    run = t.run
    config = t.cfg.to_dict()
    for metadata in upstream.values():  # each upstream step's sections, with the overrides it received
        config.update(config_sections(dict(metadata or {})))
    run.client.log_text(run.parent_id, from_dict(config).to_yaml(), "config/resolved.yaml")
    preprocess = dict(upstream.get("preprocess") or {})
    log_dataset(run, run.parent_id, preprocess)
    metrics = {k: v for k, v in dict(upstream.get("evaluate") or {}).items() if k.startswith("test_")}
    from raserec_core.tracking.summary import summary_markdown

    text = summary_markdown(run.tracking_uri, run.client.get_run(run.parent_id).info.experiment_id, run.parent_id,
                            t.pipeline_run_id, metrics, t.results)
    run.client.log_text(run.parent_id, text, "summary.md")
    if t.summary is not None:
        Path(t.summary.path).parent.mkdir(parents=True, exist_ok=True)
        Path(t.summary.path).write_text(text, encoding="utf-8")
    runs.end_pipeline(run, "FINISHED")
