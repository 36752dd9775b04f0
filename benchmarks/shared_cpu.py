"""One training epoch alone and beside a busy single-thread process, under OpenMP wait policies.

    python benchmarks/shared_cpu.py --data benchmarks/runs/data/beauty [--policies default passive ...]
                                    [--config configs/fast.yaml] [--set k=v ...]

Each case is a fresh ``raserec pretrain`` of one epoch (the wait policy only takes effect before torch
loads). ``default`` leaves OpenMP's own policy (spin a while, then sleep), ``passive`` never spins,
``spinN`` spins N times before sleeping (``GOMP_SPINCOUNT``, GNU OpenMP: torch's CPU wheel). The busy
neighbour is a pure-Python loop: one core's worth of load. Records go to
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
def policy_env(name: str) -> dict[str, str]:
    """The environment of a named policy; an empty OMP_WAIT_POLICY keeps OpenMP's default (raserec sets
    its own only where the variable is absent)."""
    if name == "default":
        return {"OMP_WAIT_POLICY": ""}
    if name == "passive":
        return {"OMP_WAIT_POLICY": "PASSIVE"}
    if name.startswith("spin") and name[4:].isdigit():
        return {"OMP_WAIT_POLICY": "", "GOMP_SPINCOUNT": name[4:]}
    raise SystemExit(f"shared_cpu.py: unknown policy {name!r} (default, passive, spinN)")


def epoch_seconds(cmd: list[str], policy: str, busy: bool) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(policy_env(policy))
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
    ap.add_argument("--policies", nargs="+", default=["default", "passive"])
    args = ap.parse_args()
    cmd = ["raserec", "pretrain", "--data", args.data, *(["--config", args.config] if args.config else [])]
    for kv in [*args.overrides, "pretrain.epochs=1"]:
        cmd += ["--set", kv]
    seconds = {}
    for name in args.policies:
        for busy in (False, True):
            key = f"{name}_{'busy' if busy else 'alone'}"
            seconds[key] = round(epoch_seconds(cmd, name, busy), 1)
            print(key, seconds[key], flush=True)
    record = {
        "name": f"shared-cpu-{time.strftime('%Y%m%dT%H%M%S')}", "command": " ".join(cmd), **environment(),
        "train_seconds": seconds,
        "slowdown": {n: round(seconds[f"{n}_busy"] / seconds[f"{n}_alone"], 2) for n in args.policies},
    }
    append_jsonl(RESULTS, record)
    print(json.dumps(record["slowdown"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
