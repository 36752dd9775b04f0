"""Dynamic memory: append new interactions to a bank without retraining or rebuilding the index.

Each new interaction (after the user's known items) becomes an entry keyed by (user, position) whose
prefix is the user's last ``max_len`` items before it; a new user's first item has no prefix and gives
no entry. Items the model has never seen have no embedding: they are skipped and counted (or an error
with ``strict``). An interaction (user, item, time) that was added before is refused, never duplicated.
The index keeps its trained quantizer: vectors are only added.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from ..data.batching import InstanceTensors
from ..data.readers import Interactions
from ..data.split import instances_at
from .bank import MemoryBank, MemoryBankError, UserState
from .entries import entries_from_split


def _interaction_keys(user: np.ndarray, item: np.ndarray, time: np.ndarray) -> np.ndarray:
    """One string per interaction; \x1f cannot occur in ids read from text."""
    return np.char.add(np.char.add(np.char.add(np.char.add(user.astype(str), "\x1f"), item.astype(str)), "\x1f"),
                       np.char.mod("%.17g", time.astype(np.float64)))


def interactions_sha256(inter: Interactions) -> str:
    """The sha256 of the rows (user, item, time) as read, in sorted order: the same interactions give the
    same fingerprint whatever the file's format or row order (the identity of a live-memory addition)."""
    import hashlib

    keys = np.sort(_interaction_keys(inter.user, inter.item, inter.time))
    return hashlib.sha256("\n".join(keys.tolist()).encode()).hexdigest()


def add_interactions(bank: MemoryBank, encoder, inter: Interactions, device, strict: bool = False, source: str = "") -> tuple[MemoryBank, dict]:
    where = source or "interactions"
    item_index = {raw: i for i, raw in enumerate(bank.item_ids.tolist()) if i > 0}
    items = np.array([item_index.get(raw, -1) for raw in inter.item.tolist()], dtype=np.int64)
    unknown = items < 0
    if strict and unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        raise MemoryBankError(f"{where}: row {row}: item '{inter.item[row]}' is unknown to the model (--strict)")
    keys = _interaction_keys(inter.user, inter.item, inter.time)
    _, first = np.unique(keys, return_index=True)
    repeated = np.ones(len(keys), dtype=bool)
    repeated[first] = False  # a row repeated inside the slice is a duplicate too
    dup = repeated | np.isin(keys, _interaction_keys(bank.added["user"], bank.added["item"], bank.added["time"]))
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        raise MemoryBankError(
            f"{where}: row {row}: interaction (user '{inter.user[row]}', item '{inter.item[row]}', time "
            f"{inter.time[row]:g}) is already in the memory bank; nothing was added"
        )
    keep = ~unknown
    users_raw, items_k, time_k = inter.user[keep], items[keep], inter.time[keep]
    rows = np.flatnonzero(keep)

    user_index = {raw: i for i, raw in enumerate(bank.user_ids.tolist())}
    new_user_raw = [u for u in dict.fromkeys(users_raw.tolist()) if u not in user_index]
    for u in new_user_raw:
        user_index[u] = len(user_index)
    user_ids = np.concatenate([bank.user_ids, np.asarray(new_user_raw, dtype=str)]).astype(str)
    n_users = len(user_ids)
    n_old = len(bank.user_ids)
    st = bank.users
    n_seen = torch.cat([st.n_seen, torch.zeros(n_users - n_old, dtype=torch.long)])
    old_len = torch.cat([torch.diff(st.last_offsets), torch.zeros(n_users - n_old, dtype=torch.long)])

    uidx = np.array([user_index[u] for u in users_raw.tolist()], dtype=np.int64)
    order = np.lexsort((rows, time_k, uidx))
    uidx, items_k = uidx[order], items_k[order]
    affected, new_counts = np.unique(uidx, return_counts=True)
    max_len = bank.meta["max_len"]

    # Each affected user's combined sequence: its stored last items, then the new ones.
    old_lens = old_len[affected].numpy()
    comb_len = old_lens + new_counts
    comb_offsets = np.concatenate([[0], np.cumsum(comb_len)]).astype(np.int64)
    comb = np.zeros(comb_offsets[-1], dtype=np.int64)
    new_starts = np.concatenate([[0], np.cumsum(new_counts)])[:-1]
    for k, u in enumerate(affected.tolist()):  # per affected user, not per row: copies two slices
        comb[comb_offsets[k] : comb_offsets[k] + old_lens[k]] = st.last(u).numpy() if u < n_old else []
        comb[comb_offsets[k] + old_lens[k] : comb_offsets[k + 1]] = items_k[new_starts[k] : new_starts[k] + new_counts[k]]

    # Targets: every new item that has at least one item before it.
    from ..data.ranges import concat_ranges

    first_new = comb_offsets[:-1] + old_lens
    has_prefix_start = np.where(old_lens > 0, first_new, first_new + 1)
    n_targets = comb_offsets[1:] - has_prefix_start
    tgt_pos = concat_ranges(has_prefix_start, n_targets)
    local_users = np.repeat(np.arange(len(affected)), n_targets)
    inst = instances_at(comb, comb_offsets, local_users, tgt_pos, max_len)
    # Absolute positions: the combined sequence starts n_seen - old_len items into the user's history.
    shift = (n_seen[affected] - old_len[affected]).numpy()
    inst = replace(inst, user=affected[inst.user], position=inst.position + shift[local_users])

    added_entries = entries_from_split(encoder, InstanceTensors(inst), device) if len(inst) else None
    if added_entries is not None:
        bank.index.add(added_entries.keys)
        entries = bank.entries.concat(added_entries)
    else:
        entries = bank.entries

    n_seen[affected] += torch.from_numpy(new_counts)
    last_lists = [st.last(u) for u in range(n_old)] + [torch.zeros(0, dtype=torch.long)] * (n_users - n_old)
    for k, u in enumerate(affected.tolist()):
        last_lists[u] = torch.from_numpy(comb[comb_offsets[k] : comb_offsets[k + 1]][-max_len:])
    lens = torch.tensor([len(x) for x in last_lists], dtype=torch.long)
    users = UserState(n_seen=n_seen, last_offsets=torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(lens, 0)]),
                      last_values=torch.cat(last_lists) if last_lists else torch.zeros(0, dtype=torch.long))
    added = {
        "user": np.concatenate([bank.added["user"], inter.user[keep]]).astype(str),
        "item": np.concatenate([bank.added["item"], inter.item[keep]]).astype(str),
        "time": np.concatenate([bank.added["time"], inter.time[keep].astype(np.float64)]),
    }
    new_bank = replace(bank, entries=entries, user_ids=user_ids, users=users, added=added)
    report = {
        "interactions": int(len(inter)),
        "skipped_unknown_items": int(unknown.sum()),
        "entries_added": int(len(inst)),
        "new_users": len(new_user_raw),
        "users_extended": int((affected < n_old).sum()),
        "entries_total": len(entries),
    }
    return new_bank, report
