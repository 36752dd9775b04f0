"""Popularity groups of the long-tail analysis on hand-made targets."""

from __future__ import annotations

import numpy as np

from raserec_core.analysis.longtail import target_groups


def test_groups_are_equal_size_by_target_popularity_and_head_covers_the_share():
    # training targets: item 1 ×6, item 2 ×3, item 3 ×1, item 4 never
    train = np.array([1] * 6 + [2] * 3 + [3])
    targets = np.array([4, 1, 3, 2, 1, 2, 4, 3, 1, 2])  # 10 test users
    group, head = target_groups(targets, train, n_items=5, n_groups=5, head_share=0.5)
    assert np.bincount(group).tolist() == [2, 2, 2, 2, 2]
    counts = np.bincount(train, minlength=5)[targets]
    assert all(counts[group == g].max() <= counts[group == g + 1].min() for g in range(4))
    # item 1 alone makes up 60% >= 50% of the training targets: the head is item 1
    assert head.tolist() == [t == 1 for t in targets.tolist()]
