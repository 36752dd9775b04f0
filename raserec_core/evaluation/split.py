"""Evaluation of one split: full ranking of its targets under ``eval`` settings, for an encoder alone
(stage 1) or for the retrieval-augmented recommender (stage 2). The same function serves per-epoch
validation, the final metrics and the ``evaluate`` step, so all of them follow ``eval.mask_history``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .ranker import RankResult, rank_all


def evaluate_split(
    score_batch: Callable[[torch.Tensor], torch.Tensor], split, prefix: str, eval_cfg, topk: int = 0,
    protocols: bool = True,
) -> tuple[dict[str, float], RankResult]:
    """``split`` an ``InstanceTensors``; ``score_batch(rows) -> (B, N)``. Returns (metrics, RankResult).

    The usual keys (``valid/hr@10``) follow ``eval_cfg.mask_history``; with ``protocols`` both protocols
    are reported too, under their names (the history is the model's input: the last ``max_len`` items)."""
    history = (lambda rows: split.fetch(rows)[0]) if protocols or eval_cfg.mask_history else None
    result = rank_all(score_batch, split.target, eval_cfg.batch_size, topk, history, eval_cfg.mask_history)
    return result.metrics(tuple(eval_cfg.ks), prefix, protocols), result


def encoder_scores(encoder, split, device) -> Callable[[torch.Tensor], torch.Tensor]:
    """rows -> (B, N) scores h·Eᵀ of a stage-1 encoder; every representation is encoded once, up front."""
    from ..models.encoder import encode_instances

    h = encode_instances(encoder, split, device)
    table = encoder.item_table.detach()
    return lambda rows: h[rows].to(device) @ table.T


def recommender_scores(recommender, pre, device) -> Callable[[torch.Tensor], torch.Tensor]:
    """rows -> (B, N) scores of a ``Recommender`` over its precomputed queries ``pre``."""
    return lambda rows: recommender.scores_rows(pre, rows, device)
