"""Iterative k-core filtering on users and items (RecBole's min_user_inter_num / min_item_inter_num)."""

from __future__ import annotations

import numpy as np


def kcore_mask(user: np.ndarray, item: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the interactions that survive: every kept user and item has >= k interactions.

    ``user`` and ``item`` are integer codes. Repeated (user, item) pairs count once each, as in RecBole.
    """
    keep = np.ones(len(user), dtype=bool)
    if k <= 0:
        return keep
    n_users = int(user.max()) + 1 if len(user) else 0
    n_items = int(item.max()) + 1 if len(item) else 0
    while True:
        u_count = np.bincount(user[keep], minlength=n_users)
        i_count = np.bincount(item[keep], minlength=n_items)
        new_keep = keep & (u_count[user] >= k) & (i_count[item] >= k)
        if new_keep.sum() == keep.sum():
            return new_keep
        keep = new_keep
