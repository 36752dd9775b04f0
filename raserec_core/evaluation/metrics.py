"""Ranking metrics with one held-out item per query: pure functions of the target's 1-based rank."""

from __future__ import annotations

import torch


def hit_at(ranks: torch.Tensor, k: int) -> torch.Tensor:
    """HR@K (= Recall@K with a single target): 1 if the target is in the top K."""
    return (ranks <= k).float()


def ndcg_at(ranks: torch.Tensor, k: int) -> torch.Tensor:
    """NDCG@K with one relevant item: 1 / log2(rank + 1) inside the top K, else 0 (the ideal DCG is 1)."""
    return torch.where(ranks <= k, 1.0 / torch.log2(ranks.double() + 1.0), torch.zeros((), dtype=torch.float64))


def mrr_at(ranks: torch.Tensor, k: int) -> torch.Tensor:
    """MRR@K: 1 / rank inside the top K, else 0."""
    return torch.where(ranks <= k, 1.0 / ranks.double(), torch.zeros((), dtype=torch.float64))


METRICS = {"hr": hit_at, "ndcg": ndcg_at, "mrr": mrr_at}


def summarize(ranks: torch.Tensor, ks: tuple[int, ...], prefix: str = "") -> dict[str, float]:
    """Mean of every metric at every K, keyed ``{prefix}{metric}@{k}`` (e.g. ``valid/ndcg@10``)."""
    ranks = ranks.cpu()
    return {
        f"{prefix}{name}@{k}": float(fn(ranks, k).double().mean()) for name, fn in METRICS.items() for k in ks
    }


def mlflow_key(key: str) -> str:
    """``valid/hr@10`` -> ``valid_hr_at_10`` for tools that forbid '/' and '@'."""
    return key.replace("/", "_").replace("@", "_at_")
