"""The batched full ranker: score every item for every query, rank the target, optionally keep the top K."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .metrics import summarize
from .ranking import stable_topk, target_ranks


@dataclass
class RankResult:
    ranks: torch.Tensor  # (Q,) 1-based rank of each target
    topk_items: torch.Tensor | None  # (Q, K) item indices in rank order
    topk_scores: torch.Tensor | None  # (Q, K)

    def metrics(self, ks: tuple[int, ...], prefix: str = "") -> dict[str, float]:
        return summarize(self.ranks, ks, prefix)


@torch.no_grad()
def rank_all(
    score_batch: Callable[[torch.Tensor], torch.Tensor],
    targets: torch.Tensor,
    batch_size: int = 1024,
    topk: int = 0,
    exclude: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> RankResult:
    """``score_batch(rows) -> (B, N)`` scores; item 0 (padding) is never ranked.

    ``exclude(rows) -> (B, N) bool`` marks further items to drop (history masking).
    """
    ranks, items, scores = [], [], []
    n = len(targets)
    for start in range(0, n, batch_size):
        rows = torch.arange(start, min(start + batch_size, n))
        s = score_batch(rows).float()
        s[:, 0] = float("-inf")
        if exclude is not None:
            s = s.masked_fill(exclude(rows).to(s.device), float("-inf"))
        t = targets[rows].to(s.device)
        ranks.append(target_ranks(s, t).cpu())
        if topk:
            it, sc = stable_topk(s, min(topk, s.shape[1] - 1))  # never the padding item
            items.append(it.cpu())
            scores.append(sc.cpu())
    return RankResult(
        ranks=torch.cat(ranks) if ranks else torch.zeros(0, dtype=torch.long),
        topk_items=torch.cat(items) if topk and items else None,
        topk_scores=torch.cat(scores) if topk and scores else None,
    )
