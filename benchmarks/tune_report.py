"""A `raserec tune` study as a tracked record and a Markdown table (RESULTS.md, "Tuning study").

Reads the study folder (Optuna's SQLite, each trial's history.json and metrics.json), writes every
trial (values, state, epochs, best validation value, test metrics of complete trials) to --output and
prints the table, best validation first. Run it while the study runs too: unfinished trials show as such.

    python benchmarks/tune_report.py --study-dir benchmarks/runs/tune-beauty-2020 \
        --output benchmarks/results/tune_beauty_2020.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from records import environment  # this folder

SHORT = {"pretrain.lr": "lr", "model.n_layers": "blocks", "model.hidden_dropout": "dropout",
         "model.attn_dropout": "attn dropout", "model.layer": "layer"}


def trial_rows(study_dir: Path) -> list[dict]:
    import optuna

    from raserec_core.tuning.trial import read_history

    study = optuna.load_study(study_name="raserec", storage=f"sqlite:///{(study_dir / 'study.db').resolve()}")
    spec = json.loads((study_dir / "study.json").read_text())
    metric = spec["metric"]
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs["retry_of"]: t.number for t in trials if "retry_of" in t.user_attrs}
    rows = []
    for t in trials:
        if t.number in retried:  # a trial a stopped tuner left running: its retry resumed it, same folder
            continue
        run_dir = study_dir / t.user_attrs.get("run_dir", f"trials/{t.number}")
        history = read_history(run_dir)
        curve = [r[metric] for r in history]
        rows.append({
            "trial": t.number, "state": t.state.name.lower(), "params": t.params,
            "resumed_from": t.user_attrs.get("retry_of"), "rerun_of_pruned": t.user_attrs.get("rerun_of_pruned"),
            "epochs": len(history), "best_valid": max(curve) if curve else None,
            "value": t.value,  # the objective (complete trials): valid metric of the selected epoch
            "test": {k: v for k, v in t.user_attrs.get("metrics", {}).items() if k.startswith("test/")},
            "curve": curve,
            "seconds": (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start else None,
        })
    return rows


def replay(curves: dict[int, list[float]], warmup: int, patience: int) -> dict[int, int | None]:
    """For each curve, the epoch at which `raserec tune`'s pruner would stop it had every other curve
    finished before it (None: never)."""
    import optuna

    from raserec_core.tuning.study import make_pruner, pruned_at

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return {n: pruned_at(make_pruner("median", warmup, patience), [c for m, c in curves.items() if m != n], curve)
            for n, curve in curves.items()}


def table(rows: list[dict], metric: str) -> str:
    keys = [k for k in SHORT if any(k in r["params"] for r in rows)]
    head = ["trial", *(SHORT[k] for k in keys), "state", "epochs", f"best {metric}",
            "test HR@10 / NDCG@10 (seen excl.)", "test, seen kept"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def fmt(v):
        return f"{v:.2g}" if isinstance(v, float) and v < 0.01 else (f"{v:.1f}" if isinstance(v, float) else str(v))

    order = sorted(rows, key=lambda r: -(r["best_valid"] or 0))
    for r in order:
        t = r["test"]
        test = f"{t['test/seen_excluded/hr@10']:.4f} / {t['test/seen_excluded/ndcg@10']:.4f}" if t else ""
        kept = f"{t['test/seen_kept/hr@10']:.4f} / {t['test/seen_kept/ndcg@10']:.4f}" if t else ""
        best = f"{r['best_valid']:.4f}" if r["best_valid"] is not None else ""
        state = r["state"] + (f" (rerun of pruned {r['rerun_of_pruned']})" if r.get("rerun_of_pruned") is not None else "")
        cells = [str(r["trial"]), *(fmt(r["params"].get(k, "")) for k in keys), state, str(r["epochs"]), best,
                 test, kept]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--study-dir", required=True, type=Path)
    ap.add_argument("--output", type=Path, help="the record (JSON) to write")
    ap.add_argument("--replay", nargs=2, type=int, action="append", metavar=("WARMUP", "PATIENCE"),
                    help="also print where the pruner with these settings would stop each complete trial")
    args = ap.parse_args()
    spec = json.loads((args.study_dir / "study.json").read_text())
    rows = trial_rows(args.study_dir)
    if args.output:
        record = {"study_dir": str(args.study_dir), "data": spec["data"], "space": spec["space"],
                  "overrides": spec["overrides"], "config": spec["config"], "metric": spec["metric"],
                  **environment(), "trials": rows}
        args.output.write_text(json.dumps(record, indent=1, sort_keys=True, default=str) + "\n")
    print(table(rows, spec["metric"]))
    curves = {r["trial"]: r["curve"] for r in rows if r["state"] == "complete"}
    for warmup, patience in args.replay or []:
        stops = replay(curves, warmup, patience)
        print(f"\nwarmup {warmup}, patience {patience}: stopped at epoch "
              + ", ".join(f"trial {n}: {e if e else '-'} of {len(curves[n])}" for n, e in stops.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
