"""The edge a Kubeflow component runs through: config, device, MLflow run, S3 inputs and exports.

A component body is ``with pipeline_task(...) as t: result = steps.<step>(..., t.cfg, t.device)``
followed by ``t.record(result, <its output artifacts>)``. Like ``cli.main`` for the command line, this is
the only place a component reads the environment (``MLFLOW_TRACKING_URI`` when no URI is passed) and
picks the device. It never imports kfp: artifacts are used through ``.path`` and ``.metadata``.

What ``pipeline_task`` does around the step:

- resolves the config: the YAML string (the whole resolved config, or empty for the defaults) plus the
  pipeline's typed overrides; an override left at its "unset" value (``""``, ``0``, a negative
  number) keeps the config's value;
- opens the step's nested MLflow run under the pipeline run's parent (``tracking.runs``), first logging
  a run for every upstream step that Kubeflow served from its cache (from the artifacts' metadata);
- marks the run and the parent run FAILED (KILLED on SIGTERM or Ctrl-C) and re-raises on an exception
  (a retry, or a resubmission with the same pipeline run id, reopens the parent); on success ``record`` has logged the step's
  results, and the run is FINISHED (with ``final=True`` the parent run too).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config

log = logging.getLogger("raserec.task")

# Pipeline parameter -> config key. Unset values ("" / 0 / negative) keep the config's value.
OVERRIDES = {
    "backbone": "model.backbone",
    "objective": "pretrain.objective",
    "pretrain_epochs": "pretrain.epochs",
    "finetune_epochs": "finetune.epochs",
    "top_k": "finetune.top_k",
    "alpha": "finetune.alpha",
    "beta": "finetune.beta",
    "index_type": "memory.index_type",
}
VALID_METRIC = "valid/ndcg@10"  # what the register gate compares
_METADATA_STR_MAX = 512


# The config sections each step depends on: what its MLflow run logs as parameters, and why a
# component receives only the overrides that touch them (so that changing alpha does not invalidate the
# cached pre-training).
STEP_SECTIONS = {
    "preprocess": ("data",),
    "pretrain": ("seed", "device", "data", "model", "pretrain", "eval"),
    "index": ("seed", "device", "data", "model", "pretrain", "memory"),
}


def is_unset(value: Any) -> bool:
    """``""``/None, an int <= 0 or a float < 0: the pipeline parameter was left at "keep the config"."""
    if value is None or value == "":
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value <= 0
    return isinstance(value, float) and value < 0


def pipeline_config(config_yaml: str = "", **overrides: Any) -> Config:
    """The config from a YAML string plus the pipeline's typed overrides (unset ones are skipped)."""
    import yaml

    from ..config import ConfigError, load_config

    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        raise ConfigError(f"unknown pipeline override '{unknown[0]}' (known: {', '.join(sorted(OVERRIDES))})")
    data = yaml.safe_load(config_yaml) if config_yaml and config_yaml.strip() else {}
    if not isinstance(data, dict):
        raise ConfigError("config_yaml: expected a mapping at the top level")
    tree: dict[str, Any] = {}
    for name, value in overrides.items():
        if is_unset(value):
            continue
        section, key = OVERRIDES[name].split(".")
        tree.setdefault(section, {})[key] = value
    return load_config(None, _merge(data, tree))


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def resolve_run_id(pipeline_run_id: str, kfp_run_id: str) -> str:
    """The pipeline run id MLflow groups runs by: the one given, else Kubeflow's own job id."""
    if pipeline_run_id:
        return pipeline_run_id
    if not kfp_run_id or kfp_run_id.startswith("{{"):
        raise ValueError("no pipeline run id: pass pipeline_run_id or run under Kubeflow")
    return f"kfp-{kfp_run_id}"


def metadata_facts(result: Mapping[str, Any]) -> dict[str, Any]:
    """Small scalar facts of a step result for artifact metadata (MLflow-style keys, no nesting)."""
    from ..config import flatten
    from ..evaluation.metrics import mlflow_key
    from ..tracking.runs import is_sensitive, scrub

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


