"""Build a memory bank from a trained encoder and a preprocessed dataset (docs/method.md §3)."""

from __future__ import annotations

import numpy as np
import torch

from ..data import SeqDataset
from ..data.batching import InstanceTensors
from .bank import MemoryBank, UserState, build_bank
from .entries import entries_from_split
from .partition import partition_mask


def user_state(ds: SeqDataset) -> UserState:
    """Everything known per user: the test history plus the test target, last max_len items."""
    test = ds.splits["test"]
    max_len = ds.stats["max_len"]
    n_users = ds.n_users
    n_seen = torch.zeros(n_users, dtype=torch.long)
    n_seen[torch.from_numpy(test.user)] = torch.from_numpy(test.position + 1)
    lists = [np.zeros(0, dtype=np.int64)] * n_users
    for row, u in enumerate(test.user.tolist()):  # once per user at build time
        lists[u] = np.append(test.history(row), test.target[row])[-max_len:]
    lens = torch.tensor([len(x) for x in lists], dtype=torch.long)
    return UserState(
        n_seen=n_seen,
        last_offsets=torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(lens, 0)]),
        last_values=torch.from_numpy(np.concatenate(lists)) if n_users else torch.zeros(0, dtype=torch.long),
    )


def extend_with_splits(bank: MemoryBank, encoder, ds: SeqDataset, splits: tuple[str, ...], device) -> MemoryBank:
    """The bank plus one entry per instance of ``splits`` (unfiltered), with a rebuilt index.

    ("valid",) is the reference's test-time view; ("valid", "test") is everything known, for serving.
    """
    extra = None
    for name in splits:
        e = entries_from_split(encoder, InstanceTensors(ds.splits[name]), device)
        extra = e if extra is None else extra.concat(e)
    return bank.with_entries(extra)


def bank_from_dataset(
    ds: SeqDataset, encoder, encoder_sha256: str, mem_cfg, seed: int, device, splits: tuple[str, ...] = ("train",)
) -> MemoryBank:
    """One entry per instance of ``splits`` (training only by default), filtered by the configured partition."""
    entries = None
    for name in splits:
        e = entries_from_split(encoder, InstanceTensors(ds.splits[name]), device)
        entries = e if entries is None else entries.concat(e)
    entries = entries.select(partition_mask(entries, mem_cfg, seed).nonzero().flatten())
    return build_bank(entries, ds.user_ids, ds.item_ids, user_state(ds), mem_cfg, encoder_sha256, ds.fingerprint, ds.stats["max_len"])


def validation_view(bank: MemoryBank, ds: SeqDataset) -> MemoryBank:
    """``bank`` without the memories of ``ds``'s validation and test instances, with a rebuilt index (in
    memory, never written): what validation queries read in the evaluation (the training memories), plus
    whatever was added to the bank since. A serving bank (``extend_with_splits`` with both splits) grown by
    ``memory add`` gives back its training memories and the added ones.

    A memory is the split's when it belongs to a dataset user at that split's target position; added
    memories come after a user's test item, so none is mistaken for one. The bank's first users must be
    ``ds``'s, in order (a bank built from ``ds`` has them so)."""
    from ..errors import MemoryBankError

    n = ds.n_users
    if len(bank.user_ids) < n or not np.array_equal(bank.user_ids[:n], ds.user_ids):
        raise MemoryBankError("the memory bank's users are not the dataset's: it was built from another dataset")
    e = bank.entries
    drop = torch.zeros(len(e), dtype=torch.bool)
    ours = e.user < n
    for name in ("valid", "test"):
        inst = ds.splits[name]
        at = torch.full((n,), -1, dtype=torch.long)  # the split's target position per user, -1 = none
        at[torch.from_numpy(inst.user)] = torch.from_numpy(inst.position).long()
        drop |= ours & (e.position == at[e.user.clamp(max=n - 1)])
    return bank.select((~drop).nonzero().flatten())
