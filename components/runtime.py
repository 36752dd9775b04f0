"""What every component runs through: config, device, the step's MLflow run, S3 inputs and exports.

A component's body is ``run_component("<step>", locals())`` (``components/factory.py`` writes it):
``run_component`` resolves the config, picks the device, opens the step's MLflow run, makes the one call
into ``raserec_core.steps`` (``_call``) and records the result. Like ``raserec_core.cli`` for the command
line, this is the only place a component reads the environment (``MLFLOW_TRACKING_URI`` when no URI is
passed) and picks the device. It never imports kfp: artifacts are used through ``.path`` and
``.metadata``. The config a step resolves is ``config.py``'s, what its artifacts' metadata carries is
``metadata.py``'s, and a training step compiled with a Trainer job trains through ``trainjob.py``.

What ``pipeline_task`` does around the step:

- resolves the config (``config.pipeline_config``);
- opens the step's nested MLflow run under the pipeline run's parent (``tracking.runs``), first logging
  a run for every upstream step that Kubeflow served from its cache (from the artifacts' metadata);
  the step logs the config sections it computes from (``STEP_SECTIONS``) on its run and on the parent;
- marks the run and the parent run FAILED (KILLED on SIGTERM or Ctrl-C) and re-raises on an exception
  (a retry, or a resubmission with the same pipeline run id, reopens the parent); on success ``record`` has logged the step's
  results, and the run is FINISHED (the last step closes the parent run too, after writing the run's
  summary).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raserec_core.config import Config

from .config import STEP_SECTIONS, pipeline_config
from .metadata import close_pipeline, config_sections, log_dataset, metadata_facts, schema_title
from .params import overrides, step_params
from .trainjob import TRAINJOB_ENV, train_on_cluster

log = logging.getLogger("raserec.task")

LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"  # as the command line's: raserec run reads it
VALID_METRIC = "valid/ndcg@10"  # what the register gate compares
FINAL_STEP = "register"  # closes the parent run

# Each step's input artifacts and the step that produced them (evaluate without a memory bank
# evaluates the stage-1 model: its ``model`` is then pretrain's).
INPUTS = {
    "preprocess": {},
    "pretrain": {"data": "preprocess"},
    "index": {"data": "preprocess", "model": "pretrain"},
    "finetune": {"data": "preprocess", "pretrained": "pretrain", "memory": "index"},
    "evaluate": {"data": "preprocess", "model": "finetune", "memory": "index"},
    "register": {"data": "preprocess", "pretrained": "pretrain", "memory": "index", "model": "finetune",
                 "metrics": "evaluate"},
}


def resolve_run_id(pipeline_run_id: str, kfp_run_id: str) -> str:
    """The pipeline run id MLflow groups runs by: the one given, else Kubeflow's own job id."""
    if pipeline_run_id:
        return pipeline_run_id
    if not kfp_run_id or kfp_run_id.startswith("{{"):
        raise ValueError("no pipeline run id: pass pipeline_run_id or run under Kubeflow")
    return f"kfp-{kfp_run_id}"


