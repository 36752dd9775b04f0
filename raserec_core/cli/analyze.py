"""``raserec analyze <name>`` and ``raserec report``: the command-line edge of ``raserec_core.analysis``.

The analysis's settings start from those its inputs were trained with (the stage-1 model's, the fine-tuned
model's); ``--config`` and ``--set`` change them explicitly. List options take comma-separated values.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from raserec_core.analysis import NAMES


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


# flag -> (option name, parser, help); each analysis takes the options of its DEFAULTS only
OPTIONS = {
    "--variants": ("variants", _names, "backbones: variants (sasrec, gru4rec, cl4srec, duorec, sasrec-ligr, sasrec-bsa, sasrec-sampled)"),
    "--groups": ("groups", int, "longtail: equal-size popularity groups"),
    "--head-share": ("head_share", float, "longtail: share of training targets the head items make up"),
    "--kinds": ("kinds", _names, "partitions: length, popularity, random, time"),
    "--fractions": ("fractions", _floats, "partitions: fractions of the bank kept"),
    "--lengths": ("lengths", _ints, "partitions: keep prefixes shorter than each"),
    "--shares": ("shares", _floats, "noise: shares of items replaced"),
    "--where": ("where", _names, "noise: test, train"),
    "--noise-seed": ("noise_seed", int, "noise: seed of the replacement"),
    "--params": ("params", _names, "sensitivity: top_k, alpha, beta, nprobe"),
    "--top-k": ("top_k", _ints, "sensitivity: values of finetune.top_k"),
    "--alpha": ("alpha", _floats, "sensitivity: values of finetune.alpha"),
    "--beta": ("beta", _floats, "sensitivity: values of finetune.beta"),
    "--nprobe": ("nprobe", _ints, "sensitivity: values of memory.nprobe"),
}


def add_parsers(sub) -> None:
    from .main import _common

    p = sub.add_parser("analyze", help="one of the paper's analyses: report, plots and CSVs in --output")
    _common(p)
    p.add_argument("name", choices=NAMES)
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--model", required=True, help="fine-tuned model folder")
    p.add_argument("--memory", required=True, help="its memory bank")
    p.add_argument("--baseline", required=True, help="its stage-1 model folder")
    p.add_argument("--output", required=True)
    p.add_argument("--cache", help="trained models and banks, shared between analyses (default: OUTPUT/cache)")
    p.add_argument("--pipeline", action="store_true", help="run through the Kubeflow local runner (ParallelFor)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI; none: no logging)")
    p.add_argument("--experiment", default="raserec-analysis")
    for flag, (name, parse, text) in OPTIONS.items():
        p.add_argument(flag, dest=f"option_{name}", type=parse, help=text)

    p = sub.add_parser("report", help="gather analysis folders into one Markdown report beside the paper's")
    p.add_argument("folders", nargs="+", help="outputs of 'raserec analyze'")
    p.add_argument("--output", required=True, help="Markdown file")
    p.add_argument("-v", "--verbose", action="store_true")


def run(args: argparse.Namespace) -> dict:
    if args.command == "report":
        from raserec_core.analysis.report import gather

        return gather([Path(f) for f in args.folders], Path(args.output))
    from raserec_core.analysis.run import check_output, options_of

    options = options_of(args.name, {name: getattr(args, f"option_{name}") for name, _, _ in OPTIONS.values()})
    output = Path(args.output)
    check_output(output)
    cache = Path(args.cache) if args.cache else output / "cache"
    tracking_uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    from raserec_core.analysis.workspace import Inputs, base_config

    from .main import load

    inputs = Inputs(*(Path(getattr(args, k)).resolve() for k in ("data", "model", "memory", "baseline")))
    cfg = load(args, base=base_config(inputs))
    if args.pipeline:
        from pipelines.analysis import run_local

        return run_local(args.name, options, inputs, output.resolve(), cache.resolve(), cfg.to_yaml(), tracking_uri,
                         args.experiment)
    from raserec_core.analysis.run import run_analysis
    from raserec_core.analysis.workspace import Workspace
    from raserec_core.device import resolve_device

    ws = Workspace(inputs, cfg, cache, output, resolve_device(cfg.device))
    return run_analysis(args.name, ws, options, tracking_uri, args.experiment)
