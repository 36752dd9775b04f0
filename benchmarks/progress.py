"""Copy the per-epoch history of unfinished benchmark runs into results/progress/ (tracked), so that
partial results survive a session that ends mid-run.

    python benchmarks/progress.py [--work benchmarks/runs]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def model_selection_metric(run: Path) -> str:
    """The metric the run early-stops on: ``finetune.valid_metric`` for stage 2 (its inputs name a memory
    bank), ``pretrain.valid_metric`` for stage 1."""
    import yaml

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    inputs = json.loads((run / "inputs.json").read_text()) if (run / "inputs.json").exists() else {}
    return cfg["finetune" if "memory" in inputs else "pretrain"]["valid_metric"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=str(HERE / "runs"))
    args = ap.parse_args()
    out = HERE / "results" / "progress"
    unfinished = 0
    for history in sorted(Path(args.work).glob("*/history.json")):
        run = history.parent
        partial = out / f"{run.name}.json"
        if (run / "metrics.json").exists():
            partial.unlink(missing_ok=True)  # finished: its record is in results/stage1.jsonl or stage2.jsonl
            continue
        unfinished += 1
        records = json.loads(history.read_text())
        keep = ("epoch", "loss", "train_time", "valid_time", "valid/hr@10", "valid/ndcg@10", "valid/mrr@10")
        out.mkdir(parents=True, exist_ok=True)
        tmp = partial.with_suffix(".tmp")
        tmp.write_text(json.dumps({
            "run": run.name,
            "config": (run / "config.yaml").read_text() if (run / "config.yaml").exists() else None,
            "epochs": [{k: r[k] for k in keep if k in r} for r in records],
        }, indent=1) + "\n")
        tmp.replace(partial)
        metric = f"valid/{model_selection_metric(run)}"
        best = max(records, key=lambda r: r.get(metric, 0))
        print(f"{run.name}: {len(records)} epochs, best {metric} {best.get(metric)} at epoch {best['epoch']}")
    if not unfinished:
        print(f"no unfinished run under {args.work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
