"""Stage-1 epochs of the default configuration on one GPU: CUDA-graph steps against eager ones, on Beauty.

Two runs of ``raserec pretrain`` on the same preprocessed data, seed 2020, ``--device cuda``:
- ``graph``: the default (``pretrain.cuda_graph: true``), trained to its early stop, then evaluated as
  every stage-1 record is: its test metrics compare with the CPU run ``beauty-fast-2020``;
- ``eager``: ``pretrain.cuda_graph=false``, the same steps launched one kernel at a time, 3 epochs;
Each record keeps every epoch's training and validation seconds (the loop's own timers, from
``history.json``) and the wall time of the command. Finishes in a few minutes on one H200:

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


def pretrain(data: Path, out: Path, device: str, overrides: list[str]) -> dict:
    from raserec_core.cli.main import main

    args = ["pretrain", "--data", str(data), "--output", str(out), "--seed", "2020", "--device", device]
    for item in overrides:
        args += ["--set", item]
    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the command's metrics JSON; the record keeps them
            rc = main(args)
    except Exception:  # a failed variant is a result too; the others still run
        return {"command": "raserec " + " ".join(args), "error": traceback.format_exc()}
    record = {"command": "raserec " + " ".join(args), "rc": rc, "wall_seconds": round(time.perf_counter() - t0, 2)}
    history = json.loads((out / "history.json").read_text())
    record["epochs"] = [{k: r[k] for k in ("epoch", "train_time", "valid_time", "valid/ndcg@10", "graph_replays") if k in r}
                        for r in history]
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
    ap.add_argument("--set", action="append", default=[], dest="overrides", help="KEY=VALUE for both runs")
    args = ap.parse_args()

    sys.path.insert(0, str(Path(__file__).parent))
    import torch
    from records import environment  # this folder

    from raserec_core.cli.main import main as cli

    work = Path(args.work)
    data = work / "data"
    if not (data / "stats.json").exists():
        assert cli(["preprocess", "--input", args.input, "--output", str(data)]) == 0
    result = {"commit": args.commit, "torch": torch.__version__, **environment(), "runs": {}}
    for name, overrides in (("graph", []), ("eager", ["pretrain.cuda_graph=false", "pretrain.epochs=3"])):
        result["runs"][name] = pretrain(data, work / name, args.device, [*overrides, *args.overrides])
        Path(args.output).write_text(json.dumps(result, indent=1) + "\n")  # each run recorded as it ends
        run = result["runs"][name]
        keys = ("test/hr@10", "test/ndcg@10", "test/seen_kept/hr@10", "test/seen_kept/ndcg@10")
        print(name, {k: v for k, v in run.items() if k not in ("epochs", "metrics")},
              {k: round(v, 4) for k, v in run.get("metrics", {}).items() if k in keys})
        for e in result["runs"][name].get("epochs", []):
            print(name, e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
