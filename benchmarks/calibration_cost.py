"""Recompute a fine-tuned model's seen-item offset calibration with the checkout's code, and time it.

    python benchmarks/calibration_cost.py --run beauty-fastbsadecay-2020-raserec-fastcal [--threads 2]

Loads the model folder ``benchmarks/runs/<run>`` with its memory bank (``<encoder run>-memory-ivf``) and
its dataset (``benchmarks/runs/data/<dataset>``), precomputes the training queries as fine-tuning does
(not timed), then times ``training.finetune.calibrate_seen_offset`` alone and prints the offset it finds
beside the one the folder recorded.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from raserec_core.data import read_dataset
from raserec_core.data.batching import InstanceTensors
from raserec_core.recommender import Recommender
from raserec_core.training.finetune import calibrate_seen_offset

RUNS = Path(__file__).resolve().parent / "runs"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True, help="a fine-tuned run folder under benchmarks/runs")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = RUNS / args.run
    encoder_run = args.run.split("-raserec-")[0]
    rec = Recommender.load(model, RUNS / f"{encoder_run}-memory-ivf", "cpu")
    if rec.seen_offset is None:
        raise SystemExit(f"{model}: fine-tuned without a seen-item offset")
    recorded = float(rec.seen_offset)
    train = InstanceTensors(read_dataset(RUNS / "data" / encoder_run.split("-")[0]).splits["train"])
    queries = rec.precompute(train, "cpu")
    t0 = time.perf_counter()
    record = calibrate_seen_offset(rec, queries, train.target, "cpu")
    seconds = time.perf_counter() - t0
    print(f"{args.run}: offset {float(rec.seen_offset):.6f} (recorded {recorded:.6f}), {record['queries']} training "
          f"queries, {record['repeat_targets']} repeat targets, seen mass {record['seen_mass']:.4f}; "
          f"{seconds:.1f} s with {args.threads} threads")


if __name__ == "__main__":
    main()
