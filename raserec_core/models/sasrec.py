"""SASRec encoder as configured in the logged DuoRec/RaSeRec runs (docs/method.md §2).

2 post-LN transformer blocks, 2 heads, width 64, FFN 256 with erf-GELU, LayerNorm eps 1e-12, learned
absolute positions (``positions``: or a learned attention bias per lag, or both), causal mask, dropout
0.5, N(0, 0.02) init. The item table is also the output layer.
Sequences are left-aligned and right-padded with 0; the representation is read at position len-1. With
a causal mask that position never attends to padding, so no key-padding mask is needed and a batch can
be cut to its longest sequence without changing any representation.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from .attention import LagBias, causal_attention
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
    filter_scope: str = "causal"  # bsa: causal (packing holds) | window (BSARec's: each prefix's whole window)
    positions: str = "absolute"  # absolute: an embedding of each index from the sequence start; lag: attention.LagBias; both


def lag_bias(cfg: SASRecConfig) -> LagBias | None:
    """The block's relative-position term, when ``positions`` asks for one."""
    if cfg.positions not in ("absolute", "lag", "both"):
        raise ValueError(f"unknown positions {cfg.positions!r} (expected absolute, lag or both)")
    return LagBias(cfg.n_heads, cfg.max_len) if cfg.positions != "absolute" else None


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
        self.lag_bias = lag_bias(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        split = lambda t: t.view(B, L, self.n_heads, D // self.n_heads).transpose(1, 2)  # (B, H, L, D/H)
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        bias = self.lag_bias(L) if self.lag_bias is not None else None
        ctx = causal_attention(q, k, v, self.attn_dropout, self.training, bias)  # (B, H, L, D/H)
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

        return LiGRBlock(cfg.hidden_size, cfg.n_heads, cfg.inner_size, cfg.hidden_dropout, cfg.attn_dropout, cfg.layer_norm_eps,
                         lag_bias(cfg))
    if cfg.layer == "bsa":
        from .bsa import BSABlock, LowPassFilter

        lowpass = LowPassFilter(cfg.hidden_size, cfg.max_len, cfg.filter_cutoff, cfg.hidden_dropout, cfg.layer_norm_eps,
                                cfg.filter_scope)
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
        # positions=lag leaves order to the attention's lag term alone (and to the BSA filter, a lag filter too).
        self.position_embedding = nn.Embedding(cfg.max_len, cfg.hidden_size) if cfg.positions != "lag" else None
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

    @property
    def causal(self) -> bool:
        """Whether position t depends on seqs[:, :t+1] alone, so that one pass answers every prefix."""
        return all(getattr(block, "causal", True) for block in self.blocks)

    def _encode(self, seqs: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        x = self.item_embedding(seqs)
        if self.position_embedding is not None:
            x = x + self.position_embedding(torch.arange(seqs.shape[1], device=seqs.device))
        x = self.input_dropout(self.input_norm(x))
        for block in self.blocks:
            x = block(x, valid) if valid is not None else block(x)
        return self.output_norm(x)

    def sequence_output(self, seqs: torch.Tensor) -> torch.Tensor:
        """seqs (B, L) right-padded item indices -> (B, L, D): position t is the prefix seqs[:, :t+1]."""
        if not self.causal:
            raise ValueError("a whole-window filter (model.filter_scope=window) reads later items: encode each "
                             "prefix with its length (pretrain.batching random or bucket), not by packing")
        return self._encode(seqs, None)

    def forward(self, seqs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """seqs (B, L) right-padded item indices, lengths (B,) >= 1 -> (B, D) at position len-1."""
        rows = torch.arange(seqs.shape[0], device=seqs.device)
        if self.causal:
            return self._encode(seqs, None)[rows, lengths - 1]
        valid = torch.arange(seqs.shape[1], device=seqs.device)[None, :] < lengths[:, None]
        return self._encode(seqs, valid)[rows, lengths - 1]
