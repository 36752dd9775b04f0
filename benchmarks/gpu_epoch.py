"""Stage-1 epochs of the default configuration on one GPU: CUDA-graph steps against eager ones.

Runs of ``raserec pretrain`` on one preprocessed dataset, ``--device cuda``, each recorded as it ends:
- ``graph-<seed>``: the default (``pretrain.cuda_graph: true``), trained to its early stop and evaluated
  as every stage-1 record is, so its test metrics compare with the CPU runs ``<dataset>-fast-<seed>``;
- ``eager``: ``pretrain.cuda_graph=false``, the same steps launched one kernel at a time, for
  ``--eager-epochs`` epochs of the first seed (0: none);
- with ``--finetune``: ``raserec index`` and ``raserec finetune`` (stage 2, the default RAM) on the first
  seed's encoder, ``finetune-<seed>``: the whole default model on the GPU.
Each record keeps every epoch's training and validation seconds (the loop's own timers, from
``history.json``) and the wall time of the commands. A few minutes on one H200:

    python benchmarks/gpu_epoch.py --input ../shared/data/beauty.txt --work /tmp/gpu-epoch \\
        --output benchmarks/results/gpu_epoch.json --commit $(git rev-parse --short HEAD)

A dry run of the script on the CPU: ``--device cpu --set model.hidden_size=16 --set pretrain.epochs=1``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
import traceback
from pathlib import Path


def run(args: list[str], out: Path) -> dict:
    """One CLI command; its record with the epochs of ``out/history.json`` and the metrics it wrote."""
    from raserec_core.cli.main import main

    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the command's metrics JSON; the record keeps them
            rc = main(args)
    except Exception:  # a failed variant is a result too; the others still run
        return {"command": "raserec " + " ".join(args), "error": traceback.format_exc()}
    record = {"command": "raserec " + " ".join(args), "rc": rc, "wall_seconds": round(time.perf_counter() - t0, 2)}
    if (out / "history.json").exists():
        history = json.loads((out / "history.json").read_text())
        record["epochs"] = [{k: r[k] for k in ("epoch", "train_time", "valid_time", "valid/ndcg@10", "graph_replays")
                             if k in r} for r in history]
    if (out / "metrics.json").exists():
        record["metrics"] = json.loads((out / "metrics.json").read_text())
        record.update({k: v for k, v in json.loads((out / "model.json").read_text()).items()
                       if k in ("best_epoch", "epochs_run", "train_seconds")})
    return record


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", required=True, help="beauty.txt")
    ap.add_argument("--work", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--commit", default="")
    ap.add_argument("--device", default="cuda", choices=("cpu", "cuda"))
    ap.add_argument("--seeds", nargs="+", type=int, default=[2020])
    ap.add_argument("--eager-epochs", type=int, default=3)
    ap.add_argument("--finetune", action="store_true")
    ap.add_argument("--set", action="append", default=[], dest="overrides", help="KEY=VALUE for every run")
    args = ap.parse_args()

    sys.path.insert(0, str(Path(__file__).parent))
    import torch
    from records import environment  # this folder

    from raserec_core.cli.main import main as cli

    work = Path(args.work)
    data = work / "data"
    if not (data / "stats.json").exists():
        with contextlib.redirect_stdout(io.StringIO()):
            assert cli(["preprocess", "--input", args.input, "--output", str(data)]) == 0
    sets = [x for item in args.overrides for x in ("--set", item)]
    common = ["--data", str(data), "--device", args.device]
    first = args.seeds[0]
    plan = [(f"graph-{s}", ["pretrain", *common, "--output", str(work / f"graph-{s}"), "--seed", str(s), *sets])
            for s in args.seeds]
    if args.eager_epochs:
        plan.append(("eager", ["pretrain", *common, "--output", str(work / "eager"), "--seed", str(first), *sets,
                               "--set", "pretrain.cuda_graph=false", "--set", f"pretrain.epochs={args.eager_epochs}"]))
    if args.finetune:
        enc, mem = work / f"graph-{first}", work / f"memory-{first}"
        plan.append((f"index-{first}", ["index", *common, "--model", str(enc), "--output", str(mem), "--seed", str(first), *sets]))
        plan.append((f"finetune-{first}", ["finetune", *common, "--model", str(enc), "--memory", str(mem),
                                           "--output", str(work / f"finetune-{first}"), "--seed", str(first), *sets]))
    result = {"commit": args.commit, "torch": torch.__version__, **environment(), "input": args.input, "runs": {}}
    keys = ("test/hr@10", "test/ndcg@10", "test/seen_kept/hr@10", "test/seen_kept/ndcg@10")
    for name, cmd in plan:
        out = Path(cmd[cmd.index("--output") + 1])
        result["runs"][name] = record = run(cmd, out)
        Path(args.output).write_text(json.dumps(result, indent=1) + "\n")  # each run recorded as it ends
        epochs = record.get("epochs", [])
        print(name, {k: v for k, v in record.items() if k not in ("epochs", "metrics", "command")},
              {k: round(v, 4) for k, v in record.get("metrics", {}).items() if k in keys},
              "train s per epoch:", [round(e["train_time"], 2) for e in epochs])
    return 0


if __name__ == "__main__":
    sys.exit(main())
