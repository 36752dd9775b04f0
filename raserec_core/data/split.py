"""Chronological leave-one-out split with every training prefix as an instance (docs/method.md §1).

For a user with items i1..in: train (i1..i_{t-1}) -> i_t for t = 2..n-2, valid (i1..i_{n-2}) -> i_{n-1},
test (i1..i_{n-1}) -> i_n. Histories keep only their last ``max_len`` items (the sliding window).
Users with fewer than 3 items cannot give a test, a validation and a history: they are dropped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ranges import concat_ranges

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Instances:
    """Ragged instances: history of row r is ``values[offsets[r]:offsets[r + 1]]`` (oldest first)."""

    user: np.ndarray  # (R,) int64 user index
    position: np.ndarray  # (R,) int64 0-based position of the target in the user's full sequence
    target: np.ndarray  # (R,) int64 item index
    offsets: np.ndarray  # (R + 1,) int64
    values: np.ndarray  # (offsets[-1],) int64 item indices

    def __len__(self) -> int:
        return len(self.target)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def history(self, row: int) -> np.ndarray:
        return self.values[self.offsets[row] : self.offsets[row + 1]]


def take(inst: Instances, rows: np.ndarray) -> Instances:
    """The instances ``rows`` (indices, in that order) of ``inst``."""
    rows = np.asarray(rows, dtype=np.int64)
    lengths = inst.lengths[rows]
    return Instances(
        user=inst.user[rows],
        position=inst.position[rows],
        target=inst.target[rows],
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        values=inst.values[concat_ranges(inst.offsets[rows], lengths)],
    )


def instances_at(
    seq_items: np.ndarray, seq_offsets: np.ndarray, users: np.ndarray, target_pos: np.ndarray, max_len: int
) -> Instances:
    """Instances whose targets sit at absolute positions ``target_pos`` of the flat ``seq_items``."""
    user_start = seq_offsets[users]
    hist_start = np.maximum(user_start, target_pos - max_len)
    lengths = target_pos - hist_start
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    values = seq_items[concat_ranges(hist_start, lengths)]
    return Instances(
        user=users.astype(np.int64),
        position=(target_pos - user_start).astype(np.int64),
        target=seq_items[target_pos].astype(np.int64),
        offsets=offsets,
        values=values.astype(np.int64),
    )


def leave_one_out(
    seq_items: np.ndarray, seq_offsets: np.ndarray, max_len: int
) -> tuple[dict[str, Instances], int]:
    """Split users' sequences (flat items + offsets, one slice per user index) into the three splits.

    Returns the splits and the number of users too short to take part.
    """
    n = np.diff(seq_offsets)
    users = np.flatnonzero(n >= 3)
    starts = seq_offsets[users]
    n_ok = n[users]
    train_users = np.repeat(users, n_ok - 3)
    train_pos = concat_ranges(starts + 1, n_ok - 3)
    splits = {
        "train": instances_at(seq_items, seq_offsets, train_users, train_pos, max_len),
        "valid": instances_at(seq_items, seq_offsets, users, starts + n_ok - 2, max_len),
        "test": instances_at(seq_items, seq_offsets, users, starts + n_ok - 1, max_len),
    }
    return splits, int((n < 3).sum())
