"""One training epoch alone and beside a busy single-thread process, under two OpenMP wait policies.

    python benchmarks/shared_cpu.py --data benchmarks/runs/data/beauty [--config configs/fast.yaml] [--set k=v ...]

Each case is a fresh ``raserec pretrain`` of one epoch (the wait policy only takes effect before torch
loads). ``default`` leaves OpenMP's own policy (spin, then sleep), ``passive`` is what ``raserec`` sets
unless told otherwise. The busy neighbour is a pure-Python loop: one core's worth of load. Records go to
benchmarks/results/shared_cpu.jsonl: the epoch's training seconds in each case and the slow-down ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from records import append_jsonl, environment  # this folder

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "shared_cpu.jsonl"
POLICIES = {"default": "", "passive": "PASSIVE"}  # "" keeps OpenMP's default: raserec sets none over it


def epoch_seconds(cmd: list[str], policy: str, busy: bool) -> float:
    env = dict(os.environ, OMP_WAIT_POLICY=policy)
    neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([*cmd, "--output", f"{tmp}/run"], check=True, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            return json.loads(Path(f"{tmp}/run/history.json").read_text())[0]["train_time"]
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--config")
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    args = ap.parse_args()
    cmd = ["raserec", "pretrain", "--data", args.data, *(["--config", args.config] if args.config else [])]
    for kv in [*args.overrides, "pretrain.epochs=1"]:
        cmd += ["--set", kv]
    seconds = {}
    for name, policy in POLICIES.items():
        for busy in (False, True):
            key = f"{name}_{'busy' if busy else 'alone'}"
            seconds[key] = round(epoch_seconds(cmd, policy, busy), 1)
            print(key, seconds[key], flush=True)
    record = {
        "name": f"shared-cpu-{time.strftime('%Y%m%dT%H%M%S')}", "command": " ".join(cmd), **environment(),
        "train_seconds": seconds,
        "slowdown": {n: round(seconds[f"{n}_busy"] / seconds[f"{n}_alone"], 2) for n in POLICIES},
    }
    append_jsonl(RESULTS, record)
    print(json.dumps(record["slowdown"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
