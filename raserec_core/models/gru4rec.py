"""GRU4Rec encoder (RecBole's configuration: embedding dropout, bias-free GRU, dense to the item space).

A GRU is causal, so reading position len-1 of a right-padded batch is exact without packing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .dropout import Dropout


@dataclass(frozen=True)
class GRU4RecConfig:
    n_items: int
    hidden_size: int = 64  # also the embedding size
    n_layers: int = 1
    dropout: float = 0.3
    n_extra_tokens: int = 0


class GRU4Rec(nn.Module):
    def __init__(self, cfg: GRU4RecConfig):
        super().__init__()
        self.cfg = cfg
        self.n_items = cfg.n_items
        self.item_embedding = nn.Embedding(cfg.n_items + cfg.n_extra_tokens, cfg.hidden_size, padding_idx=0)
        self.emb_dropout = Dropout(cfg.dropout)
        self.gru = nn.GRU(cfg.hidden_size, cfg.hidden_size, cfg.n_layers, bias=False, batch_first=True)
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        nn.init.xavier_normal_(self.item_embedding.weight)
        for name, p in self.gru.named_parameters():
            if "weight" in name:
                nn.init.xavier_uniform_(p)

    @property
    def item_table(self) -> torch.Tensor:
        return self.item_embedding.weight[: self.n_items]

    def sequence_output(self, seqs: torch.Tensor) -> torch.Tensor:
        """seqs (B, L) -> (B, L, D): position t is the prefix seqs[:, :t+1]."""
        out, _ = self.gru(self.emb_dropout(self.item_embedding(seqs)))
        return self.dense(out)

    def forward(self, seqs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """seqs (B, L), lengths (B,) -> (B, D)."""
        return self.sequence_output(seqs)[torch.arange(seqs.shape[0], device=seqs.device), lengths - 1]
