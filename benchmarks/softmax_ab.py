"""Time the full-softmax cross-entropy (forward + backward) of an earlier commit against the checkout's.

    python benchmarks/softmax_ab.py [--base a3be9b8] [--threads 2]

The base commit's ``raserec_core/models/full_softmax.py`` is read with ``git show`` and imported on its
own (it needs only torch); both run interleaved on the same inputs, 5 rounds of 20 steps, and the
fastest round of each is printed in ms per step: a Beauty-sized table (12,102 items, 64 dims) with a
trained table (stage 1's packed batches) and a frozen one (fine-tuning's batches of 1,024).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def load_base(commit: str):
    text = subprocess.run(["git", "show", f"{commit}:raserec_core/models/full_softmax.py"], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "full_softmax_base.py"
    path.write_text(text.replace("from .seen import", "from raserec_core.models.seen import"))
    spec = importlib.util.spec_from_file_location("full_softmax_base", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="a3be9b8")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    from raserec_core.models import full_softmax as head

    base = load_base(args.base)
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    for rows, trained in ((1800, True), (1024, False)):
        h0, table0 = torch.randn(rows, 64, generator=g), torch.randn(12102, 64, generator=g) * 0.3
        target = torch.randint(1, 12102, (rows,), generator=g)
        best = {}
        for name, fn in [(args.base, base.full_softmax_ce), ("checkout", head.full_softmax_ce)] * 5:
            h, table = h0.clone().requires_grad_(), table0.clone().requires_grad_(trained)
            start = time.perf_counter()
            for _ in range(20):
                fn(h, table, target).backward()
            best[name] = min(best.get(name, float("inf")), (time.perf_counter() - start) / 20 * 1000)
        table_kind = "trained" if trained else "frozen"
        print(f"{rows} rows, {table_kind} table: " + ", ".join(f"{k} {v:.1f} ms" for k, v in best.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
