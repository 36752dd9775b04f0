"""Retrieval speed on a real memory bank: our vectorised leakage filter vs a per-row Python filter
written the way the reference code does it, and the whole retrieval vs the bare faiss search.

    python benchmarks/retrieval_speed.py --data DIR --model DIR [--memory DIR] [--queries 1024] [--threads 2] [--output FILE]

Builds the bank (IVF, nlist 128, nprobe 1) from --model unless --memory is given, takes the first
--queries validation queries, K = 20 and 4K = 80 candidates, and reports medians over --repeats runs.
Results go to stdout and to --output (default benchmarks/results/retrieval_speed.json).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent


def reference_filter(cand: np.ndarray, users: np.ndarray, lengths: np.ndarray, q_user: np.ndarray, q_len: np.ndarray, k: int):
    """As the reference implementation: a Python loop over queries and their candidates."""
    out = []
    for row in range(cand.shape[0]):
        kept = [c for c in cand[row] if users[c] != q_user[row] or lengths[c] < q_len[row]]
        out.append(kept[:k])
    return out


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--memory")
    ap.add_argument("--queries", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--output", default=str(HERE / "results" / "retrieval_speed.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import faiss

    faiss.omp_set_num_threads(args.threads)

    from raserec_core.config import Config
    from raserec_core.data import read_dataset
    from raserec_core.data.batching import InstanceTensors
    from raserec_core.memory.bank import load_bank
    from raserec_core.memory.build import bank_from_dataset
    from raserec_core.memory.retrieval import filter_packed, gather_memories, pack
    from raserec_core.models.checkpoint import load_encoder
    from raserec_core.models.encoder import encode_instances

    ds = read_dataset(args.data)
    encoder, manifest = load_encoder(args.model, "cpu")
    cfg = Config()
    bank = load_bank(args.memory) if args.memory else bank_from_dataset(ds, encoder, manifest["encoder_sha256"], cfg.memory, cfg.seed, "cpu")
    valid = InstanceTensors(ds.splits["valid"])
    rows = torch.arange(min(args.queries, len(valid)))
    h = encode_instances(encoder, InstanceTensors(ds.splits["valid"]), "cpu")[rows]
    q_user, q_len = valid.user[rows], valid.lengths[rows]
    K, C = cfg.finetune.top_k, cfg.finetune.top_k * cfg.finetune.candidate_factor
    e = bank.entries
    _, cand = bank.index.search(h, C)

    keys = pack(e.user, e.length)  # built once with the bank's retriever

    def ours_filter():
        return filter_packed(cand, keys[cand.clamp(min=0)], q_user, q_len, K)

    users_np, len_np = e.user.numpy(), e.length.numpy()
    cand_np, qu_np, ql_np = cand.numpy(), q_user.numpy(), q_len.numpy()
    retriever = bank.retriever(cfg.finetune.candidate_factor)

    def whole():
        r = retriever(h, q_user, q_len, K)
        return gather_memories(e.keys, e.values, r, "cpu")

    # Same survivors both ways (the reference keeps -1 ids it cannot see; none occur with a full bank).
    ours = ours_filter()
    ref = reference_filter(cand_np, users_np, len_np, qu_np, ql_np, K)
    agree = all(list(ours.ids[i][ours.mask[i]].tolist()) == [int(c) for c in ref[i] if c >= 0][: int(ours.mask[i].sum())] for i in range(len(ref)))

    result = {
        "bank_entries": len(bank),
        "queries": len(rows),
        "k": K,
        "candidates": C,
        "index": bank.index.kind,
        "nprobe": bank.meta["nprobe"],
        "threads": args.threads,
        "bare_search_ms": median_ms(lambda: bank.index.search(h, C), args.repeats),
        "filter_ours_ms": median_ms(ours_filter, args.repeats),
        "filter_reference_ms": median_ms(lambda: reference_filter(cand_np, users_np, len_np, qu_np, ql_np, K), max(3, args.repeats // 4)),
        "whole_retrieval_ms": median_ms(whole, args.repeats),
        "survivors_identical": agree,
    }
    result["filter_speedup"] = result["filter_reference_ms"] / result["filter_ours_ms"]
    result["whole_over_bare"] = result["whole_retrieval_ms"] / result["bare_search_ms"]
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    result["command"] = " ".join(["python", "benchmarks/retrieval_speed.py", *sys.argv[1:]])
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
