"""The position-wise feed-forward block of SASRec and of the RAM: LayerNorm(x + Dropout(W2 GELU(W1 x)))."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .dropout import Dropout


class FeedForward(nn.Module):
    def __init__(self, hidden_size: int, inner_size: int, dropout: float, layer_norm_eps: float):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, inner_size)
        self.fc2 = nn.Linear(inner_size, hidden_size)
        self.dropout = Dropout(dropout)
        self.norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., D) -> (..., D), erf-GELU
        return self.norm(x + self.dropout(self.fc2(F.gelu(self.fc1(x)))))
