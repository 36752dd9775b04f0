"""The drift experiment: does adding new interactions to the memory bank stand in for retraining?

RaSeRec's abstract claims its memory bank copes with preference drift: new interactions become memories
without retraining the model. This benchmark measures the claim on Beauty and Sports with the default
configuration (configs/fast.yaml), 3 seeds.

Design (``raserec_core.data.holdout``):
- A seeded 20% of all users drift (``--user-fraction``), drawn among users with at least 6 items. Each
  is set back in time: it keeps its oldest items i_0..i_{k-1} and loses the newest 40% (``--share``,
  rounded, at least 1) of its training prefix i_0..i_{n-3} together with its validation item i_{n-2}.
  Those items are the held-out interactions; the test item i_{n-1} is neither kept nor held out.
- The stale dataset is the usual leave-one-out split of the cut sequences (everyone else keeps the whole
  sequence), under the full dataset's user and item index: the stale model scores the same items, and
  the bank maps the held-out raw ids back to the same indices.
- Evaluation (HR@10 / NDCG@10, seen items excluded and kept): every path ranks the full dataset's test
  item of each user from the same input, the whole history i_0..i_{n-2}; what drifts is the model and
  the bank. ``drift/`` keys are the drift users', ``control/`` keys everyone else's (their data is the
  same in both datasets; they are shorter on average, since short users cannot drift, so compare paths
  within a group, not groups).

Paths, per dataset and seed (the same seed for the user draw and for training):
- (a) ``stale``: pretrain, index and fine-tune on the stale dataset; the bank it serves from holds every
  interaction known at the cut (training memories, then the validation ones and the drift users' last
  known item, as the protocol's test view adds validation memories; one index build, saved as
  ``stale-memory-cut``).
- (b) ``memory_add``: ``raserec memory add`` of the held-out interactions into that bank (vectors added,
  the index's quantizer kept, no retraining); the same stale model reads the grown bank. Its memories
  are now every interaction before each user's test item, as in (c).
- (c) ``full``: the default configuration trained on the full dataset, the runs ``{dataset}-fast-{seed}``
  and ``{dataset}-fast-{seed}-raserec-fast`` of stage1.py / stage2.py (same seed, same config), reused
  when their folders are in ``--work``, else trained here with the same commands. The held-out
  interactions are part of its training prefixes (and validation items), and its targets are the same.
  Its bank is the protocol's test view (training plus validation memories).

Each record of (a) and (c) also holds its stage-1 encoder's metrics alone (``encoder_metrics``: how much
of a gap is the model's, not the bank's). Before evaluating, the script checks that (b)'s memories are
(c)'s row for row (user, position, target, prefix length): an add that misplaced an interaction, or a
test item among the memories, stops the run.

Cost per path (``seconds``): training-loop seconds of both stages (``model.json``) plus the index build,
for (a) and (c), from stage1.jsonl / stage2.jsonl for a reused (c); the wall time of the ``memory add``
command (process start and loading included) for (b). Records go to results/drift.jsonl, one per path per
(dataset, seed); recorded ones are skipped, interrupted training resumes.

    python benchmarks/drift.py --datasets beauty sports --seeds 2020 2021 2022
    python benchmarks/drift.py --plot            # plots/drift.png and the seed-mean table from the records only

A small dry run (about 2.5 minutes on two CPU cores): the first 6,000 lines of Beauty (3,546 users after
the 5-core filter), 2 + 1 epochs, 16 IVF lists (a bank this small cannot train 128), records and plot
outside the repository:

    mkdir -p /tmp/drift-dev/raw && head -6000 ../shared/data/beauty.txt > /tmp/drift-dev/raw/beauty.txt
    python benchmarks/drift.py --datasets beauty --seeds 2020 --data-root /tmp/drift-dev/raw \\
        --work /tmp/drift-dev/runs --results /tmp/drift-dev/drift.jsonl --plot-output /tmp/drift-dev/drift.png \\
        --set pretrain.epochs=2 --set finetune.epochs=1 --set memory.nlist=16
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from records import append_jsonl, environment, load_jsonl  # this folder
from stage1 import FAST
from stage1 import RESULTS as STAGE1
from stage2 import RESULTS as STAGE2
from stage2 import sh

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "drift.jsonl"
PLOT = HERE / "plots" / "drift.png"
PATHS = ("stale", "memory_add", "full")
LABELS = {"stale": "(a) stale", "memory_add": "(b) stale + memory add", "full": "(c) full retrain"}


def build_once(bank: Path, build) -> float | None:
    """Run ``build()`` unless ``bank`` is built; its seconds, kept beside it for a resumed run (None for a
    bank built elsewhere)."""
    seconds_file = bank.with_name(bank.name + ".seconds")
    if (bank / "manifest.json").exists():
        return float(seconds_file.read_text()) if seconds_file.exists() else None
    t0 = time.time()
    build()
    seconds = round(time.time() - t0, 1)
    seconds_file.write_text(f"{seconds}\n")
    return seconds


def train(data: Path, s1: Path, mem: Path, s2: Path, flags: list[str], log: Path) -> tuple[dict, list[str]]:
    """Pretrain, index, fine-tune (each resumed or skipped when done, as stage1.py / stage2.py do).
    Returns the seconds per step (the loops' own for training; None for an index built before) and the commands."""
    pre = ["raserec", "pretrain", "--data", str(data), "--output", str(s1), *flags]
    idx = ["raserec", "index", "--data", str(data), "--model", str(s1), "--output", str(mem), *flags]
    ft = ["raserec", "finetune", "--data", str(data), "--model", str(s1), "--memory", str(mem), "--output", str(s2), *flags]
    sh(pre, log)
    index_seconds = build_once(mem, lambda: sh(idx, log))
    sh(ft, log)
    seconds = {
        "pretrain": round(json.loads((s1 / "model.json").read_text())["train_seconds"], 1),
        "index": index_seconds,
        "finetune": round(json.loads((s2 / "model.json").read_text())["train_seconds"], 1),
    }
    return seconds, [" ".join(c) for c in (pre, idx, ft)]


def recorded_full_seconds(base: str, f1: Path, f2: Path) -> dict | None:
    """(c)'s seconds from the stage-1 and stage-2 records of the reused runs, when both are recorded and
    the folders hold those very runs (their metrics are the records')."""
    s1, s2 = load_jsonl(STAGE1).get(base), load_jsonl(STAGE2).get(f"{base}-raserec-fast")
    if s1 is None or s2 is None:
        return None
    same = all(json.loads((f / "metrics.json").read_text()) == r["metrics"] for f, r in ((f1, s1), (f2, s2)))
    return {"pretrain": s1["train_seconds"], "index": s2["index_wall_seconds"], "finetune": s2["train_seconds"]} if same else None


def write_held_out(inter, path: Path) -> None:
    """The held-out rows as ``raserec memory add`` reads them (default columns user_id, item_id, timestamp)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"user_id": pa.array(inter.user.tolist(), pa.string()),
                      "item_id": pa.array(inter.item.tolist(), pa.string()), "timestamp": pa.array(inter.time)})
    pq.write_table(table, path)


def cut_bank(stale, h, s1: Path, mem: Path, out: Path, device) -> None:
    """The stale system's bank at the cut: training memories plus the validation ones and the drift users'
    last known item (the stale dataset's test instances of drift users), with one index build."""
    from raserec_core.data.split import take
    from raserec_core.memory.bank import load_bank, save_bank
    from raserec_core.memory.build import extend_with_splits
    from raserec_core.models.checkpoint import load_encoder

    encoder, _ = load_encoder(s1, device)
    test = stale.splits["test"]
    known = replace(stale, splits={"valid": stale.splits["valid"],
                                   "test": take(test, np.flatnonzero(np.isin(test.user, h.drift_users)))})
    bank = extend_with_splits(load_bank(mem), encoder, known, ("valid", "test"), device)
    save_bank(bank, out, replace_existing=True)


def memory_rows(bank_dir: Path, extra=None) -> np.ndarray:
    """(user, position, target, length) of every memory of a bank, plus the instances ``extra``, sorted."""
    from raserec_core.memory.bank import load_bank

    e = load_bank(bank_dir).entries
    cols = [e.user.numpy(), e.position.numpy(), e.target.numpy(), e.length.numpy()]
    if extra is not None:
        cols = [np.concatenate([c, x]) for c, x in zip(cols, (extra.user, extra.position, extra.target, extra.lengths))]
    rows = np.stack(cols, 1)
    return rows[np.lexsort(rows.T[::-1])]


def evaluate(model: Path, memory: Path, groups: dict, cfg, device, test_view=None) -> dict:
    """Metrics of the fine-tuned ``model`` over the bank ``memory`` (or of a stage-1 ``model`` alone, with
    ``memory`` None) on each group of test queries; with ``test_view`` (a dataset) its validation memories
    are added first (the protocol's test view)."""
    from raserec_core.data.batching import InstanceTensors
    from raserec_core.evaluation.split import encoder_scores, evaluate_split, recommender_scores
    from raserec_core.models.checkpoint import load_encoder
    from raserec_core.recommender import Recommender

    if memory is None:
        encoder, _ = load_encoder(model, device)

        def scores(t):
            return encoder_scores(encoder, t, device)
    else:
        rec = Recommender.load(model, memory, device)
        if test_view is not None:
            rec = rec.for_test(test_view, device)

        def scores(t):
            return recommender_scores(rec, rec.precompute(t, device), device)
    metrics = {}
    for name, inst in groups.items():
        t = InstanceTensors(inst)
        metrics |= evaluate_split(scores(t), t, f"{name}/", cfg.eval)[0]
    return metrics


def prepare(dataset: str, seed: int, args) -> tuple:
    """The full dataset (preprocessed as stage1.py does) and its hold-out, written to the seed's folder."""
    from raserec_core.data import read_dataset, write_dataset
    from raserec_core.data.holdout import hold_out_newest

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data_dir = work / "data" / dataset
    if not (data_dir / "stats.json").exists():
        sh(["raserec", "preprocess", "--input", str(Path(args.data_root) / f"{dataset}.txt"), "--output", str(data_dir)],
           work / f"preprocess-{dataset}.log")
    full = read_dataset(data_dir)
    h = hold_out_newest(full, args.user_fraction, args.share, seed)
    d = work / "drift" / f"{dataset}-{seed}-u{args.user_fraction:g}-s{args.share:g}"
    d.mkdir(parents=True, exist_ok=True)
    if not (d / "data" / "stats.json").exists():
        write_dataset(h.stale, d / "data")
    elif read_dataset(d / "data", verify=False).fingerprint != h.stale.fingerprint:
        raise SystemExit(f"{d / 'data'}: holds another stale dataset than this hold-out gives; remove it")
    write_held_out(h.held_out, d / "held_out.parquet")
    return data_dir, full, h, d


def run(dataset: str, seed: int, args, done: dict) -> None:
    from raserec_core.config import load_config
    from raserec_core.data.split import take
    from raserec_core.device import resolve_device

    work = Path(args.work)
    sets = [x for item in args.set for x in ("--set", item)]
    flags = ["--seed", str(seed), *FAST, *sets, "--device", args.device]
    cfg = load_config(FAST[1], args.set)
    device = resolve_device(args.device)
    data_dir, full, h, d = prepare(dataset, seed, args)
    log = d / "drift.log"

    # (a) the stale model, and the bank it serves from at the cut.
    s1, mem, s2, mem_cut = d / "stale", d / "stale-memory", d / "stale-raserec", d / "stale-memory-cut"
    stale_seconds, stale_cmds = train(d / "data", s1, mem, s2, flags, log)
    cut_seconds = build_once(mem_cut, lambda: cut_bank(h.stale, h, s1, mem, mem_cut, device))
    parts = [x for x in (stale_seconds["index"], cut_seconds) if x is not None]
    stale_seconds["index"] = round(sum(parts), 1) if parts else None
    # (b) the held-out interactions added to that bank (redone when not recorded: it takes seconds).
    mem_add = d / "stale-memory-added"
    add_cmd = ["raserec", "memory", "add", "--memory", str(mem_cut), "--model", str(s2), "--interactions",
               str(d / "held_out.parquet"), "--output", str(mem_add), *FAST, *sets, "--device", args.device]
    add_seconds = round(sh(add_cmd, log), 1)
    entries = [json.loads((m / "manifest.json").read_text())["entries"] for m in (mem_cut, mem_add)]
    # (c) the full model: the stage-1/stage-2 runs of the same seed and config.
    base = f"{dataset}-fast-{seed}"
    f1, fmem, f2 = work / base, work / f"{base}-memory-ivf", work / f"{base}-raserec-fast"
    reused = (f2 / "metrics.json").exists() and (fmem / "manifest.json").exists()
    full_seconds, full_cmds = train(data_dir, f1, fmem, f2, flags, work / f"{base}.log")
    full_source = "this run"
    if reused:
        recorded = recorded_full_seconds(base, f1, f2)
        full_seconds, full_source = (recorded, "stage1.jsonl + stage2.jsonl") if recorded else (full_seconds, "model.json")

    # The design's claim: after the add, the stale model reads the very memories the full model reads
    # (every interaction before each user's test item, with the same prefixes); only the keys differ.
    if not np.array_equal(memory_rows(mem_add), memory_rows(fmem, full.splits["valid"])):
        raise SystemExit(f"{mem_add}: its memories are not those of {fmem} plus the validation ones")

    test = full.splits["test"]
    drifting = np.isin(test.user, h.drift_users)
    groups = {"drift": take(test, np.flatnonzero(drifting)), "control": take(test, np.flatnonzero(~drifting))}
    common = {
        "dataset": dataset, "seed": seed, "user_fraction": args.user_fraction, "share": args.share,
        "drift_users": len(h.drift_users), "control_users": int((~drifting).sum()),
        "held_out_interactions": len(h.held_out), "full_fingerprint": full.fingerprint,
        "stale_fingerprint": h.stale.fingerprint, "sets": args.set, **environment(),
    }
    # path -> (fine-tuned model, bank, test view, stage-1 encoder, seconds, their source, commands)
    paths = {
        "stale": (s2, mem_cut, None, s1, stale_seconds, "model.json; index and cut bank timed here", stale_cmds),
        "memory_add": (s2, mem_add, None, None, {"memory_add": add_seconds}, "memory add command's wall time",
                       [" ".join(add_cmd)]),
        "full": (f2, fmem, full, f1, full_seconds, full_source, full_cmds),
    }
    for path, (model, memory, test_view, encoder, seconds, source, cmds) in paths.items():
        name = f"{dataset}-{seed}-{path}"
        if name in done:
            continue
        metrics = evaluate(model, memory, groups, cfg, device, test_view)
        record = {"name": name, "path": path, **common, "seconds": seconds,
                  "seconds_total": round(sum(v for v in seconds.values() if v is not None), 1),
                  "seconds_source": source, "commands": cmds, "metrics": metrics}
        if encoder is not None:  # the stage-1 encoder alone: how much of the gap is the model's, not the bank's
            record["encoder_metrics"] = evaluate(encoder, None, groups, cfg, device)
        if path == "memory_add":
            record["bank_entries_before_after"] = entries
        append_jsonl(Path(args.results), record)
        done[name] = record
        print(f"{name}: drift hr@10 {metrics['drift/hr@10']:.4f} ndcg@10 {metrics['drift/ndcg@10']:.4f} | control hr@10 "
              f"{metrics['control/hr@10']:.4f} ndcg@10 {metrics['control/ndcg@10']:.4f} | {record['seconds_total']} s", flush=True)


def plot(records: dict, out: Path) -> None:
    """HR@10 and NDCG@10 (seen items excluded) per path and dataset, drift users and control: the seed
    mean as a bar, each seed as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in records.values()))
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    colors = {"stale": "#bbbbbb", "memory_add": "#4c72b0", "full": "#dd8452"}
    for ax, metric in zip(axes, ("hr@10", "ndcg@10")):
        ticks, labels = [], []
        for g, (dataset, group) in enumerate((d, grp) for d in datasets for grp in ("drift", "control")):
            for p, path in enumerate(PATHS):
                vals = [r["metrics"][f"{group}/seen_excluded/{metric}"] for r in records.values()
                        if r["dataset"] == dataset and r["path"] == path]
                if not vals:
                    continue
                x = g * (len(PATHS) + 1) + p
                ax.bar(x, np.mean(vals), color=colors[path], label=LABELS[path] if g == 0 else None)
                ax.plot([x] * len(vals), vals, "k.", markersize=3)
            ticks.append(g * (len(PATHS) + 1) + 1)
            labels.append(f"{dataset}\n{group}")
        ax.set_xticks(ticks, labels, fontsize=8)
        ax.set_title(f"{metric.upper()}, seen items excluded", fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
    axes[0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"wrote {out}", flush=True)


def _cell(records: list[dict], key: str, group: str, metric: str, protocol: str = "seen_excluded") -> str:
    vals = [r[key][f"{group}/{protocol}/{metric}"] for r in records]
    return f"{np.mean(vals):.4f}" + (f" ± {np.std(vals, ddof=1):.4f}" if len(vals) > 1 else "")


def table(records: dict) -> str:
    """Seed means per dataset and path, seen items excluded (± the sample std over seeds), in Markdown, and
    the drift users' means with seen items kept: the figures RESULTS.md quotes. The encoder rows are (a)'s and (c)'s stage-1 models alone."""
    out = []
    for dataset in dict.fromkeys(r["dataset"] for r in records.values()):
        by = {p: [r for r in records.values() if r["dataset"] == dataset and r["path"] == p] for p in PATHS}
        seeds = sorted({r["seed"] for rs in by.values() for r in rs})
        out += [f"{dataset}, seeds {', '.join(map(str, seeds))}:", "",
                "| path | seeds | seconds | drift users HR@10 / NDCG@10 | other users HR@10 / NDCG@10 |",
                "|---|---|---|---|---|"]
        rows = [(LABELS[p], by[p], "metrics") for p in PATHS]
        rows[1:1] = [("stale encoder alone", by["stale"], "encoder_metrics")]
        rows.append(("full encoder alone", by["full"], "encoder_metrics"))
        for label, rs, key in rows:
            rs = [r for r in rs if key in r]
            if not rs:
                continue
            cost = f"{np.mean([r['seconds_total'] for r in rs]):.1f}" if key == "metrics" else ""
            cells = [" / ".join(_cell(rs, key, g, m) for m in ("hr@10", "ndcg@10")) for g in ("drift", "control")]
            out.append(f"| {label} | {len(rs)} | {cost} | {cells[0]} | {cells[1]} |")
        kept = ", ".join(f"{LABELS[p]} " + " / ".join(_cell(by[p], "metrics", "drift", m, "seen_kept") for m in ("hr@10", "ndcg@10"))
                         for p in PATHS if by[p])
        out += ["", f"Seen items kept, drift users: {kept}.", ""]
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["beauty", "sports"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[2020, 2021, 2022])
    ap.add_argument("--data-root", default=os.environ.get("RASEREC_DATA", str(HERE.parent.parent / "shared" / "data")))
    ap.add_argument("--work", default=str(HERE / "runs"))
    ap.add_argument("--results", default=str(RESULTS))
    ap.add_argument("--plot-output", default=str(PLOT))
    ap.add_argument("--plot", action="store_true", help="only redraw the plot from the records")
    ap.add_argument("--user-fraction", type=float, default=0.2, help="share of all users that drift")
    ap.add_argument("--share", type=float, default=0.4, help="share of a drift user's training prefix held out")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for every training command (e.g. pretrain.epochs=2 for a dry run)")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    args = ap.parse_args()
    results = Path(args.results)
    done = load_jsonl(results)
    if not args.plot:
        for dataset in args.datasets:
            for seed in args.seeds:
                if all(f"{dataset}-{seed}-{p}" in done for p in PATHS):
                    continue
                run(dataset, seed, args, done)
    if done:
        plot(done, Path(args.plot_output))
        print(table(done), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
