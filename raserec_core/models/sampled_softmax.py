"""Sampled softmax: the target against N items drawn uniformly, instead of against every item.

N negatives are drawn uniformly from the real items (never the padding row), once per batch and shared
by its rows; a negative that happens to be a row's target is masked out of that row's softmax, so the
loss is -log of the target's share among {target} ∪ negatives. eSASRec (arXiv 2508.06450) found SASRec
with 256 uniform negatives level with or above the full softmax on these benchmark files. Shared draws
make the negative logits one (B, D) × (D, N) product; per-row draws would gather a (B, N, D) block of
embeddings, which on a CPU cost more than the full softmax over 12k items.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sampled_softmax_ce(
    h: torch.Tensor, table: torch.Tensor, target: torch.Tensor, n_negatives: int, generator: torch.Generator | None
) -> torch.Tensor:
    """mean over rows of -log softmax([h·e_t, h·e_n1..nN])[0]; (B, D), (N_items, D), (B,) -> scalar.

    The negatives are drawn on ``generator``'s device (the CPU) so one seed gives one run on any device.
    """
    B = h.shape[0]
    neg = torch.randint(1, table.shape[0], (n_negatives,), generator=generator).to(h.device)  # (N,)
    pos_logit = (h * table[target]).sum(-1, keepdim=True)  # (B, 1)
    neg_logit = h @ table[neg].T  # (B, N)
    neg_logit = neg_logit.masked_fill(neg[None, :] == target[:, None], float("-inf"))
    logits = torch.cat([pos_logit, neg_logit], dim=1)
    return F.cross_entropy(logits, torch.zeros(B, dtype=torch.long, device=h.device))
