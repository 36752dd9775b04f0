"""``raserec run`` (the whole pipeline through the local kfp runner) and ``raserec pipeline compile|submit``:
their flags, config and environment; the running itself is ``pipelines.runner``'s.

Imports stay inside the functions: ``raserec --help`` and ``raserec pipeline compile`` import neither
torch nor mlflow.

``raserec run`` defaults: the pipeline root (kfp's artifact store) is ``runs/pipeline``; MLflow is
``sqlite:///<root>/mlflow.db`` with artifacts in ``<root>/mlartifacts`` unless ``MLFLOW_TRACKING_URI`` is
set. ``--artifact-root`` is a local folder (then it is the pipeline root) or an ``s3://`` URI (the steps
then export every artifact there themselves). The training steps train in ``<root>/checkpoints``:
rerunning an interrupted ``raserec run`` resumes pre-training or fine-tuning from its last epoch;
``--no-cache`` turns that off with the cache. The console shows our progress (``cli/console.py``) and
ends with the run's test metrics, its registered version and where to look; ``-v`` shows kfp's and
MLflow's own output too.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

DEFAULT_ROOT = "runs/pipeline"
DEFAULT_EXPERIMENT = "raserec"
# --quick: a full run in minutes (few epochs); --set still wins over it.
QUICK = ["pretrain.epochs=2", "finetune.epochs=2"]


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="interactions: a local path or an s3:// URI")
    p.add_argument("--config", help="YAML config file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (dotted path), repeatable")
    p.add_argument("--quick", action="store_true", help=f"few epochs ({' '.join(QUICK)})")
    p.add_argument("--model-name", default="raserec", help="registered model name (default: raserec)")
    p.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="MLflow experiment (default: raserec)")
    p.add_argument("--run-id", default="", help="pipeline run id for MLflow (default: kfp's job id)")
    p.add_argument("--checkpoint-root", default=None,
                   help="folder the training steps train in, named by config and inputs, so that rerunning an "
                        "interrupted pipeline resumes them (run: default <pipeline root>/checkpoints, off with "
                        "--no-cache; submit: a path every pod sees, e.g. a mounted volume; default off)")


def _cluster_args(p: argparse.ArgumentParser) -> None:
    from components.image import IMAGE

    g = p.add_argument_group("cluster", "the pods' image; GPUs, placement, volume and Trainer jobs of the training steps")
    g.add_argument("--image", default=IMAGE, help=f"the image every step runs on (default {IMAGE})")
    g.add_argument("--gpus", type=int, default=0, help="nvidia.com/gpu per training pod (or per Trainer node)")
    g.add_argument("--node-selector", action="append", default=[], metavar="KEY=VALUE",
                   help="node label the training pods need, repeatable")
    g.add_argument("--toleration", action="append", default=[], metavar="KEY[=VALUE][:EFFECT]",
                   help="taint the training pods tolerate (kubectl's taint syntax), repeatable")
    g.add_argument("--checkpoint-pvc", default="",
                   help="PersistentVolumeClaim the training steps mount at /checkpoints (manifests/base: "
                        "raserec-checkpoints); submit then trains there unless --checkpoint-root says otherwise")
    g.add_argument("--trainer-workers", type=int, default=0, metavar="N",
                   help="train each training step as a Kubeflow Trainer TrainJob of N nodes (needs --checkpoint-pvc)")


def cluster_options(args: argparse.Namespace):
    from pipelines.cluster import ClusterOptions, parse_node_selector, parse_toleration

    try:
        return ClusterOptions(
            image=args.image, gpus=args.gpus, node_selector=parse_node_selector(args.node_selector),
            tolerations=tuple(parse_toleration(t) for t in args.toleration), checkpoint_pvc=args.checkpoint_pvc,
            trainer_workers=args.trainer_workers,
        )
    except ValueError as e:
        raise SystemExit(f"raserec pipeline: {e}") from None


def add_parsers(sub) -> None:
    """Add ``run`` and ``pipeline {compile,submit}`` to the ``raserec`` subcommands."""
    p = sub.add_parser("run", help="the whole pipeline through the local kfp runner")
    _config_args(p)
    p.add_argument("--artifact-root", default=DEFAULT_ROOT,
                   help=f"local folder (the pipeline root) or s3:// URI to export to (default: {DEFAULT_ROOT})")
    p.add_argument("--no-cache", action="store_true", help="run every step even if a cached result exists")
    p.add_argument("-v", "--verbose", action="store_true")

    p = sub.add_parser("pipeline", help="compile or submit the Kubeflow pipeline")
    psub = p.add_subparsers(dest="pipeline_command", required=True)
    c = psub.add_parser("compile", help="write the pipeline's IR YAML")
    c.add_argument("--output", default=None, help="default: pipelines/raserec_pipeline.yaml")
    c.add_argument("-v", "--verbose", action="store_true")
    _cluster_args(c)
    s = psub.add_parser("submit", help="compile and submit a run to a Kubeflow Pipelines endpoint")
    _config_args(s)
    s.add_argument("--host", required=True, help="KFP API endpoint, e.g. http://localhost:8080")
    s.add_argument("--run-name", default=None)
    s.add_argument("--artifact-root", default="", help="s3:// URI the steps also export their artifacts to")
    s.add_argument("--mlflow-tracking-uri", default="",
                   help="as the pods see it (default: MLFLOW_TRACKING_URI from the raserec-config ConfigMap)")
    s.add_argument("-v", "--verbose", action="store_true")
    _cluster_args(s)


def resolved_config_yaml(args: argparse.Namespace) -> str:
    from ..config import load_config

    overrides = (QUICK if args.quick else []) + list(args.overrides)
    return load_config(args.config, overrides).to_yaml()


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.command == "run":
        return run_local(args)
    if args.pipeline_command == "compile":
        from pipelines.compile import DEFAULT_OUTPUT, compile_pipeline

        return {"output": str(compile_pipeline(args.output or DEFAULT_OUTPUT, cluster_options(args)))}
    if args.pipeline_command == "submit":
        return submit(args)
    raise SystemExit(f"raserec pipeline: unknown command {args.pipeline_command}")


def run_local(args: argparse.Namespace) -> dict[str, Any]:
    import yaml

    from components.params import STEPS
    from pipelines import runner

    from ..storage import is_s3
    from ..tracking.runs import check_run_id
    from ..tracking.secrets import credentials_to_env
    from .allocator import mimalloc_for_children
    from .console import RunConsole, route_logs

    config_yaml = resolved_config_yaml(args)  # fail on a bad config before anything starts
    if args.run_id:
        check_run_id(args.run_id)
    cfg = yaml.safe_load(config_yaml)
    console = RunConsole(STEPS, {"pretrain": cfg["pretrain"]["epochs"], "finetune": cfg["finetune"]["epochs"]},
                         sys.stderr, verbose=args.verbose)
    # Without -v the console takes kfp's and MLflow's output (kfp's local runner prints the tasks' output
    # on stdout, its own records go to the root logger): stdout keeps the result.
    restore_logs = route_logs(console) if not args.verbose else None
    try:
        export_root = args.artifact_root if is_s3(args.artifact_root) else ""
        root = Path(DEFAULT_ROOT if export_root else args.artifact_root).resolve()
        root.mkdir(parents=True, exist_ok=True)
        tracking_uri = credentials_to_env(  # no password in the task inputs
            runner.local_tracking(root, args.experiment, os.environ.get("MLFLOW_TRACKING_URI", "")))
        checkpoint_root = args.checkpoint_root
        if checkpoint_root is None:
            checkpoint_root = "" if args.no_cache else str(root / "checkpoints")
        data = args.data if is_s3(args.data) else str(Path(args.data).resolve())
        if not is_s3(data) and not Path(data).exists():
            raise FileNotFoundError(f"--data {args.data}: no such file or folder")
        with contextlib.redirect_stdout(console), mimalloc_for_children():
            return runner.run_local(
                data, config_yaml, root, tracking_uri=tracking_uri, experiment=args.experiment,
                model_name=args.model_name, pipeline_run_id=args.run_id, export_root=export_root,
                checkpoint_root=str(Path(checkpoint_root).resolve()) if checkpoint_root else "", cache=not args.no_cache,
            )
    finally:
        console.close()
        if restore_logs is not None:
            restore_logs()


def submit(args: argparse.Namespace) -> dict[str, Any]:
    from pipelines import runner

    from ..redact import redact

    if redact(args.mlflow_tracking_uri) != args.mlflow_tracking_uri:  # parameters are stored in plain text
        from ..errors import ConfigError

        raise ConfigError("--mlflow-tracking-uri: no credentials in the URI (Kubeflow stores run parameters in plain "
                          "text); give the pods MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD from a Secret")
    return runner.submit(
        args.host, args.data, resolved_config_yaml(args), experiment=args.experiment, model_name=args.model_name,
        run_name=args.run_name, tracking_uri=args.mlflow_tracking_uri, pipeline_run_id=args.run_id,
        export_root=args.artifact_root, checkpoint_root=args.checkpoint_root or "", cluster=cluster_options(args),
    )
