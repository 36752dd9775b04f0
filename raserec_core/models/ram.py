"""The Retrieval-Augmented Module (docs/method.md §4): two channels of stacked cross-attention over K memories.

Channel seq->tar: the user representation h queries the retrieved sequence representations S (keys) and
reads their target embeddings T (values); channel tar->seq swaps keys and values. Each channel is
CrossAttention -> FeedForward -> CrossAttention with separate weights. The output is fused with h:

    h_aug = alpha * h + (1 - alpha) * (beta * o1 + (1 - beta) * o2)

Faithful defaults reproduce the released code, which differs from the paper's description in ways
exposed as options:
- ``cross_attn_residual_ln`` (default off): the code comments out the residual and LayerNorm of the
  cross-attention blocks;
- ``retrieval_position_embedding`` (default off): the code creates rank embeddings for the K memories but
  never adds them; on, they are added to the retrieved keys and values by similarity rank;
- ``beta`` = 1.0 (default): the released run switches the tar->seq channel off; then it is not computed;
- ``length_gate`` (default 0 = off): the code's ``low_popular`` gate keeps h for sequences longer than it;
- the code feeds both channels the same retrieved list; the caller may pass a second list for the
  tar->seq channel (``finetune.channel2_retrieval = target``: memories whose target embedding is
  closest to h, from the index over targets that the code builds but never queries).
Beyond the paper, ``history_bias`` (none in the RAM by default; see ``models.seen``) adds an offset to the
scores of the items in the query's own sequence, learned with the RAM or calibrated after it: the RAM owns
it, the recommender applies it.
Unlike the code, missing memories (fewer than K admissible) are masked in the attention, and a query
with no memory at all keeps h (h_aug = h).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from .dropout import Dropout
from .feedforward import FeedForward
from .init import init_weights


@dataclass(frozen=True)
class RAMConfig:
    hidden_size: int = 64
    n_heads: int = 2
    inner_size: int = 256
    top_k: int = 20
    attn_tau: float = 1.0
    dropout: float = 0.5
    alpha: float = 0.5
    beta: float = 1.0
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    cross_attn_residual_ln: bool = False
    retrieval_position_embedding: bool = False
    length_gate: int = 0
    history_bias: str = "none"  # none | learned (a parameter) | calibrated (a buffer set after training)

    @classmethod
    def from_record(cls, record: dict) -> RAMConfig:
        """The config a ``model.json`` records; folders written while ``history_bias`` was a flag say
        true (learned) or false (none)."""
        bias = record.get("history_bias", "none")
        if isinstance(bias, bool):
            bias = "learned" if bias else "none"
        return cls(**{**record, "history_bias": bias})


class CrossAttention(nn.Module):
    def __init__(self, cfg: RAMConfig):
        super().__init__()
        d = cfg.hidden_size
        self.n_heads, self.tau = cfg.n_heads, cfg.attn_tau
        self.query, self.key, self.value, self.dense = (nn.Linear(d, d) for _ in range(4))
        self.attn_dropout = Dropout(cfg.dropout)
        self.out_dropout = Dropout(cfg.dropout)
        self.norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps) if cfg.cross_attn_residual_ln else None

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """q (B, D), k/v (B, K, D), mask (B, K) True = present -> (B, D)."""
        B, K, D = k.shape
        H = self.n_heads
        Q = self.query(q).view(B, H, 1, D // H)
        Kh = self.key(k).view(B, K, H, D // H).transpose(1, 2)  # (B, H, K, D/H)
        Vh = self.value(v).view(B, K, H, D // H).transpose(1, 2)
        scores = (Q @ Kh.transpose(-1, -2)) / (D // H) ** 0.5 / self.tau  # (B, H, 1, K)
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
        probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # a row with no memory attends to nothing
        out = (self.attn_dropout(probs) @ Vh).reshape(B, D)
        out = self.out_dropout(self.dense(out))
        return self.norm(out + q) if self.norm is not None else out


class Channel(nn.Module):
    """CrossAttention -> FeedForward -> CrossAttention, keys and values fixed for the channel."""

    def __init__(self, cfg: RAMConfig):
        super().__init__()
        self.attn1 = CrossAttention(cfg)
        self.ffn = FeedForward(cfg.hidden_size, cfg.inner_size, cfg.dropout, cfg.layer_norm_eps)
        self.attn2 = CrossAttention(cfg)

    def forward(self, h, keys, values, mask):
        z = self.ffn(self.attn1(h, keys, values, mask))
        return self.attn2(z, keys, values, mask)


class RAM(nn.Module):
    def __init__(self, cfg: RAMConfig):
        super().__init__()
        self.cfg = cfg
        self.seq_tar = Channel(cfg)
        self.tar_seq = Channel(cfg)
        self.rank_embedding = nn.Embedding(cfg.top_k, cfg.hidden_size) if cfg.retrieval_position_embedding else None
        self.apply(partial(init_weights, std=cfg.initializer_range))
        # Starts at 0 (no preference); the next-item loss moves a learned one, fine-tuning sets a calibrated
        # one once the rest is trained (models.seen). Either way it is saved with the weights.
        if cfg.history_bias == "learned":
            self.seen_offset = nn.Parameter(torch.zeros(()))
        elif cfg.history_bias == "calibrated":
            self.register_buffer("seen_offset", torch.zeros(()))
        elif cfg.history_bias == "none":
            self.seen_offset = None
        else:
            raise ValueError(f"history_bias: {cfg.history_bias!r} is not one of none, learned, calibrated")

    @property
    def passes_through(self) -> bool:
        """alpha 1: h_aug = h exactly (finetune's fallback to the encoder), so there is nothing to retrieve."""
        return self.cfg.alpha == 1.0

    def forward(
        self, h: torch.Tensor, S: torch.Tensor, T: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor | None = None,
        second: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """h (B, D); S, T (B, K, D) retrieved sequence reps and target embeddings; mask (B, K) -> (B, D).

        ``second`` = (S2, T2, mask2): a separate retrieved list for the tar->seq channel.
        """
        c = self.cfg
        if self.passes_through:
            return h
        S2, T2, mask2 = second if second is not None else (S, T, mask)
        if self.rank_embedding is not None:
            rank = self.rank_embedding.weight[: S.shape[1]]
            S, T, S2, T2 = S + rank, T + rank, S2 + rank, T2 + rank
        fused = torch.zeros_like(h)
        present = torch.zeros_like(mask[:, 0])
        if c.beta != 0.0:
            fused = fused + c.beta * self.seq_tar(h, S, T, mask)
            present = present | mask.any(dim=1)
        if c.beta != 1.0:
            fused = fused + (1.0 - c.beta) * self.tar_seq(h, T2, S2, mask2)
            present = present | mask2.any(dim=1)
        h_aug = c.alpha * h + (1.0 - c.alpha) * fused
        keep_h = ~present
        if c.length_gate and lengths is not None:
            keep_h = keep_h | (lengths > c.length_gate)
        return torch.where(keep_h[:, None], h, h_aug)
