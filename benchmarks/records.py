"""What every benchmark record shares: reading the JSONL result files, gains, and the machine a run had.

Imported by the scripts beside it (run from any directory: Python puts a script's folder on sys.path).
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def load_jsonl(path: Path) -> dict[str, dict]:
    """The records of a results file by ``name``; a later record of a name replaces an earlier one."""
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {r["name"]: r for r in rows}


def append_jsonl(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:  # one short append per record: concurrent runs cannot interleave lines
        f.write(json.dumps(record, sort_keys=True) + "\n")


def gain(metrics: dict, base: dict, key: str) -> float:
    """Relative change in percent of ``metrics[key]`` over ``base[key]``."""
    return (metrics[key] / base[key] - 1) * 100


def environment() -> dict:
    """Where the run's CLI commands ran: ``--device auto`` picks CUDA when torch sees it (records written
    before this field existed are all CPU runs); the allocator changes CPU times, not the computation."""
    import torch

    device = f"cuda: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "cpu"
    return {"device": device, "threads": torch.get_num_threads(), "malloc": os.environ.get("LD_PRELOAD") or "glibc"}
