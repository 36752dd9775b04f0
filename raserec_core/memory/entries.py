"""Memory entries: (sequence representation -> embedding of the item that followed), plus metadata.

One entry per instance, encoded by the frozen encoder in eval mode (no dropout). Keys and values are
kept un-normalised (the index holds normalised keys; IVF-PQ could not give them back).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from ..models.encoder import encode_by_length


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
def encode_instances(encoder, split, device, batch_size: int = 2048, length_chunks: int = 4) -> torch.Tensor:
    """(N, D) representations of every instance of ``split`` (an ``InstanceTensors``), on the CPU."""
    encoder.eval()
    # Sorting by length first makes each batch nearly pad-free.
    order = torch.argsort(split.lengths, stable=True)
    out = []
    for rows in order.split(batch_size):
        seqs, lengths = split.fetch(rows)
        out.append(encode_by_length(encoder, seqs.to(device), lengths.to(device), length_chunks).float().cpu())
    h = torch.cat(out) if out else torch.zeros(0, encoder.item_table.shape[1])
    return torch.empty_like(h).index_copy_(0, order, h)


@torch.no_grad()
def entries_from_split(encoder, split, device) -> Entries:
    keys = encode_instances(encoder, split, device)
    values = encoder.item_table.detach().float().cpu()[split.target]
    return Entries(
        keys=keys, values=values, user=split.user.clone(), length=split.lengths.clone(),
        position=split.position.clone(), target=split.target.clone(),
    )
