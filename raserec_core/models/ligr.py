"""LiGR-style transformer block: pre-normalisation, gated residuals, a SwiGLU feed-forward.

LiGR (LinkedIn's ranking transformer, arXiv 2502.03417) and eSASRec (arXiv 2508.06450, which measured it
as SASRec's strongest layer on these benchmark files) replace the post-LN block by

    x = x + sigmoid(W_a x) * Dropout(MHA(LN(x)))
    x = x + sigmoid(W_f x) * Dropout(FFN(LN(x)))

with FFN(u) = W_2 (SiLU(W_1 u) * W_3 u) of width ``inner_size`` (hidden_size × the multiplier). A
pre-norm stack needs one LayerNorm after its last block (``SASRec`` applies it). Causal like the post-LN
block, so position len-1 never sees right padding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import LagBias, causal_attention
from .dropout import Dropout


class GatedResidual(nn.Module):
    """x + sigmoid(W x) * Dropout(u): the residual stream decides, per unit, how much of the sub-layer
    output ``u`` it takes in."""

    def __init__(self, hidden_size: int, p: float):
        super().__init__()
        self.gate = nn.Linear(hidden_size, hidden_size)
        self.dropout = Dropout(p)

    def forward(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return x + torch.sigmoid(self.gate(x)) * self.dropout(u)


class SwiGLU(nn.Module):
    def __init__(self, hidden_size: int, inner_size: int):
        super().__init__()
        self.w1 = nn.Linear(hidden_size, inner_size, bias=False)
        self.w3 = nn.Linear(hidden_size, inner_size, bias=False)
        self.w2 = nn.Linear(inner_size, hidden_size, bias=False)

    def forward(self, u: torch.Tensor) -> torch.Tensor:  # (..., D) -> (..., D)
        return self.w2(F.silu(self.w1(u)) * self.w3(u))


class LiGRBlock(nn.Module):
    def __init__(self, hidden_size: int, n_heads: int, inner_size: int, hidden_dropout: float, attn_dropout: float, eps: float,
                 lag_bias: LagBias | None = None):
        super().__init__()
        self.lag_bias = lag_bias
        self.n_heads, self.attn_dropout = n_heads, attn_dropout
        self.attn_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.out = nn.Linear(hidden_size, hidden_size)
        self.attn_residual = GatedResidual(hidden_size, hidden_dropout)
        self.ffn_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.ffn = SwiGLU(hidden_size, inner_size)
        self.ffn_residual = GatedResidual(hidden_size, hidden_dropout)

    def attention(self, u: torch.Tensor) -> torch.Tensor:
        B, L, D = u.shape
        q, k, v = self.qkv(u).view(B, L, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)  # 3×(B, H, L, D/H)
        bias = self.lag_bias(L) if self.lag_bias is not None else None
        ctx = causal_attention(q, k, v, self.attn_dropout, self.training, bias)  # (B, H, L, D/H)
        return self.out(ctx.transpose(1, 2).reshape(B, L, D))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, D) -> (B, L, D)
        x = self.attn_residual(x, self.attention(self.attn_norm(x)))
        return self.ffn_residual(x, self.ffn(self.ffn_norm(x)))
