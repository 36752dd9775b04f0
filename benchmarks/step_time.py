"""Time stage-1 training steps (forward + backward + Adam) of a config on a preprocessed dataset.

A development measurement: compare two commits by running it in a checkout of each, one after the
other, on an otherwise idle machine (``git worktree add /tmp/old <rev>`` and ``PYTHONPATH=/tmp/old``).

    python benchmarks/step_time.py --data benchmarks/runs/data/beauty --config configs/duorec.yaml \
        [--set pretrain.batching=random ...] [--steps 40] [--warmup 5] [--threads 1] [--device cpu]

Prints one JSON line: the median and mean step time in ms over ``--steps`` batches of one epoch order,
the training instances per second they give, and a hash of the weights after them (equal hashes: two
set-ups, e.g. allocators, computed the same). Batches are built as stage-1 training builds them
(``training.pretrain.training_batch``), sequence packing included.
On CUDA each step ends with a synchronisation, so a step's time is its whole cost.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--config")
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    args = ap.parse_args()

    import torch
    from records import environment  # this folder

    import raserec_core
    from raserec_core.config import load_config
    from raserec_core.data import read_dataset
    from raserec_core.data.batching import InstanceTensors
    from raserec_core.data.packing import prefix_windows, window_batches
    from raserec_core.data.sampling import length_bucketed_batches, random_batches
    from raserec_core.device import resolve_device
    from raserec_core.models.encoder import build_encoder
    from raserec_core.training.pretrain import build_objective, training_batch

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    cfg = load_config(args.config, args.overrides)
    p = cfg.pretrain
    ds = read_dataset(args.data)
    train = InstanceTensors(ds.splits["train"])
    torch.manual_seed(cfg.seed)
    encoder = build_encoder(cfg.model.backbone, ds.n_items, cfg.data.max_len, cfg.model,
                            1 if p.objective == "cl4srec" else 0).to(device)
    objective = build_objective(cfg, train, ds.n_items)
    opt = torch.optim.Adam(encoder.parameters(), lr=p.lr, fused=True)  # as training.loop
    g = torch.Generator().manual_seed(cfg.seed)
    window_of = prefix_windows(train.user, train.position, train.lengths) if p.batching == "sequence" else None
    if window_of is not None:
        order = window_batches(window_of, train.lengths, p.batch_size, g)
    elif p.batching == "bucket":
        order = length_bucketed_batches(train.lengths, p.batch_size, g)
    else:
        order = random_batches(len(train), p.batch_size, g)
    times, rows_timed = [], 0
    for i, rows in enumerate(order[: args.warmup + args.steps]):
        start = time.perf_counter()
        loss, _ = objective(encoder, training_batch(train, rows, window_of, device), g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sync()
        if i >= args.warmup:
            times.append(1000 * (time.perf_counter() - start))
            rows_timed += len(rows)
    instances_per_s = rows_timed / (sum(times) / 1000)
    times.sort()
    digest = hashlib.sha256()
    for tensor in encoder.state_dict().values():
        digest.update(tensor.detach().cpu().numpy().tobytes())
    print(json.dumps({
        "code": raserec_core.__file__, "config": args.config, "set": args.overrides, "threads": args.threads,
        "device": str(device), "malloc": environment()["malloc"], "weights_sha256": digest.hexdigest()[:16],
        "steps": len(times), "median_ms": round(times[len(times) // 2], 1), "mean_ms": round(sum(times) / len(times), 1),
        "instances_per_s": round(instances_per_s, 1), "n_items": ds.n_items, "train_instances": len(train),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
