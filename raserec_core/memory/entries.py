"""Memory entries: (sequence representation -> embedding of the item that followed), plus metadata.

One entry per instance, encoded by the frozen encoder in eval mode (no dropout). Keys and values are
kept un-normalised (the index holds normalised keys; IVF-PQ could not give them back).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from ..models.encoder import encode_instances


@dataclass
class Entries:
    keys: torch.Tensor  # (E, D) float32 sequence representations
    values: torch.Tensor  # (E, D) float32 target-item embeddings
    user: torch.Tensor  # (E,) int64 user index (the bank's user map)
    length: torch.Tensor  # (E,) int64 capped prefix length
    position: torch.Tensor  # (E,) int64 target's position in the user's sequence (the only time there is)
    target: torch.Tensor  # (E,) int64 item index

    def __len__(self) -> int:
        return len(self.target)

    def select(self, rows: torch.Tensor) -> Entries:
        return Entries(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})

    def concat(self, other: Entries) -> Entries:
        return Entries(**{f.name: torch.cat([getattr(self, f.name), getattr(other, f.name)]) for f in fields(self)})


@torch.no_grad()
def entries_from_split(encoder, split, device) -> Entries:
    keys = encode_instances(encoder, split, device)
    values = encoder.item_table.detach().float().cpu()[split.target]
    return Entries(
        keys=keys, values=values, user=split.user.clone(), length=split.lengths.clone(),
        position=split.position.clone(), target=split.target.clone(),
    )