@dataclass
class StepTask:
    step: str
    cfg: Config
    device: Any
    pipeline_run_id: str
    run: Any  # tracking.runs.StepRun
    artifact_root: str = ""
    dataset_path: str = ""  # the dataset the step read (for the per-popularity-group report)
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    results: dict[str, Any] = field(default_factory=dict)

    def local_input(self, uri: str) -> Path:
        """A local path for ``uri`` (s3:// is downloaded for the duration of the step)."""
        from ..storage import local_input

        return self._stack.enter_context(local_input(uri))

    def record(self, result: Mapping[str, Any], **outputs: Any) -> dict[str, Any]:
        """Log ``result`` and the outputs to MLflow, export them, and fill the artifacts' metadata.

        ``outputs`` are KFP output artifacts by name (anything with ``.path`` and ``.metadata``). A
        ``system.Metrics`` artifact gets the numeric metrics only; the others get the facts plus the URI
        of their export (when ``artifact_root`` is set), and ``result`` as JSON if the step wrote no file
        there. Returns the facts.
        """
        self.results = dict(result)
        facts = metadata_facts(result)
        self._log(result, outputs)
        for name, artifact in outputs.items():
            path = Path(artifact.path)
            if _schema(artifact) == "system.Metrics":
                numeric = {k: float(v) for k, v in facts.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
                artifact.metadata.update(numeric)
                continue
            if not path.exists():  # the step wrote nothing there: keep its facts, so every artifact has a file
                from ..storage import atomic_write_text

                atomic_write_text(path, json.dumps(dict(result), indent=2, sort_keys=True, default=str) + "\n")
            artifact.metadata.update(facts)
            artifact.metadata["pipeline_run_id"] = self.pipeline_run_id
            if self.artifact_root and path.exists():
                from ..storage import export, join

                uri = join(self.artifact_root, self.pipeline_run_id, self.step, name)
                report = export(path, uri)
                artifact.metadata["export_uri"] = uri
                self.run.set_tags({f"raserec.export.{name}": uri})
                log.info("exported %s (%d bytes) to %s", name, report["bytes"], uri)
        return facts

    def value(self, key: str) -> float:
        """A metric of the recorded result by its raw name (e.g. ``valid/ndcg@10``)."""
        if key not in self.results:
            raise KeyError(f"{self.step}: no metric {key!r} in the result (has: {', '.join(sorted(self.results))})")
        return float(self.results[key])

    def _log(self, result: Mapping[str, Any], outputs: Mapping[str, Any]) -> None:
        run = self.run
        histories = [Path(a.path) / "history.json" for a in outputs.values() if (Path(a.path) / "history.json").is_file()]
        if self.step == "preprocess":
            run.log_metrics(result, prefix="dataset")
            run.set_tags({"raserec.dataset_fingerprint": result.get("fingerprint", "")}, to_parent=True)
            run.log_text(json.dumps(result, indent=2, sort_keys=True), "dataset/stats.json")
        elif histories:
            for h in histories:
                run.log_history(json.loads(h.read_text()))
            run.log_metrics(result, prefix="best")
        elif self.step == "evaluate":
            run.log_metrics(result, to_parent=True)
            topk = outputs.get("topk")
            if topk is not None and self.dataset_path and Path(topk.path).is_file():
                self._log_popularity_groups(topk.path)
        else:
            run.log_metrics(result, prefix=self.step)
        strings = {k: v for k, v in metadata_facts(result).items() if isinstance(v, str)}
        run.set_tags({f"raserec.{self.step}.{k}": v for k, v in strings.items()})

    def _log_popularity_groups(self, topk_path: str) -> None:
        import matplotlib.pyplot as plt

        from ..tracking.plots import popularity_figure, popularity_groups

        groups = popularity_groups(topk_path, self.dataset_path)
        self.run.log_metrics(groups, to_parent=True)
        fig = popularity_figure(groups)
        self.run.client.log_figure(self.run.run_id, fig, "plots/popularity_groups.png")
        plt.close(fig)


def _schema(artifact: Any) -> str:
    return getattr(type(artifact), "schema_title", "") or getattr(artifact, "schema_title", "")


@contextlib.contextmanager
def pipeline_task(
    step: str, config_yaml: str = "", overrides: Mapping[str, Any] | None = None, *, tracking_uri: str = "",
    experiment: str = "raserec", pipeline_run_id: str = "", kfp_run_id: str = "", artifact_root: str = "",
    upstream: Mapping[str, Mapping[str, Any]] | None = None, needs_device: bool = True, final: bool = False,
    params: Mapping[str, Any] | None = None, dataset_path: str = "",
) -> Iterator[StepTask]:
    """Run one pipeline step inside its MLflow run; see the module docstring."""
    from ..tracking import runs

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = pipeline_config(config_yaml, **dict(overrides or {}))
    device = None
    if needs_device:
        from .device import resolve_device

        device = resolve_device(cfg.device)
    run_id = runs.check_run_id(resolve_run_id(pipeline_run_id, kfp_run_id))
    tracking_uri = runs.credentials_to_env(tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", ""))
    if not tracking_uri:
        raise ValueError(f"{step}: no MLflow tracking URI (pass mlflow_tracking_uri or set MLFLOW_TRACKING_URI)")
    sections = STEP_SECTIONS.get(step)
    config_params = {"config": cfg.section(*sections) if sections else cfg.to_dict()}
    run = runs.start_step(
        tracking_uri, experiment, run_id, step, params={**config_params, **dict(params or {})},
        tags={"raserec.artifact_root": artifact_root},
    )
    if sections is None:  # this step sees every override: its config is the pipeline run's config
        runs.log_parent_params(run, config_params)
        run.client.log_text(run.parent_id, cfg.to_yaml(), "config/resolved.yaml")
    for name, metadata in (upstream or {}).items():
        runs.log_cached_step(run, name, dict(metadata or {}))
    task = StepTask(step, cfg, device, run_id, run, artifact_root, dataset_path)
    runs.raise_on_sigterm()  # a terminated step marks its runs KILLED instead of leaving them RUNNING
    try:
        with task._stack:
            run.log_text(cfg.to_yaml(), "config/resolved.yaml")
            yield task
    except BaseException as exc:
        run.end(runs.failure_status(exc))
        runs.end_pipeline(run, runs.failure_status(exc))  # a retry or resubmission with the same id reopens it
        raise
    run.end("FINISHED")
    if final:
        runs.end_pipeline(run, "FINISHED")
