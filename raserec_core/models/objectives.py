"""Stage-1 objectives (docs/method.md §2): next-item cross-entropy, DuoRec and CL4SRec contrastive learning.

An objective is called with the encoder and a batch and returns ``(loss, parts)``; ``parts`` holds the
detached terms for logging. Everything that touches the training set (same-target positives) arrives as
injected callables, so this module never sees the data readers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .encoder import encode_by_length, encode_packed, encode_views
from .full_softmax import full_softmax_ce
from .sampled_softmax import sampled_softmax_ce

Fetch = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]  # rows -> (seqs, lengths)
# (h (B, D), item table (N, D), target (B,), generator) -> scalar: the next-item term of every objective
NextItemLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, "torch.Generator | None"], torch.Tensor]


@dataclass
class Packed:
    """The batch's prefixes as positions of fewer, longer causal windows (``data.packing``)."""

    windows: torch.Tensor  # (W, L) right-padded
    inverse: torch.Tensor  # (B,) each row's window
    slot: torch.Tensor  # (B,) each row's position in it


@dataclass
class Batch:
    rows: torch.Tensor | None  # (B,) row ids in the training split (DuoRec draws partners by them)
    seqs: torch.Tensor | None  # (B, L) right-padded; None when packed and the objective reads the windows only
    lengths: torch.Tensor | None  # (B,)
    target: torch.Tensor  # (B,)
    packed: Packed | None = None


def encode_batch(encoder, batch: Batch, length_chunks: int = 1) -> torch.Tensor:
    """(B, D) representations of the batch's own sequences, by the cheapest exact route it carries."""
    if batch.packed is not None:
        p = batch.packed
        return encode_packed(encoder, p.windows, p.inverse, p.slot)
    return encode_by_length(encoder, batch.seqs, batch.lengths, length_chunks)


