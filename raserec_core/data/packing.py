"""Sequence packing: many training prefixes of one user answered by one causal pass (``batching: sequence``).

A training prefix that starts at the user's first item (its history was not cut by ``max_len``) is a
prefix of that user's longest such instance, its *window*. The encoders are causal and their positions
are left-aligned, so the window's output at position ``length - 1`` is the prefix's own representation:
one pass over the window answers every prefix in it. Prefixes beyond ``max_len`` items start later
(the sliding window) and are their own windows. Without dropout the two ways agree to rounding; in
training, the prefixes of one window share its dropout masks, which is the only difference.
"""

from __future__ import annotations

import torch

from .ranges import concat_ranges


def prefix_windows(user: torch.Tensor, position: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(R,) the row whose history holds row r's history at its start (r itself for cut histories).

    ``position`` is the target's 0-based place in the user's sequence, so a history is uncut exactly when
    ``lengths == position``; among a user's uncut rows, the longest is the window of all of them.
    """
    rooted = lengths == position
    window = torch.arange(len(user))
    if not bool(rooted.any()):
        return window
    rows = torch.nonzero(rooted).squeeze(1)
    n_users = int(user.max()) + 1
    longest = torch.full((n_users,), -1, dtype=torch.long).scatter_reduce(
        0, user[rows], lengths[rows], reduce="amax"
    )
    is_window = rooted & (lengths == longest[user])
    # Several rows may tie only if a user's data repeats a row; the first one wins.
    owner = torch.full((n_users,), len(user), dtype=torch.long).scatter_reduce(
        0, user[is_window], torch.nonzero(is_window).squeeze(1), reduce="amin"
    )
    window[rooted] = owner[user[rooted]]
    return window


def window_batches(
    window: torch.Tensor, lengths: torch.Tensor, batch_size: int, generator: torch.Generator, pool_batches: int = 64
) -> list[torch.Tensor]:
    """An epoch of batches of exactly ``batch_size`` rows (the last one less), rows of a window together.

    Windows are shuffled, cut into pools of about ``pool_batches`` batches' rows, sorted by length inside
    a pool (so a batch's windows pad little), their rows laid end to end and cut every ``batch_size``
    rows; the batches are then shuffled. A window cut by a batch boundary is encoded in both batches.
    Every row is in exactly one batch.
    """
    order = torch.argsort(window, stable=True)  # rows grouped by window
    windows, counts = torch.unique_consecutive(window[order], return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    perm = torch.randperm(len(windows), generator=generator)
    pool_of = torch.cumsum(counts[perm], 0).div(batch_size * pool_batches, rounding_mode="floor")
    # Inside a pool, shortest windows first; pools keep their shuffled order.
    perm = perm[torch.argsort(pool_of * (lengths.max() + 1) + lengths[windows[perm]], stable=True)]
    rows = order[torch.from_numpy(concat_ranges(starts[perm].numpy(), counts[perm].numpy()))]
    out = list(rows.split(batch_size))
    shuffle = torch.randperm(len(out), generator=generator)
    return [out[i] for i in shuffle.tolist()]


def pack_rows(window_of: torch.Tensor, lengths: torch.Tensor, rows: torch.Tensor):
    """For a batch of rows: (distinct window rows, each row's index among them, each row's slot)."""
    windows, inverse = torch.unique(window_of[rows], return_inverse=True)
    return windows, inverse, lengths[rows] - 1