def project_tags() -> dict[str, str]:
    """The project's version and git commit, as tags of every run.

    The commit is ``$RASEREC_GIT_COMMIT`` (an image sets it when built), else that of the checkout the
    package runs from, else ``unknown``.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        project_version = version("raserec")
    except PackageNotFoundError:
        project_version = "unknown"
    commit = os.environ.get("RASEREC_GIT_COMMIT", "")
    if not commit:
        try:
            commit = subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True,
                timeout=10, check=True,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            commit = "unknown"
    return {"raserec.version": project_version, "raserec.git_commit": commit or "unknown"}


@dataclass
class StepTask:
    step: str
    cfg: Config
    device: Any
    pipeline_run_id: str
    run: Any  # tracking.runs.StepRun
    artifact_root: str = ""
    dataset_path: str = ""  # the dataset the step read (for the per-popularity-group report)
    sections: dict[str, Any] = field(default_factory=dict)  # the config sections this step computes from
    summary: Any = None  # the last step's Markdown output artifact
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    results: dict[str, Any] = field(default_factory=dict)

    def local_input(self, uri: str) -> Path:
        """A local path for ``uri`` (s3:// is downloaded for the duration of the step)."""
        from raserec_core.storage import local_input

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
            if schema_title(artifact) == "system.Metrics":
                numeric = {k: float(v) for k, v in facts.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
                artifact.metadata.update(numeric)
                continue
            if not path.exists():  # the step wrote nothing there: keep its facts, so every artifact has a file
                from raserec_core.storage import atomic_write_text

                atomic_write_text(path, json.dumps(dict(result), indent=2, sort_keys=True, default=str) + "\n")
            artifact.metadata.update(facts)
            artifact.metadata["pipeline_run_id"] = self.pipeline_run_id
            # JSON text: kfp carries metadata as a protobuf Struct, which would turn every int into a float
            artifact.metadata["config"] = json.dumps(self.sections, sort_keys=True)
            if self.artifact_root and path.exists():
                from raserec_core.storage import export, join

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

        from raserec_core.tracking.plots import popularity_figure, popularity_groups

        groups = popularity_groups(topk_path, self.dataset_path)
        self.run.log_metrics(groups, to_parent=True)
        fig = popularity_figure(groups)
        self.run.client.log_figure(self.run.run_id, fig, "plots/popularity_groups.png")
        plt.close(fig)


@contextlib.contextmanager
def pipeline_task(
    step: str, config_yaml: str = "", overrides: Mapping[str, Any] | None = None, *, tracking_uri: str = "",
    experiment: str = "raserec", pipeline_run_id: str = "", kfp_run_id: str = "", artifact_root: str = "",
    upstream: Mapping[str, Mapping[str, Any]] | None = None, needs_device: bool = True,
    params: Mapping[str, Any] | None = None, dataset_path: str = "",
) -> Iterator[StepTask]:
    """Run one pipeline step inside its MLflow run; see the module docstring."""
    from raserec_core.tracking import runs
    from raserec_core.tracking.secrets import credentials_to_env

    # In a task, kfp's executor has configured the root logger without logger names; ours replaces it, so
    # that ``raserec run`` can tell our lines (``raserec.*``) from kfp's and MLflow's.
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, force=os.environ.get("_KFP_RUNTIME") == "true")
    cfg = pipeline_config(config_yaml, **dict(overrides or {}))
    device = None
    if needs_device:
        from raserec_core.device import resolve_device

        device = resolve_device(cfg.device)
    run_id = runs.check_run_id(resolve_run_id(pipeline_run_id, kfp_run_id))
    tracking_uri = credentials_to_env(tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", ""))
    if not tracking_uri:
        raise ValueError(f"{step}: no MLflow tracking URI (pass mlflow_tracking_uri or set MLFLOW_TRACKING_URI)")
    sections = cfg.section(*STEP_SECTIONS[step])
    run = runs.start_step(
        tracking_uri, experiment, run_id, step, params={"config": sections, **dict(params or {})},
        tags={"raserec.artifact_root": artifact_root, **project_tags()},
    )
    runs.log_parent_params(run, {"config": sections})
    for name, metadata in (upstream or {}).items():
        metadata = dict(metadata or {})
        runs.log_cached_step(run, name, {k: v for k, v in metadata.items() if k != "config"})
        if metadata.get("config"):  # a cached step's share of the parent's params
            runs.log_parent_params(run, {"config": config_sections(metadata)})
    task = StepTask(step, cfg, device, run_id, run, artifact_root, dataset_path, sections)
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
    if step == FINAL_STEP:
        close_pipeline(task, upstream or {})


def run_component(step: str, args: Mapping[str, Any]) -> tuple | None:
    """A component's whole body: ``args`` are its arguments (``locals()``), table parameters and artifacts."""
    rows = {p.name for p in step_params(step)}
    values = {k: v for k, v in args.items() if k in rows}
    ports = {k: v for k, v in args.items() if k not in rows}
    sources = dict(INPUTS[step])
    if step == "evaluate" and ports.get("memory") is None:
        sources["model"] = "pretrain"
    upstream = {sources[port]: art.metadata for port, art in ports.items() if port in sources and art is not None}
    config_overrides = {k: v for k, v in values.items() if k in overrides()}
    with pipeline_task(
        step, values["config_yaml"], config_overrides, tracking_uri=values["mlflow_tracking_uri"],
        experiment=values["mlflow_experiment"], pipeline_run_id=values["pipeline_run_id"],
        kfp_run_id=values["kfp_run_id"], artifact_root=values["artifact_root"], upstream=upstream,
        needs_device=step != "preprocess", dataset_path=ports["data"].path if step == "evaluate" else "",
        params={k: values[k] for k in ("data_uri", "model_name") if k in values},
    ) as t:
        result, outputs = _call(step, t, ports, values)
        t.record(result, **outputs)
        if step == "preprocess":  # the data as given (the step read a local copy of an s3:// URI)
            from raserec_core.tracking.secrets import scrub

            ports["dataset"].metadata["data_uri"] = scrub(values["data_uri"])
            log_dataset(t.run, t.run.run_id, ports["dataset"].metadata)
    if step == "evaluate":
        return (t.value(VALID_METRIC),)
    return None


def _call(step: str, t: StepTask, a: Mapping[str, Any], v: Mapping[str, Any]) -> tuple[Mapping[str, Any], dict]:
    """The one call into ``raserec_core.steps`` of each step (the same the ``raserec <step>`` command
    makes), and the output artifacts its result is recorded on."""
    from raserec_core import steps

    if step == "preprocess":
        return steps.preprocess(t.local_input(v["data_uri"]), a["dataset"].path, t.cfg), {"dataset": a["dataset"]}
    if step in ("pretrain", "finetune") and os.environ.get(TRAINJOB_ENV):
        v = {**v, "checkpoint_root": train_on_cluster(step, t, a, v)}
    if step == "pretrain":
        work = v["checkpoint_root"] or None
        return steps.pretrain(a["data"].path, a["model"].path, t.cfg, t.device, work_root=work), {"model": a["model"]}
    if step == "index":
        return steps.index(a["data"].path, a["model"].path, a["memory"].path, t.cfg, t.device), {"memory": a["memory"]}
    if step == "finetune":
        result = steps.finetune(a["data"].path, a["pretrained"].path, a["memory"].path, a["model"].path, t.cfg,
                                t.device, work_root=v["checkpoint_root"] or None)
        return result, {"model": a["model"]}
    if step == "evaluate":
        memory = a["memory"].path if a["memory"] is not None else None
        result = steps.evaluate(a["data"].path, a["model"].path, t.cfg, t.device, topk_output=a["topk"].path,
                                metrics_output=a["metrics"].path, memory=memory)
        return result, {"metrics": a["metrics"], "topk": a["topk"]}
    if step == "register":
        result = steps.register(a["data"].path, a["model"].path, t.device, a["valid_ndcg_at_10"],
                                model_name=v["model_name"], memory=a["memory"].path,
                                tracking_uri=t.run.tracking_uri, run_id=t.run.run_id)
        t.summary = a["summary"]
        return result, {"registration": a["registration"]}
    raise ValueError(f"unknown step {step!r}")

