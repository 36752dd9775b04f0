"""Full ranking over all items with one total order: score descending, then item index ascending.

The rank used by the metrics and the dumped top-K lists come from the same scores and the same order,
so the dump reproduces the metrics exactly.
"""

from __future__ import annotations

import torch


def target_ranks(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, N) scores, (B,) targets -> (B,) 1-based ranks (ties go to the smaller item index)."""
    t_score = scores.gather(1, target[:, None])
    rank = torch.count_nonzero(scores > t_score, dim=1) + 1
    # Exact ties with the target are rare: resolve them by index only on the rows that have some.
    tied = (torch.count_nonzero(scores == t_score, dim=1) > 1).nonzero().flatten()
    if len(tied):
        idx = torch.arange(scores.shape[1], device=scores.device)
        before = (scores[tied] == t_score[tied]) & (idx < target[tied, None])
        rank[tied] += torch.count_nonzero(before, dim=1)
    return rank


def stable_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of each row under the total order; exact also when scores tie at the boundary."""
    B, N = scores.shape
    k = min(k, N)
    kth = scores.topk(k, dim=1).values[:, -1:]  # (B, 1)
    above = scores > kth
    need = k - above.sum(1, keepdim=True)
    tie = scores == kth
    take_tie = tie & (torch.cumsum(tie.long(), dim=1) <= need)
    chosen = (above | take_tie).nonzero()[:, 1].view(B, k)  # ascending item index per row
    chosen_scores = scores.gather(1, chosen)
    order = torch.sort(chosen_scores, dim=1, descending=True, stable=True).indices
    items = chosen.gather(1, order)
    return items, scores.gather(1, items)
