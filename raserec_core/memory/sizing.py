"""Index settings chosen from the bank's size: ``memory.index_type: auto`` and ``nlist``/``nprobe``/``pq_m``
0 (the defaults) are filled in here when a bank is built, and the bank records what was chosen.

Figures behind the rule: benchmarks/bank_scale.py on synthetic 64-dim banks (results/bank_scale.jsonl).
Up to 1M entries the rule keeps the paper's IVF-Flat, nlist 128, nprobe 1 (see ``SMALL_BANK``); from
1M, nlist a power of two near √N probed 16 lists at a time, and a compressed code once IVF-Flat's
float32 vectors would outgrow ``INDEX_MEMORY``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .index import MIN_POINTS_PER_LIST


@dataclass(frozen=True)
class IndexSettings:
    kind: str  # flat | ivf | ivfsq | ivfpq (memory.index_type)
    nlist: int
    nprobe: int
    pq_m: int


# The paper's index, which every recorded Beauty and Sports result used (banks of 130k-300k entries).
PAPER = IndexSettings("ivf", 128, 1, 8)
# Below this, the paper's setting stays. Reasons: (1) the published results and ours were all produced with it,
# so a default bank of that size is the same index bit for bit; (2) exact search over the 131k-entry Beauty
# bank gave the same test HR@10/NDCG@10 (RESULTS.md, "Exact retrieval"): the RAM attends over the top 20
# of 80 candidates and does not need the exact neighbours; (3) with 128 lists a query scans N/128 vectors,
# under 8k here (a scan of that size took 0.14 ms a query batched at 1M). Above, it grows with N: finer lists pay.
SMALL_BANK = 1_000_000
# Bytes of vector codes an auto index may hold: IVF-Flat (4 bytes a dimension) up to it, then IVF-SQ8
# (1 byte a dimension; recall@20 0.945 against Flat's 0.974 at 1M, 16 probes), then IVF-PQ (32 bytes reached
# only 0.86 at 1M: past 1 GiB of SQ8 codes recall is traded for memory). A 10M-entry 64-dim IVF-SQ8 index
# measured 1,494 MiB peak resident with Python, torch and faiss (0.25 GB of it), within the 1.5 GB goal;
# IVF-Flat would hold 2.6 GB of vectors. (The bank's keys and values are loaded beside it.)
INDEX_MEMORY = 1 << 30
# From 1M entries: √N lists, not faiss's 4-16 √N: assigning each entry to its list costs O(nlist), and on
# 2 cores 4096 lists at 1M took 7.6x longer to build than 1024 (42.5 s vs 5.6 s) for recall@20 higher by
# about 0.01 at the same nprobe (queries are faster, but both stay far under 1 ms). At √N a 10M bank built
# in 42 s against the 10-minute goal. 16 probes gave recall@20 0.974 (IVF-Flat) and 0.945 (IVF-SQ8) at 1M,
# 0.946 (IVF-SQ8) at 3M and 0.939 (IVF-SQ8) at 10M, at 0.25, 0.14, 0.20 and 0.11 ms a query batched.
NPROBE = 16


def auto_settings(n: int, dim: int) -> IndexSettings:
    """The index for a bank of ``n`` entries of dimension ``dim``."""
    if n < MIN_POINTS_PER_LIST * PAPER.nlist:
        # Too few entries to train 128 lists; exact search is < 5k dot products a query.
        return IndexSettings("flat", PAPER.nlist, PAPER.nprobe, PAPER.pq_m)
    if n < SMALL_BANK:
        return PAPER
    nlist = 2 ** round(math.log2(math.sqrt(n)))
    nprobe = NPROBE
    if n * dim * 4 <= INDEX_MEMORY:
        kind = "ivf"
    elif n * dim <= INDEX_MEMORY:
        kind = "ivfsq"
    else:
        kind = "ivfpq"
    # Two dimensions per PQ byte: one per byte (pq_m = dim) would cost SQ8's memory for less recall.
    pq_m = max((m for m in range(1, dim // 2 + 1) if dim % m == 0), default=1)
    return IndexSettings(kind, nlist, nprobe, pq_m)


def resolve(mem_cfg, n: int, dim: int) -> tuple[IndexSettings, list[str]]:
    """The settings of ``mem_cfg`` (a ``MemoryConfig``) with its automatic ones filled in for a bank of
    ``n`` entries, and the names of those filled in. An explicit nlist with nprobe 0 probes the same
    fraction of its lists as the rule does of its own."""
    auto = auto_settings(n, dim)
    chosen = [name for name, unset in (("index_type", mem_cfg.index_type == "auto"), ("nlist", mem_cfg.nlist == 0),
                                       ("nprobe", mem_cfg.nprobe == 0), ("pq_m", mem_cfg.pq_m == 0)) if unset]
    kind = auto.kind if "index_type" in chosen else mem_cfg.index_type
    nlist = auto.nlist if "nlist" in chosen else mem_cfg.nlist
    nprobe = mem_cfg.nprobe or min(nlist, max(1, round(auto.nprobe * nlist / auto.nlist)))
    pq_m = mem_cfg.pq_m or auto.pq_m
    return IndexSettings(kind, nlist, nprobe, pq_m), chosen
