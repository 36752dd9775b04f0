"""Iterative k-core filtering: cascades, k=0 switched off, duplicates counted."""

from __future__ import annotations

import numpy as np

from raserec_core.data import build_dataset, read_interactions
from raserec_core.data.kcore import kcore_mask

# users A..D = 0..3, items x, y, z = 0, 1, 2 (k = 2):
# D has one interaction -> D goes; then z has one -> z goes; then C has one -> C goes.
# A single pass would keep C and z (both have 2 before anything is removed).
CASCADE_USER = np.array([0, 0, 1, 1, 2, 2, 3])
CASCADE_ITEM = np.array([0, 1, 0, 1, 0, 2, 2])


def test_kcore_cascade_removes_users_that_drop_below_k():
    keep = kcore_mask(CASCADE_USER, CASCADE_ITEM, 2)
    assert keep.tolist() == [True, True, True, True, False, False, False]


def test_kcore_result_is_a_fixed_point():
    keep = kcore_mask(CASCADE_USER, CASCADE_ITEM, 2)
    assert (np.bincount(CASCADE_USER[keep])[np.unique(CASCADE_USER[keep])] >= 2).all()
    assert (np.bincount(CASCADE_ITEM[keep])[np.unique(CASCADE_ITEM[keep])] >= 2).all()


def test_kcore_zero_keeps_everything():
    user = np.array([0, 1, 2])
    item = np.array([0, 1, 2])
    assert kcore_mask(user, item, 0).all()
    assert kcore_mask(user, item, -1).all()


def test_kcore_one_keeps_everything():
    assert kcore_mask(CASCADE_USER, CASCADE_ITEM, 1).all()


def test_kcore_counts_duplicate_interactions():
    # user 0 saw item 0 twice: two interactions for both, so 2-core keeps them
    keep = kcore_mask(np.array([0, 0, 1]), np.array([0, 0, 1]), 2)
    assert keep.tolist() == [True, True, False]


def test_kcore_can_remove_everything():
    assert not kcore_mask(np.array([0, 1]), np.array([0, 1]), 2).any()


def test_build_dataset_applies_the_cascade_and_counts(write):
    # the same cascade through raw ids, with timestamps; A and B also get a third item w to pass LOO
    rows = [("A", "x"), ("A", "y"), ("B", "x"), ("B", "y"), ("C", "x"), ("C", "z"), ("D", "z"),
            ("A", "w"), ("B", "w")]
    text = "user_id,item_id,timestamp\n" + "".join(f"{u},{i},{t}\n" for t, (u, i) in enumerate(rows))
    ds = build_dataset(read_interactions(write("log.csv", text)), k_core=2, max_len=50, source="log.csv")
    assert ds.user_ids.tolist() == ["A", "B"]
    assert ds.item_ids.tolist() == ["", "w", "x", "y"]
    assert ds.stats["raw"] == {"users": 4, "items": 4, "interactions": 9}
    assert ds.stats["filtered"] == {"users": 2, "items": 3, "interactions": 6}


def test_build_dataset_k_core_zero_drops_users_too_short_for_the_split_and_counts_them(write):
    ds = build_dataset(read_interactions(write("log.txt", "u1 1 2 3\nu2 4\n")), k_core=0, max_len=50)
    assert ds.stats["filtered"] == {"users": 1, "items": 3, "interactions": 3}
    assert ds.stats["users_too_short"] == 1
    assert ds.user_ids.tolist() == ["u1"]
