"""``raserec <command>``: argument parsing, config loading and device choice, then one call into ``steps``.

Results (metrics, stats) go to stdout as JSON (``raserec run``: a summary for a reader); logs and progress
go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys

from raserec_core.cli.device import add_device_flag
from raserec_core.device import resolve_device, wait_passively


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (dotted path), repeatable")
    add_device_flag(p)
    p.add_argument("--seed", type=int, help="shorthand for --set seed=N")
    p.add_argument("-v", "--verbose", action="store_true")


def _training(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nproc-per-node", type=int, default=1, metavar="N",
                   help="train data-parallel in N processes started by torch.distributed.run (gloo on the "
                        "CPU, one GPU each with CUDA)")
    p.add_argument("--work-root", help="train in a resumable folder there, named by the run's config and "
                                       "inputs, and copy the result to --output")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raserec", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("preprocess", help="interactions -> dataset folder (k-core, leave-one-out split)")
    _common(p)
    p.add_argument("--input", required=True)
    p.add_argument("--format", choices=["auto", "seq", "csv", "tsv", "parquet", "inter"])
    p.add_argument("--k-core", type=int)
    p.add_argument("--engine", choices=["memory", "duckdb"],
                   help="duckdb: out-of-core for Parquet tables larger than memory (pip install 'raserec[ooc]')")
    p.add_argument("--output", required=True)
    p.add_argument("--overwrite", action="store_true",
                   help="replace --output even if it holds something other than a dataset")

    p = sub.add_parser("pretrain", help="stage 1: train the sequence encoder")
    _common(p)
    p.add_argument("--data", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--restart", action="store_true", help="discard an existing run in --output")
    _training(p)

    p = sub.add_parser("evaluate", help="full-ranking evaluation of a trained model")
    _common(p)
    p.add_argument("--data", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--split", choices=["valid", "test", "both"], default="both")
    p.add_argument("--topk-output", help="Parquet file for every user's top-K list")
    p.add_argument("--metrics-output", help="JSON file for the metrics")
    p.add_argument("--memory", help="memory bank folder: evaluate a fine-tuned model with retrieval")

    p = sub.add_parser("index", help="build the memory bank from a stage-1 model")
    _common(p)
    p.add_argument("--data", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--index-type", choices=["auto", "brute", "flat", "ivf", "ivfsq", "ivfpq"],
                   help="auto (default): from the bank's size, the paper's ivf below 1M entries")
    p.add_argument("--nlist", type=int, help="0: from the bank's size")
    p.add_argument("--nprobe", type=int, help="0: from the bank's size")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --output even if it holds something other than a memory bank")

    p = sub.add_parser("finetune", help="stage 2: train the retrieval-augmented module")
    _common(p)
    p.add_argument("--data", required=True)
    p.add_argument("--model", required=True, help="stage-1 model folder")
    p.add_argument("--memory", required=True, help="memory bank folder")
    p.add_argument("--output", required=True)
    p.add_argument("--restart", action="store_true", help="discard an existing run in --output")
    _training(p)

    p = sub.add_parser("memory", help="operations on a memory bank")
    msub = p.add_subparsers(dest="memory_command", required=True)
    p = msub.add_parser(
        "add", help="append new interactions without retraining or rebuilding the index",
        description="Folder form: --memory BANK --model MODEL --output NEWBANK. Registered form: --model "
                    "models:/NAME@ALIAS (or models:/NAME/VERSION) --data DATASET registers a new version whose bank "
                    "holds the interactions, gated on its validation NDCG@10 measured on DATASET.")
    _common(p)
    p.add_argument("--memory", help="memory bank folder (folder form)")
    p.add_argument("--model", required=True, help="model folder, or a registered model models:/NAME@ALIAS")
    p.add_argument("--interactions", required=True)
    p.add_argument("--format", choices=["auto", "seq", "csv", "tsv", "parquet", "inter"])
    p.add_argument("--output", help="new bank folder (folder form; may equal --memory to update in place)")
    p.add_argument("--data", help="the model's dataset folder (registered form): measures the new version")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (registered form; default: MLFLOW_TRACKING_URI)")
    p.add_argument("--strict", action="store_true", help="unknown items are an error instead of being skipped")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --output even if it holds something other than a memory bank")
    from . import pipeline

    pipeline.add_parsers(sub)  # raserec run, raserec pipeline compile|submit
    from . import tune

    tune.add_parser(sub)  # raserec tune
    from . import analyze

    analyze.add_parsers(sub)  # raserec analyze <name>, raserec report
    return parser


FLAG_KEYS = {
    "format": "data.format",
    "k_core": "data.k_core",
    "engine": "data.engine",
    "device": "device",
    "seed": "seed",
    "index_type": "memory.index_type",
    "nlist": "memory.nlist",
    "nprobe": "memory.nprobe",
}


def load(args: argparse.Namespace, base: dict | None = None):
    """The command's config: defaults, ``base`` (an artifact's own settings), --config, the flags, --set."""
    from raserec_core.config import load_config

    overrides = list(args.overrides)
    for flag, key in FLAG_KEYS.items():
        value = getattr(args, flag, None)
        if value is not None:
            overrides.append(f"{key}={value}")
    return load_config(args.config, overrides, base=base)


def retrieval_overrides(args: argparse.Namespace, cfg) -> dict:
    """The retrieval settings this command line sets with --set: a fine-tuned model reads its own
    otherwise (a config file's values do not override them)."""
    from raserec_core.config import flatten, parse_set
    from raserec_core.recommender import OVERRIDABLE

    values = flatten(cfg.to_dict())
    return {k: values[k] for k in flatten(parse_set(list(args.overrides))) if k in OVERRIDABLE}


INPUT_ARGS = ("input", "data", "model", "memory", "interactions")
OUTPUT_ARGS = ("output", "topk_output", "metrics_output")


def localize(args: argparse.Namespace, stack: contextlib.ExitStack) -> None:
    """Swap every s3:// path argument for a local stand-in: inputs are downloaded first, outputs are
    uploaded (atomically) when the command succeeds. A resumable run needs a local --output."""
    from raserec_core.storage import is_s3, local_input, local_output

    for name in INPUT_ARGS + OUTPUT_ARGS:
        value = getattr(args, name, None)
        if is_s3(value):
            cm = local_input(value) if name in INPUT_ARGS else local_output(value)
            setattr(args, name, str(stack.enter_context(cm)))


def run(args: argparse.Namespace) -> dict:
    if args.command in ("run", "pipeline"):
        from . import pipeline

        return pipeline.run(args)
    if args.command == "tune":  # its trials read their own (S3) inputs; --data stays as given
        from . import tune

        return tune.run(args)
    if args.command in ("analyze", "report"):
        from . import analyze

        return analyze.run(args)
    from raserec_core.errors import StepError
    from raserec_core.storage import is_s3

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and any(is_s3(getattr(args, n, None)) for n in OUTPUT_ARGS):
        # every worker would write its own stand-in (and rank 0's checkpoint would not be the others')
        raise StepError("a torchrun worker needs a local --output that every worker shares; --nproc-per-node "
                        "localizes an s3:// one for its workers")
    with contextlib.ExitStack() as stack:
        localize(args, stack)
        return run_step(args)


def launch(args: argparse.Namespace, argv: list[str]) -> int:
    """Run this command as ``--nproc-per-node`` workers under torch.distributed.run; their exit status.

    S3 paths are localized here, once, so every worker shares the same folders (and rank 0's checkpoint);
    the workers get the local paths (argparse keeps an option's last value) and print the result."""
    import subprocess

    from raserec_core.errors import StepError
    from raserec_core.training.distributed import launch_command

    with contextlib.ExitStack() as stack:
        localize(args, stack)
        local = [x for name in INPUT_ARGS + OUTPUT_ARGS if getattr(args, name, None)
                 for x in (f"--{name.replace('_', '-')}", getattr(args, name))]
        cmd = launch_command(args.nproc_per_node, "raserec_core.cli.main", [*argv, *local, "--nproc-per-node", "1"])
        rc = subprocess.run(cmd, check=False).returncode
        if rc != 0:  # nothing is uploaded
            raise StepError(f"{args.nproc_per_node} training workers failed (torch.distributed.run exit status {rc})")
    return rc


def run_step(args: argparse.Namespace) -> dict:
    from raserec_core import steps

    cfg = load(args)
    if args.command == "preprocess":
        return steps.preprocess(args.input, args.output, cfg, overwrite=args.overwrite)
    try:
        device = resolve_device(cfg.device)
    except ValueError as e:
        raise SystemExit(f"raserec: {e}") from None
    if args.command in ("pretrain", "finetune"):
        from raserec_core.training.distributed import process_group

        with process_group(device) as rank_device:  # joins torchrun's workers, if started by it
            if args.command == "pretrain":
                return steps.pretrain(args.data, args.output, cfg, rank_device, args.restart, args.work_root)
            return steps.finetune(args.data, args.model, args.memory, args.output, cfg, rank_device,
                                  args.restart, args.work_root)
    if args.command == "evaluate":
        return steps.evaluate(
            args.data, args.model, cfg, device, args.split, args.topk_output, args.metrics_output, args.memory,
            retrieval_overrides(args, cfg),
        )
    if args.command == "index":
        return steps.index(args.data, args.model, args.output, cfg, device, overwrite=args.overwrite)
    if args.command == "memory" and args.memory_command == "add":
        return memory_add(args, cfg, device)
    raise SystemExit(f"raserec: unknown command {args.command}")


def memory_add(args: argparse.Namespace, cfg, device) -> dict:
    """``raserec memory add`` in its folder form or, for a ``models:/`` URI, its registered form."""
    from raserec_core import memory_steps
    from raserec_core.errors import StepError
    from raserec_core.tracking.live import is_registered

    if not is_registered(args.model):
        missing = [f"--{n}" for n in ("memory", "output") if not getattr(args, n)]
        extra = [f"--{n.replace('_', '-')}" for n in ("data", "tracking_uri") if getattr(args, n)]
        if missing or extra:
            raise StepError(f"memory add --model {args.model} (a folder): needs --memory and --output"
                            + (f", takes no {' '.join(extra)}" if extra else ""))
        return memory_steps.memory_add(
            args.memory, args.model, args.interactions, args.output, cfg, device, args.strict, overwrite=args.overwrite
        )
    extra = [f"--{n}" for n in ("memory", "output") if getattr(args, n)] + (["--overwrite"] if args.overwrite else [])
    if extra:
        raise StepError(f"memory add --model {args.model}: a registered model brings its own bank and gets a new "
                        f"version; {' '.join(extra)} apply to the folder form only")
    if not args.data:
        raise StepError(f"memory add --model {args.model}: needs --data, the model's dataset folder: the new "
                        f"version's validation NDCG@10 is measured on it for the champion gate")
    tracking_uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if not tracking_uri:
        raise StepError(f"memory add --model {args.model}: needs --tracking-uri or MLFLOW_TRACKING_URI")
    return memory_steps.memory_add_registered(args.model, args.interactions, args.data, cfg, device, tracking_uri, args.strict)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    worker_rank = int(os.environ.get("RANK", "0"))  # torchrun's; 0 outside it
    wait_passively()  # before torch loads; the pipeline's step processes inherit it
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO if worker_rank == 0 else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its AVX2 probe logs a traceback at INFO
    from raserec_core.errors import RaSeRecError
    from raserec_core.redact import install_log_filter, redact, redact_tree

    install_log_filter()

    try:
        if getattr(args, "nproc_per_node", 1) > 1:
            return launch(args, argv)
        result = run(args)
    except (RaSeRecError, FileExistsError, FileNotFoundError) as exc:
        print(redact(f"raserec {args.command}: error: {exc}"), file=sys.stderr)
        return 2
    if worker_rank != 0:  # rank 0 prints the result
        return 0
    if args.command == "run":  # for a reader: the run's metrics, its model version, where to look
        from .console import summary

        sys.stdout.write(redact(summary(result)))
        return 0
    json.dump(redact_tree(result), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
