"""Dropout with cheap random bits.

``nn.Dropout`` on CPU draws one Mersenne-twister number per element (``bernoulli_``) and was a third of
a DuoRec training step. Here each 64-bit draw gives 62 Bernoulli(1/2) bits, or 3 16-bit uniforms for any
other rate, so the generator does 20-60x less work. For p = 1/2 the mask is exactly Bernoulli(p); for
other rates p is rounded to a multiple of 2**-16 (error below 1e-5). Uses the global generator, so
seeding and checkpointed RNG state cover it. On CUDA, where a step is bound by kernel launches rather
than by the generator, torch's fused dropout (one kernel, the device's generator) is used instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_HALF_BITS = 62
_GROUP_BITS = 16
_GROUPS = 3


def keep_mask(shape: torch.Size, p: float, device: torch.device) -> torch.Tensor:
    """Boolean tensor of ``shape``: True with probability 1 - p."""
    n = 1
    for s in shape:
        n *= s
    if p == 0.5:
        words = torch.empty((n + _HALF_BITS - 1) // _HALF_BITS, dtype=torch.int64, device=device).random_()
        shifts = torch.arange(_HALF_BITS, device=device)
        bits = (words[:, None] >> shifts) & 1
        return bits.view(-1)[:n].view(shape).bool()
    words = torch.empty((n + _GROUPS - 1) // _GROUPS, dtype=torch.int64, device=device).random_()
    shifts = torch.arange(0, _GROUPS * _GROUP_BITS, _GROUP_BITS, device=device)
    uniform16 = (words[:, None] >> shifts) & ((1 << _GROUP_BITS) - 1)
    threshold = round(p * (1 << _GROUP_BITS))
    return (uniform16.view(-1)[:n] >= threshold).view(shape)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    if not training or p == 0.0:
        return x
    if p >= 1.0:
        return torch.zeros_like(x)
    if x.is_cuda:
        return F.dropout(x, p, True)
    return x * keep_mask(x.shape, p, x.device) * (1.0 / (1.0 - p))


class Dropout(nn.Module):
    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
