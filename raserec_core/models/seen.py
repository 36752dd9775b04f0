"""A score offset for the items already in the user's input: repeat against explore.

A dot-product scorer ranks the items of a user's own sequence high, since the sequence representation
is built from their embeddings; whether users come back to items is a property of the data that the
scorer has no separate way to learn. RepeatNet (Ren et al., AAAI 2019) and the repeat-aware models after
it give the model that choice explicitly. Here it is one scalar: ``score + offset`` for every item of the
query's input sequence, set one of two ways (``finetune.history_bias``):

- learned: by the next-item loss with the rest of the model. On logs where users never come back to an
  item (the S3-Rec Amazon files) it goes negative for as long as it trains; where they do, it settles
  where the data put it. It changes what the rest of the model learns, rankings without seen items too.
- calibrated: after training, the rest of the model frozen, from the training queries alone
  (``calibrate_offset``). Rankings without seen items cannot change, by construction.
"""

from __future__ import annotations

import math

import torch


def first_occurrences(history: torch.Tensor) -> torch.Tensor:
    """(B, L) item indices (0 = padding) -> (B, L) True at the first slot of each distinct item of its row."""
    ordered, order = history.sort(dim=1, stable=True)
    first = torch.ones_like(ordered, dtype=torch.bool)
    first[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    return torch.zeros_like(first).scatter_(1, order, first & (ordered != 0))


def offset_seen(scores: torch.Tensor, history: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """(B, N) scores with the scalar ``offset`` added to each row's history items (each item once).

    Only the history's own columns are touched: the offset is scattered onto the first slot of each
    distinct item (repeats and padding add 0), so the cost is one copy of the scores, not a (B, N) mask."""
    history = history.to(scores.device)
    return scores.scatter_add(1, history, first_occurrences(history).to(scores.dtype) * offset)


def calibrate_offset(log_odds: torch.Tensor, repeats: int) -> float:
    """The offset b at which the queries' expected number of targets among their seen items matches the
    observed one: mean_j sigmoid(b + log_odds_j) = (repeats + 1/2) / (n + 1) over the n queries.

    Adding b to the seen items turns their mass p into sigmoid(b + logit p), so the left side is the
    model's rate of repeat targets after the offset. With the observed count itself this is where the
    next-item likelihood in b alone is stationary; it has no finite solution when no target repeats (the
    likelihood keeps rising as b falls), hence the Krichevsky-Trofimov estimate of the rate on the right:
    half a repeat more, which still drives b as low as the number of queries warrants."""
    n = log_odds.numel()
    if n == 0:
        raise ValueError("no queries to calibrate the seen-item offset on")
    if not 0 <= repeats <= n:
        raise ValueError(f"repeats must be in [0, {n}], got {repeats}")
    x = log_odds.double().clamp(-1e4, 1e4)  # a row with no seen mass (-inf) or only seen mass (+inf)
    rate = (repeats + 0.5) / (n + 1)
    goal = math.log(rate) - math.log1p(-rate)
    lo, hi = goal - float(x.max()), goal - float(x.min())  # sigmoid(b + x_j) <= rate for all j at lo, >= at hi
    for _ in range(200):  # bisection: the mean is increasing in b
        mid = (lo + hi) / 2
        if torch.sigmoid(mid + x).mean().item() < rate:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-9:
            break
    return (lo + hi) / 2
