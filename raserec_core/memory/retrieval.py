"""Leakage-filtered top-K retrieval (docs/method.md §3), vectorised over the whole query batch.

For each query: search ``candidate_factor * K`` neighbours, drop missing ids (-1 from IVF or a small
index) and every entry of the querying user that is not a strictly shorter prefix (capped lengths are
compared, as the reference does: own future targets never leak), keep the first K survivors in
similarity order. Missing slots are masked, never filled with an arbitrary entry.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .index import VectorIndex


@dataclass
class Retrieved:
    ids: torch.Tensor  # (B, K) entry ids, -1 where masked
    mask: torch.Tensor  # (B, K) True where a memory was retrieved

    def rows(self, rows: torch.Tensor) -> Retrieved:
        """The lists of the queries ``rows``."""
        return Retrieved(self.ids[rows], self.mask[rows])


# (user, length) packed in one int64, so that the filter gathers one table instead of two: the
# same-user test and the length test become one range test on the packed key.
_LENGTH_BITS = 16


def pack(user: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    return (user.long() << _LENGTH_BITS) | length.long()


def leakage_filter(
    cand: torch.Tensor, cand_user: torch.Tensor, cand_len: torch.Tensor, user: torch.Tensor, length: torch.Tensor, k: int
) -> Retrieved:
    """cand (B, C) ids in similarity order (-1 = none); cand_user/cand_len (B, C) their metadata;
    user/length (B,) the queries'. Returns the first k admissible candidates per row."""
    return filter_packed(cand, pack(cand_user, cand_len), user, length, k)


def filter_packed(cand: torch.Tensor, cand_key: torch.Tensor, user: torch.Tensor, length: torch.Tensor, k: int) -> Retrieved:
    """``leakage_filter`` on packed candidate keys (``pack(user, length)``)."""
    # Inadmissible: same user and length >= the query's, i.e. key in [pack(u, len_q), pack(u + 1, 0)).
    lo = pack(user, length)[:, None]
    hi = pack(user + 1, torch.zeros_like(length))[:, None]
    ok = (cand >= 0) & ((cand_key < lo) | (cand_key >= hi))
    slot = torch.cumsum(ok, dim=1, dtype=torch.int32) - 1  # where each admissible candidate lands
    keep = ok & (slot < k)
    B = cand.shape[0]
    ids = torch.full((B, k + 1), -1, dtype=torch.long)
    # Rejected candidates are written to a spill column k and dropped.
    ids.scatter_(1, torch.where(keep, slot, k).long(), torch.where(keep, cand, -1))
    ids = ids[:, :k]
    return Retrieved(ids=ids, mask=ids >= 0)


class Retriever:
    """Searches an index of memory keys and applies the leakage filter using the entries' metadata."""

    def __init__(self, index: VectorIndex, user: torch.Tensor, length: torch.Tensor, candidate_factor: int = 4):
        self.index, self.candidate_factor = index, candidate_factor
        self.key = pack(user, length)

    def __call__(self, queries: torch.Tensor, user: torch.Tensor, length: torch.Tensor, k: int) -> Retrieved:
        _, cand = self.index.search(queries, self.candidate_factor * k)
        return filter_packed(cand, self.key[cand.clamp(min=0)], user.cpu(), length.cpu(), k)


def retrieve_all(retriever: Retriever, h: torch.Tensor, user: torch.Tensor, length: torch.Tensor, k: int, batch_size: int = 4096) -> Retrieved:
    """Retrieval for many queries at once, in batches (the frozen encoder makes it a one-time cost)."""
    parts = [
        retriever(h[s : s + batch_size], user[s : s + batch_size], length[s : s + batch_size], k)
        for s in range(0, len(h), batch_size)
    ]
    if not parts:
        return Retrieved(torch.zeros(0, k, dtype=torch.long), torch.zeros(0, k, dtype=torch.bool))
    return Retrieved(torch.cat([p.ids for p in parts]), torch.cat([p.mask for p in parts]))


def gather_memories(keys: torch.Tensor, values: torch.Tensor, r: Retrieved, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(S, T, mask) on ``device``: (B, K, D) retrieved keys and values; masked slots are zeros."""
    B, K = r.ids.shape
    flat = r.ids.clamp(min=0).flatten()
    missing = ~r.mask[..., None]
    S = keys.index_select(0, flat).view(B, K, -1).masked_fill_(missing, 0.0)
    T = values.index_select(0, flat).view(B, K, -1).masked_fill_(missing, 0.0)
    return S.to(device), T.to(device), r.mask.to(device)
