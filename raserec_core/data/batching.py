"""Instances as tensors, and padded batches cut from them without a per-row loop."""

from __future__ import annotations

import numpy as np
import torch

from .split import Instances


class InstanceTensors:
    """A split held as flat CPU tensors; ``fetch(rows)`` gives right-padded (seqs, lengths)."""

    def __init__(self, inst: Instances):
        self.values = torch.from_numpy(np.ascontiguousarray(inst.values, dtype=np.int64))
        self.offsets = torch.from_numpy(np.ascontiguousarray(inst.offsets[:-1], dtype=np.int64))
        self.lengths = torch.from_numpy(np.ascontiguousarray(inst.lengths, dtype=np.int64))
        self.target = torch.from_numpy(np.ascontiguousarray(inst.target, dtype=np.int64))
        self.user = torch.from_numpy(np.ascontiguousarray(inst.user, dtype=np.int64))
        self.position = torch.from_numpy(np.ascontiguousarray(inst.position, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.target)

    def fetch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = self.lengths[rows]
        width = max(int(lengths.max()), 1) if len(rows) else 1
        pos = torch.arange(width)
        valid = pos < lengths[:, None]
        idx = (self.offsets[rows][:, None] + pos).clamp(max=max(len(self.values) - 1, 0))
        seqs = torch.where(valid, self.values[idx], torch.zeros((), dtype=torch.long))
        return seqs, lengths
