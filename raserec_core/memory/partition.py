"""Partitions of a memory bank for the paper's memory-bank ablation: which entries are kept.

- ``length``: the reference code's ``len_lower_bound``/``len_upper_bound``/``len_bound_reverse`` rule
  (both bounds: lower <= len <= upper; only upper: len < upper; only lower: len > lower; then inverted
  when reverse is set);
- ``popularity``: entries whose target is among the most (``head``) or least (``tail``) popular items
  covering ``fraction`` of the entries' targets;
- ``random``: a seeded random ``fraction`` of the entries;
- ``time``: each user's oldest ``fraction`` of entries (``head``) or newest (``tail``), by position.
"""

from __future__ import annotations

import torch

from .entries import Entries


def length_mask(length: torch.Tensor, lower: int, upper: int, reverse: bool) -> torch.Tensor:
    if lower and upper:
        keep = (length >= lower) & (length <= upper)
    elif upper:
        keep = length < upper
    elif lower:
        keep = length > lower
    else:
        return torch.ones_like(length, dtype=torch.bool)
    return ~keep if reverse else keep


def popularity_mask(target: torch.Tensor, fraction: float, side: str) -> torch.Tensor:
    counts = torch.bincount(target)
    items = torch.argsort(counts, descending=(side == "head"), stable=True)
    covered = torch.cumsum(counts[items], 0).double() / max(len(target), 1)
    chosen = torch.zeros_like(counts, dtype=torch.bool)
    chosen[items[covered <= fraction]] = True
    return chosen[target]


def random_mask(n: int, fraction: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, generator=g) < fraction


def time_mask(user: torch.Tensor, position: torch.Tensor, fraction: float, side: str) -> torch.Tensor:
    """Rank each user's entries by position; keep the oldest (head) or newest (tail) fraction."""
    order = torch.argsort(user * (position.max() + 1) + position)
    counts = torch.bincount(user[order])
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order)) - starts[user[order]]
    rel = (rank.double() + 1) / counts[user].double()
    return rel <= fraction if side == "head" else rel > 1 - fraction


def partition_mask(entries: Entries, mem_cfg, seed: int) -> torch.Tensor:
    kind = mem_cfg.partition
    if kind == "none":
        keep = torch.ones(len(entries), dtype=torch.bool)
    elif kind == "popularity":
        keep = popularity_mask(entries.target, mem_cfg.partition_fraction, mem_cfg.partition_side)
    elif kind == "random":
        keep = random_mask(len(entries), mem_cfg.partition_fraction, seed)
    elif kind == "time":
        keep = time_mask(entries.user, entries.position, mem_cfg.partition_fraction, mem_cfg.partition_side)
    elif kind == "length":
        keep = torch.ones(len(entries), dtype=torch.bool)
    else:
        raise ValueError(f"unknown memory partition {kind!r}")
    return keep & length_mask(entries.length, mem_cfg.len_lower_bound, mem_cfg.len_upper_bound, mem_cfg.len_bound_reverse)
