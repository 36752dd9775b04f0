"""Causal multi-head attention's core, shared by the post-LN and the LiGR blocks.

On the CPU the scores are materialised and the attention dropout uses ``models.dropout``'s cheap bits
(the path every recorded CPU run took). On CUDA torch's fused kernel (``scaled_dot_product_attention``)
does the same in one launch, its dropout drawn by the device's own generator: a GPU step is bound by
kernel launches, not by arithmetic (benchmarks/RESULTS.md, "On a GPU").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .dropout import dropout


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + causal mask), dropout p in training, times v; (B, H, L, d) each -> (B, H, L, d)."""
    if q.is_cuda:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=p if training else 0.0, is_causal=True)
    L = q.shape[-2]
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5  # (B, H, L, L)
    causal = torch.ones(L, L, dtype=torch.bool, device=q.device).triu_(1)
    probs = torch.softmax(scores.masked_fill(causal, float("-inf")), dim=-1)
    return dropout(probs, p, training) @ v
