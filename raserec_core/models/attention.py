"""Causal multi-head attention's core, shared by the post-LN, BSA and LiGR blocks, and its optional
relative-position term.

On the CPU the scores are materialised and the attention dropout uses ``models.dropout``'s cheap bits
(the path every recorded CPU run took). On CUDA torch's fused kernel (``scaled_dot_product_attention``)
does the same in one launch, its dropout drawn by the device's own generator: a GPU step is bound by
kernel launches, not by arithmetic (benchmarks/RESULTS.md, "On a GPU").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .dropout import dropout


class LagBias(nn.Module):
    """A learned score b[h, t - s] added to head h's attention from position t to position s <= t
    (``model.positions: lag | both``; T5's relative positions without buckets, over the max_len lags).

    It depends on how far back s lies from t, not on where the user's sequence starts: the last item of
    every prefix is at lag 0, as in the left-padded windows of SASRec's and BSARec's own code, while each
    position still answers its own prefix, so sequence packing stays exact. Starts at zero (plain
    attention)."""

    def __init__(self, n_heads: int, max_len: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_heads, max_len))

    def forward(self, length: int) -> torch.Tensor:
        """(H, L, L) bias for a window of ``length`` positions; lags above the diagonal are masked anyway."""
        pos = torch.arange(length, device=self.weight.device)
        lag = (pos[:, None] - pos[None, :]).clamp(0, self.weight.shape[1] - 1)
        return self.weight[:, lag]


def causal_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, p: float, training: bool, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + bias + causal mask), dropout p in training, times v; (B, H, L, d) each ->
    (B, H, L, d); ``bias`` (H, L, L) or None."""
    if q.is_cuda and bias is None:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=p if training else 0.0, is_causal=True)
    L = q.shape[-2]
    causal = torch.ones(L, L, dtype=torch.bool, device=q.device).triu_(1)
    if q.is_cuda:
        mask = bias.to(q.dtype).masked_fill(causal, float("-inf"))
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p if training else 0.0)
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5  # (B, H, L, L)
    if bias is not None:
        scores = scores + bias
    probs = torch.softmax(scores.masked_fill(causal, float("-inf")), dim=-1)
    return dropout(probs, p, training) @ v
