"""SASRec encoder as configured in the logged DuoRec/RaSeRec runs (docs/method.md §2).

2 post-LN transformer blocks, 2 heads, width 64, FFN 256 with erf-GELU, LayerNorm eps 1e-12, learned
absolute positions, causal mask, dropout 0.5, N(0, 0.02) init. The item table is also the output layer.
Sequences are left-aligned and right-padded with 0; the representation is read at position len-1. With
a causal mask that position never attends to padding, so no key-padding mask is needed and a batch can
be cut to its longest sequence without changing any representation.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from .attention import causal_attention
from .dropout import Dropout
from .feedforward import FeedForward
from .init import init_weights


@dataclass(frozen=True)
class SASRecConfig:
    n_items: int  # rows scored, padding included
    max_len: int = 50
    hidden_size: int = 64
    n_layers: int = 2
    n_heads: int = 2
    inner_size: int = 256
    hidden_dropout: float = 0.5
    attn_dropout: float = 0.5
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    n_extra_tokens: int = 0  # e.g. CL4SRec's [mask] token, embedded but never scored
    layer: str = "postln"  # postln: the published block; ligr: pre-norm, gated residuals, SwiGLU (models/ligr.py); bsa: attention + low-pass filter (models/bsa.py)
    filter_alpha: float = 0.7  # bsa: the filter's share beside attention
    filter_cutoff: int = 5  # bsa: BSARec's c, keeping cutoff // 2 + 1 frequencies of the max_len window


class SelfAttention(nn.Module):
    def __init__(self, cfg: SASRecConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.attn_dropout = cfg.attn_dropout
        self.out_dropout = Dropout(cfg.hidden_dropout)
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        split = lambda t: t.view(B, L, self.n_heads, D // self.n_heads).transpose(1, 2)  # (B, H, L, D/H)
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        ctx = causal_attention(q, k, v, self.attn_dropout, self.training)  # (B, H, L, D/H)
        ctx = ctx.transpose(1, 2).reshape(B, L, D)
        return self.norm(self.out_dropout(self.dense(ctx)) + x)


class Block(nn.Module):
    def __init__(self, cfg: SASRecConfig):
        super().__init__()
        self.attn = SelfAttention(cfg)
        self.ffn = FeedForward(cfg.hidden_size, cfg.inner_size, cfg.hidden_dropout, cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn(self.attn(x))


def _block(cfg: SASRecConfig) -> nn.Module:
    if cfg.layer == "ligr":
        from .ligr import LiGRBlock

        return LiGRBlock(cfg.hidden_size, cfg.n_heads, cfg.inner_size, cfg.hidden_dropout, cfg.attn_dropout, cfg.layer_norm_eps)
    if cfg.layer == "bsa":
        from .bsa import BSABlock, LowPassFilter

        lowpass = LowPassFilter(cfg.hidden_size, cfg.max_len, cfg.filter_cutoff, cfg.hidden_dropout, cfg.layer_norm_eps)
        ffn = FeedForward(cfg.hidden_size, cfg.inner_size, cfg.hidden_dropout, cfg.layer_norm_eps)
        return BSABlock(SelfAttention(cfg), ffn, lowpass, cfg.filter_alpha)
    if cfg.layer == "postln":
        return Block(cfg)
    raise ValueError(f"unknown SASRec layer {cfg.layer!r} (expected postln, ligr or bsa)")


class SASRec(nn.Module):
    def __init__(self, cfg: SASRecConfig):
        super().__init__()
        self.cfg = cfg
        self.n_items = cfg.n_items
        self.item_embedding = nn.Embedding(cfg.n_items + cfg.n_extra_tokens, cfg.hidden_size, padding_idx=0)
        self.position_embedding = nn.Embedding(cfg.max_len, cfg.hidden_size)
        self.input_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.input_dropout = Dropout(cfg.hidden_dropout)
        self.blocks = nn.ModuleList(_block(cfg) for _ in range(cfg.n_layers))
        # A pre-norm stack leaves its residual stream unnormalised: one LayerNorm closes it.
        self.output_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps) if cfg.layer == "ligr" else nn.Identity()
        self.apply(partial(init_weights, std=cfg.initializer_range))

    @property
    def item_table(self) -> torch.Tensor:
        """(n_items, D) output embeddings, tied with the input ones."""
        return self.item_embedding.weight[: self.n_items]

    def sequence_output(self, seqs: torch.Tensor) -> torch.Tensor:
        """seqs (B, L) right-padded item indices -> (B, L, D): position t is the prefix seqs[:, :t+1]."""
        pos = torch.arange(seqs.shape[1], device=seqs.device)
        x = self.input_dropout(self.input_norm(self.item_embedding(seqs) + self.position_embedding(pos)))
        for block in self.blocks:
            x = block(x)
        return self.output_norm(x)

    def forward(self, seqs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """seqs (B, L) right-padded item indices, lengths (B,) >= 1 -> (B, D) at position len-1."""
        return self.sequence_output(seqs)[torch.arange(seqs.shape[0], device=seqs.device), lengths - 1]