def encode_with_views(
    encoder, batch: Batch, n_own: int, views: list[tuple[torch.Tensor, torch.Tensor]], length_chunks: int = 1
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``n_own`` encodings of the batch's own sequences (each with its own dropout masks) and one of each
    extra view, in as few encoder passes as the batch allows: all in one unless the batch is packed."""
    dev = batch.target.device
    views = [(s.to(dev), n.to(dev)) for s, n in views]
    if batch.packed is not None:
        own = [encode_batch(encoder, batch) for _ in range(n_own)]
        return own, encode_views(encoder, views, length_chunks) if views else []
    encoded = encode_views(encoder, [(batch.seqs, batch.lengths)] * n_own + views, length_chunks)
    return encoded[:n_own], encoded[n_own:]


def next_item_ce(
    h: torch.Tensor, item_table: torch.Tensor, target: torch.Tensor,
    history: torch.Tensor | None = None, seen_offset: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax cross-entropy over every item row, padding included as in the reference; with a learned
    ``seen_offset`` on the items of each row's ``history`` (models.seen) when given."""
    return full_softmax_ce(h, item_table, target, history, seen_offset)


def next_item_loss(softmax: str = "full", n_negatives: int = 256) -> NextItemLoss:
    """The next-item term: ``full`` softmax over every item, or ``sampled`` against uniform negatives."""
    if softmax == "full":
        return lambda h, table, target, generator: next_item_ce(h, table, target)
    if softmax == "sampled":
        return lambda h, table, target, generator: sampled_softmax_ce(h, table, target, n_negatives, generator)
    raise ValueError(f"unknown softmax {softmax!r} (expected full or sampled)")


def info_nce(z_i: torch.Tensor, z_j: torch.Tensor, tau: float = 1.0, sim: str = "dot") -> torch.Tensor:
    """NT-Xent: row k's positive is its partner k±N, the other 2N-2 rows are negatives."""
    n = z_i.shape[0]
    z = torch.cat([z_i, z_j])  # (2N, D)
    if sim == "cos":
        z = F.normalize(z, dim=-1)
    logits = (z @ z.T) / tau
    logits.fill_diagonal_(float("-inf"))
    labels = (torch.arange(2 * n, device=z.device) + n) % (2 * n)
    return F.cross_entropy(logits, labels)


class SameTargetSampler:
    """Draws, for each training row, another training row with the same target, uniformly (DuoRec's
    supervised positive); a row whose target occurs once gets itself."""

    def __init__(self, targets: torch.Tensor):
        order = torch.argsort(targets, stable=True)
        n_items = int(targets.max()) + 1
        count = torch.bincount(targets, minlength=n_items)
        start = torch.cumsum(count, 0) - count
        rank = torch.empty_like(order)
        rank[order] = torch.arange(len(order), device=targets.device)
        self.order, self.count, self.start = order, count, start
        self.slot = rank - start[targets]  # row's place inside its target group
        self.targets = targets

    def __call__(self, rows: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        t = self.targets[rows]
        c = self.count[t]
        u = torch.rand(rows.shape, generator=generator, device=rows.device)
        r = (u * (c - 1).clamp(min=1)).long()
        r = r + (r >= self.slot[rows]).long()  # skip the row itself
        partner = self.order[(self.start[t] + r).clamp(max=len(self.order) - 1)]
        return torch.where(c > 1, partner, rows)


class CrossEntropyObjective:
    def __init__(self, length_chunks: int = 1, next_item: NextItemLoss | None = None):
        self.length_chunks = length_chunks
        self.next_item = next_item or next_item_loss()

    def __call__(self, encoder, batch: Batch, generator: torch.Generator | None = None):
        h = encode_batch(encoder, batch, self.length_chunks)
        loss = self.next_item(h, encoder.item_table, batch.target, generator)
        return loss, {"rec": loss.detach()}


class DuoRecObjective:
    """CE plus DuoRec contrast. Modes: ``un`` lmd·NCE(h, h'), ``su`` lmd_sem·NCE(h, h_s), ``us`` both,
    ``us_x`` lmd_sem·NCE(h', h_s) (the released run; the clean h is not in the contrastive term)."""

    def __init__(
        self, sampler: SameTargetSampler, fetch: Fetch, contrast: str = "us_x", lmd: float = 0.1,
        lmd_sem: float = 0.1, tau: float = 1.0, sim: str = "dot", length_chunks: int = 1,
        next_item: NextItemLoss | None = None,
    ):
        if contrast not in {"un", "su", "us", "us_x"}:
            raise ValueError(f"unknown DuoRec contrast mode {contrast!r}")
        self.sampler, self.fetch = sampler, fetch
        self.contrast, self.lmd, self.lmd_sem, self.tau, self.sim = contrast, lmd, lmd_sem, tau, sim
        self.length_chunks = length_chunks
        self.next_item = next_item or next_item_loss()

    def __call__(self, encoder, batch: Batch, generator: torch.Generator | None = None):
        # h' (unsupervised view) is the batch again under other dropout masks; h_s encodes the positives.
        n_own = 2 if self.contrast in {"un", "us", "us_x"} else 1
        views = [self.fetch(self.sampler(batch.rows, generator))] if self.contrast in {"su", "us", "us_x"} else []
        own, sem = encode_with_views(encoder, batch, n_own, views, self.length_chunks)
        h, h_aug, h_sem = own[0], own[-1], (sem[0] if sem else None)
        rec = self.next_item(h, encoder.item_table, batch.target, generator)
        parts = {"rec": rec.detach()}
        loss = rec
        if self.contrast in {"un", "us"}:
            un = info_nce(h, h_aug, self.tau, self.sim)
            loss = loss + self.lmd * un
            parts["un"] = un.detach()
        if self.contrast in {"su", "us"}:
            su = info_nce(h, h_sem, self.tau, self.sim)
            loss = loss + self.lmd_sem * su
            parts["su"] = su.detach()
        if self.contrast == "us_x":
            su = info_nce(h_aug, h_sem, self.tau, self.sim)
            loss = loss + self.lmd_sem * su
            parts["su"] = su.detach()
        return loss, parts


def cl4srec_views(
    seqs: torch.Tensor, lengths: torch.Tensor, mask_token: int, crop: float, mask: float, reorder: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One augmented view per row: crop, mask or reorder, chosen uniformly per row (CL4SRec).

    crop keeps a random window of max(1, floor(crop·n)) items; mask replaces floor(mask·n) random
    items with ``mask_token``; reorder shuffles a random window of floor(reorder·n) items.
    """
    B, L = seqs.shape
    dev = seqs.device
    # Drawn on the generator's (CPU) device, so a seed gives the same views on every device.
    rand = lambda *shape: torch.rand(*shape, generator=generator).to(dev)
    pos = torch.arange(L, device=dev).expand(B, L)
    valid = pos < lengths[:, None]
    n = lengths.float()

    # crop
    m_crop = torch.clamp((crop * n).floor().long(), min=1)
    start = (rand(B) * (lengths - m_crop + 1).float()).long()
    src = (start[:, None] + pos).clamp(max=L - 1)
    cropped = torch.where(pos < m_crop[:, None], seqs.gather(1, src), torch.zeros_like(seqs))

    # mask: exactly floor(mask·n) positions, drawn without replacement
    n_mask = (mask * n).floor().long()
    keys = torch.where(valid, rand(B, L), torch.full((B, L), 2.0, device=dev))
    rank = torch.argsort(torch.argsort(keys, dim=1), dim=1)
    masked = torch.where(rank < n_mask[:, None], torch.full_like(seqs, mask_token), seqs)

    # reorder: a random window shuffled in place
    m_re = (reorder * n).floor().long()
    r_start = (rand(B) * (lengths - m_re + 1).float()).long()
    inside = (pos >= r_start[:, None]) & (pos < (r_start + m_re)[:, None])
    sort_key = torch.where(inside, r_start[:, None].float() + rand(B, L) * m_re[:, None].float(), pos.float())
    reordered = seqs.gather(1, torch.argsort(sort_key, dim=1))

    choice = (rand(B) * 3).long().clamp(max=2)[:, None]
    out = torch.where(choice == 0, cropped, torch.where(choice == 1, masked, reordered))
    out_len = torch.where(choice[:, 0] == 0, m_crop, lengths)
    return out, out_len


class CL4SRecObjective:
    """CE plus lmd·NCE between two random augmentations of each sequence."""

    def __init__(
        self, mask_token: int, crop: float = 0.6, mask: float = 0.3, reorder: float = 0.6, lmd: float = 0.1,
        tau: float = 1.0, sim: str = "dot", length_chunks: int = 1, next_item: NextItemLoss | None = None,
    ):
        self.mask_token, self.ratios = mask_token, (crop, mask, reorder)
        self.lmd, self.tau, self.sim, self.length_chunks = lmd, tau, sim, length_chunks
        self.next_item = next_item or next_item_loss()

    def __call__(self, encoder, batch: Batch, generator: torch.Generator | None = None):
        v1 = cl4srec_views(batch.seqs, batch.lengths, self.mask_token, *self.ratios, generator=generator)
        v2 = cl4srec_views(batch.seqs, batch.lengths, self.mask_token, *self.ratios, generator=generator)
        (h,), (z1, z2) = encode_with_views(encoder, batch, 1, [v1, v2], self.length_chunks)
        rec = self.next_item(h, encoder.item_table, batch.target, generator)
        cl = info_nce(z1, z2, self.tau, self.sim)
        return rec + self.lmd * cl, {"rec": rec.detach(), "cl": cl.detach()}
