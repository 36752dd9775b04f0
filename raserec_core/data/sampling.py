"""Epoch batch orders for training instances."""

from __future__ import annotations

import torch


def random_batches(n_rows: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    return list(torch.randperm(n_rows, generator=generator).split(batch_size))


def length_bucketed_batches(
    lengths: torch.Tensor, batch_size: int, generator: torch.Generator, pool_batches: int = 64
) -> list[torch.Tensor]:
    """Shuffle, cut into pools of ``pool_batches`` batches, sort each pool by length, cut it into batches,
    shuffle the batches. Every instance is seen once per epoch, batches stay random in content except
    that their members have similar lengths, so padding (most of the encoder's work) nearly vanishes.
    """
    perm = torch.randperm(len(lengths), generator=generator)
    out: list[torch.Tensor] = []
    for pool in perm.split(batch_size * pool_batches):
        pool = pool[torch.argsort(lengths[pool], stable=True)]
        out.extend(pool.split(batch_size))
    order = torch.randperm(len(out), generator=generator)
    return [out[i] for i in order.tolist()]
