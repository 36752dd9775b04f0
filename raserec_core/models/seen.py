"""A learned score offset for the items already in the user's input: repeat against explore.

A dot-product scorer ranks the items of a user's own sequence high, since the sequence representation
is built from their embeddings; whether users come back to items is a property of the data that the
scorer has no separate way to learn. RepeatNet (Ren et al., AAAI 2019) and the repeat-aware models after
it give the model that choice explicitly. Here it is one scalar: ``score + offset`` for every item of the
query's input sequence, learned by the next-item loss with the rest of the model. On logs where users
never come back to an item (the S3-Rec Amazon files) it goes negative for as long as it trains; where
they do, it settles where the data put it.
"""

from __future__ import annotations

import torch


def seen_mask(history: torch.Tensor, n_items: int) -> torch.Tensor:
    """(B, L) item indices (0 = padding) -> (B, n_items) True where the item is in the row's history."""
    mask = torch.zeros(history.shape[0], n_items, dtype=torch.bool, device=history.device)
    mask.scatter_(1, history, True)
    mask[:, 0] = False  # padding is not an item the user has
    return mask


def first_occurrences(history: torch.Tensor) -> torch.Tensor:
    """(B, L) item indices (0 = padding) -> (B, L) True at the first slot of each distinct item of its row."""
    ordered, order = history.sort(dim=1, stable=True)
    first = torch.ones_like(ordered, dtype=torch.bool)
    first[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    return torch.zeros_like(first).scatter_(1, order, first & (ordered != 0))


def offset_seen(scores: torch.Tensor, history: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """(B, N) scores with the scalar ``offset`` added to each row's history items (each item once)."""
    return torch.where(seen_mask(history.to(scores.device), scores.shape[1]), scores + offset, scores)
