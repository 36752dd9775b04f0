"""Stage-2 reproduction: RaSeRec on top of the stage-1 encoders of benchmarks/stage1.py.

For each (dataset, backbone, seed, variant) whose stage-1 run is recorded in results/stage1.jsonl:
`raserec index` (memory bank over the training instances) then `raserec finetune`. Results are
appended, as each run finishes, to results/stage2.jsonl with the exact commands, the stage-1 metrics of
the same encoder and wall times. Finished runs are skipped; an interrupted fine-tuning resumes.

Variants: `paper` (the released setting: beta 1.0, IVF nprobe 1), `beta0.5` (both channels),
`exact` (Flat index: exact retrieval), `fast` (the default configuration, configs/fast.yaml: seen items
excluded), `fastk10` (the default with 10 retrieved memories instead of 20), `fastsel` (the default, its fallback to the
encoder alone named: for runs recorded before it), `fastseen` (the default with the learned seen-item offset,
`finetune.history_bias=learned`), `fastcal` (the default with the offset calibrated after training,
`finetune.history_bias=calibrated`).

    python benchmarks/stage2.py [--only NAME ...] [--work benchmarks/runs]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from records import append_jsonl, environment, gain, load_jsonl  # this folder

HERE = Path(__file__).resolve().parent
STAGE1 = HERE / "results" / "stage1.jsonl"
RESULTS = HERE / "results" / "stage2.jsonl"

CONFIGS = HERE.parent / "configs"
# variant -> (index flags, finetune flags, config file of both commands)
VARIANTS = {
    "paper": ([], [], CONFIGS / "raserec.yaml"),
    "beta0.5": ([], ["--set", "finetune.beta=0.5"], CONFIGS / "raserec.yaml"),
    "exact": (["--index-type", "flat"], [], CONFIGS / "raserec.yaml"),
    "fast": ([], [], CONFIGS / "fast.yaml"),  # the default configuration's stage 2, seen items excluded
    "fastk10": ([], ["--set", "finetune.top_k=10"], CONFIGS / "fast.yaml"),  # the sensitivity analysis's best top-K
    # The default with the fallback to the encoder alone named (finetune.encoder_fallback, the default from
    # 2026-12-04 on): for encoders whose "fast" run was recorded before it and falls back.
    "fastsel": ([], ["--set", "finetune.encoder_fallback=true"], CONFIGS / "fast.yaml"),
    # The default with the RAM's learned offset for the items of the query's own sequence (models/seen.py).
    "fastseen": ([], ["--set", "finetune.history_bias=learned"], CONFIGS / "fast.yaml"),
    # The default with the offset calibrated on the training queries after the RAM is trained.
    "fastcal": ([], ["--set", "finetune.history_bias=calibrated"], CONFIGS / "fast.yaml"),
}

# (stage-1 run name, variant), in the order they should run.
PLAN = [
    ("beauty-duorec-2020", "paper"),
    ("beauty-sasrec-2020", "paper"),
    ("beauty-gru4rec-2020", "paper"),
    ("beauty-duorec-2020", "beta0.5"),
    ("beauty-duorec-2020", "exact"),
    ("beauty-duorec_random-2020", "paper"),
    ("beauty-duorec-2021", "paper"),
    ("beauty-duorec-2022", "paper"),
    ("sports-duorec-2020", "paper"),
    ("sports-duorec-2021", "paper"),
    ("sports-duorec-2022", "paper"),
    ("beauty-fast-2020", "fast"),
    ("beauty-fast256-2020", "fast"),
    ("beauty-fast-2021", "fast"),
    ("beauty-fast-2022", "fast"),
    ("sports-fast-2020", "fast"),
    ("sports-fast-2021", "fast"),
    ("sports-fast-2022", "fast"),
    ("sports-fast128-2020", "fast"),
    ("beauty-fast-2020", "fastk10"),
    ("beauty-fast-2021", "fastk10"),
    ("beauty-fast-2022", "fastk10"),
    ("sports-fast-2022", "fastk10"),
    ("beauty-fastligr-2021", "fast"),
    ("beauty-fastligr-2022", "fast"),
    ("sports-fastligr-2022", "fast"),
    ("beauty-fastligr-2020", "fast"),
    ("beauty-fasttune2-2020", "fast"),
    ("sports-fastligr-2020", "fast"),
    ("sports-fastligr-2021", "fast"),
    ("beauty-fastbsa-2020", "fast"),
    ("sports-fastbsa-2020", "fast"),
    ("beauty-fastbsa-2021", "fast"),
    ("beauty-fastbsa-2022", "fast"),
    ("sports-fastbsa-2021", "fast"),
    ("sports-fastbsa-2022", "fast"),
    ("beauty-fastbsa2-2020", "fast"),
    ("sports-fastbsa2-2020", "fast"),
    ("beauty-fastbsa-2021", "fastsel"),
    ("beauty-fastbsa3-2020", "fast"),
    ("beauty-fastbsadecay-2020", "fast"),
    ("beauty-fastbsadecay-2021", "fast"),
    ("beauty-fastbsadecay-2022", "fast"),
    ("sports-fastbsadecay-2020", "fast"),
    ("sports-fastbsadecay-2021", "fast"),
    ("sports-fastbsadecay-2022", "fast"),
    ("beauty-fastbsadecay-2020", "fastseen"),
    ("beauty-fastbsadecay-2021", "fastseen"),
    ("beauty-fastbsadecay-2022", "fastseen"),
    ("sports-fastbsadecay-2020", "fastseen"),
    ("sports-fastbsadecay-2021", "fastseen"),
    ("sports-fastbsadecay-2022", "fastseen"),
    ("beauty-fastbsadecay-2020", "fastcal"),
    ("beauty-fastbsadecay-2021", "fastcal"),
    ("beauty-fastbsadecay-2022", "fastcal"),
    ("sports-fastbsadecay-2020", "fastcal"),
    ("sports-fastbsadecay-2021", "fastcal"),
    ("sports-fastbsadecay-2022", "fastcal"),
]


def sh(cmd: list[str], log: Path) -> float:
    print("$", " ".join(cmd), flush=True)
    t0 = time.time()
    with open(log, "a") as f:
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT)
    return time.time() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--work", default=str(HERE / "runs"))
    args = ap.parse_args()
    work = Path(args.work)
    stage1 = load_jsonl(STAGE1)
    done = load_jsonl(RESULTS)
    for base, variant in PLAN:
        name = f"{base}-raserec-{variant}"
        if name in done or base not in stage1 or (args.only and name not in args.only):
            continue
        s1 = stage1[base]
        data_dir = work / "data" / s1["dataset"]
        model_dir = work / base
        index_flags, ft_flags, config = VARIANTS[variant]
        mem_dir = work / f"{base}-memory-{'flat' if index_flags else 'ivf'}"
        seed = ["--seed", str(s1["seed"]), "--config", str(config)]
        index_cmd = ["raserec", "index", "--data", str(data_dir), "--model", str(model_dir), "--output", str(mem_dir), *index_flags, *seed]
        ft_cmd = ["raserec", "finetune", "--data", str(data_dir), "--model", str(model_dir), "--memory", str(mem_dir),
                  "--output", str(work / name), *seed, *ft_flags]
        log = work / f"{name}.log"
        index_seconds = None
        if not (mem_dir / "manifest.json").exists():
            index_seconds = round(sh(index_cmd, log), 1)
        ft_seconds = round(sh(ft_cmd, log), 1)
        metrics = json.loads((work / name / "metrics.json").read_text())
        manifest = json.loads((work / name / "model.json").read_text())
        record = {
            "name": name, "stage1": base, "dataset": s1["dataset"], "backbone": s1["model"], "seed": s1["seed"],
            "variant": variant, "index_command": " ".join(index_cmd), "finetune_command": " ".join(ft_cmd),
            "index_wall_seconds": index_seconds, "finetune_wall_seconds_this_invocation": ft_seconds,
            "best_epoch": manifest["best_epoch"], "epochs_run": manifest["epochs_run"],
            "train_seconds": round(manifest["train_seconds"], 1),
            "trainable_parameters": manifest["n_trainable_parameters"],
            "encoder_fallback": manifest.get("encoder_fallback"),  # None: off, or recorded before it existed
            **environment(),
            "metrics": metrics, "stage1_metrics": s1["metrics"],
        }
        append_jsonl(RESULTS, record)
        print(f"{name}: test hr@10 {metrics['test/hr@10']:.4f} ({gain(metrics, s1['metrics'], 'test/hr@10'):+.1f}%) "
              f"ndcg@10 {metrics['test/ndcg@10']:.4f} ({gain(metrics, s1['metrics'], 'test/ndcg@10'):+.1f}%)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
