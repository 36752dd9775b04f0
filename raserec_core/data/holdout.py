"""A drift hold-out: the dataset as it stood before some users' newest interactions.

RaSeRec (Zhao et al., arXiv 2412.18378, abstract and §1) claims its memory bank copes with preference
drift: new interactions are added as memories without retraining. To measure that, a seeded share of
users ("drift users") is set back in time. A drift user with items i_0..i_{n-1} keeps i_0..i_{k-1} and
loses the newest ``m`` items of its training prefix (i_0..i_{n-3}) together with its validation item
i_{n-2}: those m + 1 items are the *held-out* interactions. The test item i_{n-1} is in neither part.

The *stale* dataset is the leave-one-out split of the cut sequences (drift users) and of the whole
sequences (everyone else), under the full dataset's user and item index, so a model trained on it and
one trained on the full dataset score the same items for the same users, and a memory bank built from
it maps the held-out raw ids back to the same indices. Its bank's user state ends at i_{k-1}, so adding
the held-out interactions appends them at positions k..n-2, exactly where the full dataset has them.

m = round(share · (n - 2)), at least 1 and at most n - 5: the stale user keeps k = n - 2 - m >= 3 items,
the fewest a leave-one-out split takes. Only users with n >= 6 can drift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from .artifact import SeqDataset, fingerprint
from .ranges import concat_ranges
from .readers import Interactions
from .split import SPLITS, leave_one_out

MIN_DRIFT_ITEMS = 6  # n - 2 - m >= 3 with m >= 1


@dataclass(frozen=True)
class Holdout:
    stale: SeqDataset
    drift_users: np.ndarray  # (U_d,) int64 user indices, ascending
    cut: np.ndarray  # (U_d,) int64 items each drift user keeps (positions 0..cut-1)
    held_out: Interactions  # raw ids; time = the item's 0-based position in its user's sequence


def user_sequences(ds: SeqDataset) -> tuple[np.ndarray, np.ndarray]:
    """Every user's whole chronological sequence rebuilt from the splits: flat items and (U+1,) offsets.

    Each item at position p >= 1 is the target of exactly one instance; position 0 is the history of the
    instance at position 1 (every user has one: a training instance, or the validation one when n = 3).
    """
    users = np.concatenate([ds.splits[s].user for s in SPLITS])
    positions = np.concatenate([ds.splits[s].position for s in SPLITS])
    targets = np.concatenate([ds.splits[s].target for s in SPLITS])
    test = ds.splits["test"]
    n = np.zeros(ds.n_users, dtype=np.int64)
    n[test.user] = test.position + 1
    offsets = np.concatenate([[0], np.cumsum(n)]).astype(np.int64)
    slots = offsets[users] + positions
    covered = np.bincount(slots, minlength=offsets[-1])
    if len(slots) != offsets[-1] - ds.n_users or covered.max(initial=0) > 1 or (positions < 1).any():
        raise DataError(f"dataset {ds.fingerprint[:12]}: instances do not cover each user's positions 1..n-1 once")
    items = np.zeros(offsets[-1], dtype=np.int64)
    items[slots] = targets
    for name in SPLITS:  # position 0: the one-item history of the instance at position 1
        inst = ds.splits[name]
        first = np.flatnonzero(inst.position == 1)
        items[offsets[inst.user[first]]] = inst.values[inst.offsets[first]]
    return items, offsets


def hold_out_newest(ds: SeqDataset, user_fraction: float, share: float, seed: int) -> Holdout:
    """Cut ``user_fraction`` of all users (drawn with ``seed`` among those with at least 6 items) back by
    ``share`` of their training prefix plus their validation item; see the module docstring."""
    if not 0 < user_fraction < 1:
        raise DataError(f"user_fraction {user_fraction}: must lie in (0, 1)")
    if not 0 < share < 1:
        raise DataError(f"share {share}: must lie in (0, 1)")
    items, offsets = user_sequences(ds)
    n = np.diff(offsets)
    eligible = np.flatnonzero(n >= MIN_DRIFT_ITEMS)
    n_drift = int(round(user_fraction * ds.n_users))
    if n_drift < 1 or n_drift > len(eligible):
        raise DataError(
            f"dataset {ds.fingerprint[:12]}: {n_drift} drift users wanted ({user_fraction:g} of {ds.n_users}), "
            f"{len(eligible)} users have the {MIN_DRIFT_ITEMS} items a drift user needs"
        )
    drift = np.sort(np.random.default_rng(seed).choice(eligible, n_drift, replace=False)).astype(np.int64)
    nd = n[drift]
    m = np.clip(np.floor(share * (nd - 2) + 0.5).astype(np.int64), 1, nd - 5)
    cut = nd - 2 - m
    keep = n.copy()
    keep[drift] = cut
    stale_offsets = np.concatenate([[0], np.cumsum(keep)]).astype(np.int64)
    stale_items = items[concat_ranges(offsets[:-1], keep)]
    max_len = ds.stats["max_len"]
    splits, too_short = leave_one_out(stale_items, stale_offsets, max_len)
    assert too_short == 0  # every user keeps at least 3 items by construction

    held_len = nd - 1 - cut  # positions cut..n-2: never the test item at n-1
    held_pos = concat_ranges(cut, held_len)
    held_user = np.repeat(drift, held_len)
    held_items = items[offsets[held_user] + held_pos]
    held_out = Interactions(
        user=ds.user_ids[held_user], item=ds.item_ids[held_items], time=held_pos.astype(np.float64)
    )
    stats = {
        **ds.stats,
        "source": f"drift hold-out of dataset {ds.fingerprint}",
        "filtered": {**ds.stats["filtered"], "interactions": int(stale_offsets[-1])},
        "instances": {name: int(len(splits[name])) for name in SPLITS},
        "fingerprint": fingerprint(splits, ds.item_ids, ds.user_ids),
        "holdout": {
            "of": ds.fingerprint, "seed": int(seed), "user_fraction": float(user_fraction), "share": float(share),
            "drift_users": int(n_drift), "held_out_interactions": int(len(held_pos)),
        },
    }
    stale = SeqDataset(splits=splits, user_ids=ds.user_ids, item_ids=ds.item_ids, stats=stats)
    return Holdout(stale=stale, drift_users=drift, cut=cut, held_out=held_out)
