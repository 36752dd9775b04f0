"""The batched full ranker: score every item for every query, rank the target, optionally keep the top K.

Two protocols from one scoring pass: each score block is computed once and ranked twice, with the items
of the query's history kept (the paper's protocol) and excluded (the field's: a user is never
recommended what they already have).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .metrics import summarize
from .ranking import stable_topk, target_ranks

# The protocols under their explicit names in metric keys: ``test/seen_kept/hr@10``.
KEPT, EXCLUDED = "seen_kept", "seen_excluded"


@dataclass
class RankResult:
    ranks_kept: torch.Tensor  # (Q,) 1-based rank of each target, history items kept
    ranks_excluded: torch.Tensor | None  # (Q,) history items excluded; None when no history was given
    mask_history: bool  # which of the two ``ranks`` and the top-K lists follow
    topk_items: torch.Tensor | None  # (Q, K) item indices in rank order
    topk_scores: torch.Tensor | None  # (Q, K); -inf for an excluded item filling a short list

    @property
    def ranks(self) -> torch.Tensor:
        return self.ranks_excluded if self.mask_history else self.ranks_kept

    def metrics(self, ks: tuple[int, ...], prefix: str = "", protocols: bool = True) -> dict[str, float]:
        """``{prefix}{metric}@{k}`` under the chosen protocol; with ``protocols`` also both under their
        names (``{prefix}seen_kept/...``, ``{prefix}seen_excluded/...``) where computed."""
        out = summarize(self.ranks, ks, prefix)
        if protocols:
            out |= summarize(self.ranks_kept, ks, f"{prefix}{KEPT}/")
            if self.ranks_excluded is not None:
                out |= summarize(self.ranks_excluded, ks, f"{prefix}{EXCLUDED}/")
        return out


@torch.no_grad()
def rank_all(
    score_batch: Callable[[torch.Tensor], torch.Tensor],
    targets: torch.Tensor,
    batch_size: int = 1024,
    topk: int = 0,
    history: Callable[[torch.Tensor], torch.Tensor] | None = None,
    mask_history: bool = False,
) -> RankResult:
    """``score_batch(rows) -> (B, N)`` scores; item 0 (padding) is never ranked.

    ``history(rows) -> (B, L)`` item indices of each query's history (0 = padding): with it, targets are
    also ranked with those items excluded. ``mask_history`` picks the protocol of ``ranks`` and the top-K.
    """
    if mask_history and history is None:
        raise ValueError("mask_history needs the queries' history")
    kept, excluded, items, scores = [], [], [], []
    n = len(targets)
    for start in range(0, n, batch_size):
        rows = torch.arange(start, min(start + batch_size, n))
        s = score_batch(rows).float()
        s[:, 0] = float("-inf")
        t = targets[rows].to(s.device)
        kept.append(target_ranks(s, t).cpu())
        if history is not None:
            s_ex = s.scatter(1, history(rows).to(s.device), float("-inf"))
            excluded.append(target_ranks(s_ex, t).cpu())
            if mask_history:
                s = s_ex
        if topk:
            it, sc = stable_topk(s, min(topk, s.shape[1] - 1))  # never the padding item
            items.append(it.cpu())
            scores.append(sc.cpu())
    empty = torch.zeros(0, dtype=torch.long)
    return RankResult(
        ranks_kept=torch.cat(kept) if kept else empty,
        ranks_excluded=(torch.cat(excluded) if excluded else empty) if history is not None else None,
        mask_history=mask_history,
        topk_items=torch.cat(items) if topk and items else None,
        topk_scores=torch.cat(scores) if topk and scores else None,
    )
