"""``raserec tune``: the command-line edge of the hyperparameter search (``raserec_core.tuning``).

It reads the environment (``MLFLOW_TRACKING_URI``) and turns the common flags into ``--set`` items that
every trial receives; with ``--katib-manifest`` it writes the same search as a Katib Experiment instead.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_parser(sub) -> None:
    from .main import _common

    p = sub.add_parser("tune", help="hyperparameter search: pretrain trials on Optuna, or the Katib Experiment")
    _common(p)
    p.add_argument("--data", required=True, help="dataset folder (local or s3://) every trial trains on")
    p.add_argument("--space", required=True, help="search space YAML: dotted config key -> {type, low, high, log, step, choices}")
    p.add_argument("--study-dir", help="the study's folder; running the same command again resumes it")
    p.add_argument("--trials", type=int, default=20, help="finished trials (complete or pruned) of the whole study")
    p.add_argument("--timeout", type=float, help="start no new trial after this many seconds")
    p.add_argument("--stage", choices=["pretrain"], default="pretrain", help="the step each trial runs")
    p.add_argument("--pruner", choices=["median", "none"], default="median")
    p.add_argument("--warmup-epochs", type=int, default=3, help="epochs before a trial may be pruned")
    p.add_argument("--prune-patience", type=int, default=3,
                   help="prune a trial below the median only once its best epoch is more than this many epochs old (0: plain median rule)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else a SQLite store in --study-dir)")
    p.add_argument("--experiment", default="raserec-tune", help="MLflow experiment")
    p.add_argument("--katib-manifest", metavar="OUT", help="write this search as a Katib Experiment to OUT and exit")


def overrides(args: argparse.Namespace) -> tuple[str, ...]:
    from .main import FLAG_KEYS

    items = list(args.overrides)
    for flag, key in FLAG_KEYS.items():
        value = getattr(args, flag, None)
        if value is not None:
            items.append(f"{key}={value}")
    return tuple(items)


def _local(path: str) -> str:
    from raserec_core.storage import is_s3

    return path if is_s3(path) else str(Path(path).resolve())


def run(args: argparse.Namespace) -> dict:
    from raserec_core.tuning.study import TuneError, TuneRequest, tune

    if args.trials < 1 or args.warmup_epochs < 0 or args.prune_patience < 0:
        raise TuneError("--trials must be >= 1, --warmup-epochs and --prune-patience >= 0")
    req = TuneRequest(
        data=_local(args.data), space=args.space, study_dir=Path(args.study_dir or ".").resolve(),
        config=_local(args.config) if args.config else None, overrides=overrides(args), trials=args.trials,
        timeout=args.timeout, pruner=args.pruner, warmup_epochs=args.warmup_epochs,
        prune_patience=args.prune_patience,
        tracking_uri=args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None, experiment=args.experiment,
    )
    if args.katib_manifest:
        return write_katib(args, req)
    if not args.study_dir:
        raise TuneError("--study-dir is required to run a search")
    return tune(req)


def write_katib(args: argparse.Namespace, req) -> dict:
    from components.image import IMAGE  # the one image tag (components/image.py)
    from raserec_core.tuning.katib import experiment_yaml

    text = experiment_yaml(args.data, req.space, req.config, req.overrides, trials=req.trials,
                           warmup_epochs=req.warmup_epochs, image=IMAGE, space_label=args.space)
    Path(args.katib_manifest).write_text(text)
    return {"katib_manifest": args.katib_manifest}
