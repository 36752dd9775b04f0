"""Leave-one-out split with every training prefix, the max_len sliding window, and the counts."""

from __future__ import annotations

import numpy as np
import pytest

from raserec_core.data import build_dataset, read_interactions
from raserec_core.data.ranges import concat_ranges
from raserec_core.data.split import leave_one_out


def instances(inst) -> list[tuple[list[int], int, int]]:
    """(history, target, position) per row."""
    return [(inst.history(r).tolist(), int(inst.target[r]), int(inst.position[r])) for r in range(len(inst))]


def one_user(items: list[int], max_len: int):
    seq = np.asarray(items, dtype=np.int64)
    return leave_one_out(seq, np.array([0, len(seq)]), max_len)


def test_exact_instances_for_one_user():
    splits, too_short = one_user([11, 12, 13, 14, 15, 16], max_len=50)
    assert too_short == 0
    assert instances(splits["train"]) == [([11], 12, 1), ([11, 12], 13, 2), ([11, 12, 13], 14, 3)]
    assert instances(splits["valid"]) == [([11, 12, 13, 14], 15, 4)]
    assert instances(splits["test"]) == [([11, 12, 13, 14, 15], 16, 5)]
    assert splits["train"].user.tolist() == [0, 0, 0]


def test_sliding_window_keeps_the_last_max_len_items():
    splits, _ = one_user([11, 12, 13, 14, 15, 16], max_len=3)
    assert instances(splits["train"]) == [([11], 12, 1), ([11, 12], 13, 2), ([11, 12, 13], 14, 3)]
    assert instances(splits["valid"]) == [([12, 13, 14], 15, 4)]
    assert instances(splits["test"]) == [([13, 14, 15], 16, 5)]
    assert splits["test"].lengths.tolist() == [3]


def test_sliding_window_on_training_prefixes():
    splits, _ = one_user([1, 2, 3, 4, 5, 6, 7], max_len=2)
    assert instances(splits["train"]) == [([1], 2, 1), ([1, 2], 3, 2), ([2, 3], 4, 3), ([3, 4], 5, 4)]
    assert max(splits["train"].lengths) == 2


def test_user_with_exactly_three_items_has_no_training_instance():
    splits, too_short = one_user([7, 8, 9], max_len=50)
    assert len(splits["train"]) == 0
    assert instances(splits["valid"]) == [([7], 8, 1)]
    assert instances(splits["test"]) == [([7, 8], 9, 2)]
    assert too_short == 0


def test_several_users_offsets_and_short_users():
    # user 0: 5 items, user 1: 2 items (too short), user 2: 4 items, user 3: 1 item (too short)
    seq = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], dtype=np.int64)
    offsets = np.array([0, 5, 7, 11, 12])
    splits, too_short = leave_one_out(seq, offsets, max_len=50)
    assert too_short == 2
    assert instances(splits["train"]) == [([1], 2, 1), ([1, 2], 3, 2), ([8], 9, 1)]
    assert splits["train"].user.tolist() == [0, 0, 2]
    assert instances(splits["valid"]) == [([1, 2, 3], 4, 3), ([8, 9], 10, 2)]
    assert instances(splits["test"]) == [([1, 2, 3, 4], 5, 4), ([8, 9, 10], 11, 3)]
    assert splits["test"].user.tolist() == [0, 2]


def test_counts_through_build_dataset(write):
    # lengths 6, 3, 2 (dropped), 4, 1 (dropped): 19 interactions by 5 users, 3 kept
    text = "a 1 2 3 4 5 6\nb 1 2 3\nc 1 2\nd 3 4 5 6\ne 6\n"
    ds = build_dataset(read_interactions(write("log.txt", text)), k_core=0, max_len=3)
    kept_interactions = 6 + 3 + 4
    assert ds.stats["instances"] == {"train": kept_interactions - 3 * 3, "valid": 3, "test": 3}
    assert ds.stats["users_too_short"] == 2
    assert ds.stats["filtered"]["interactions"] == kept_interactions  # the short users' rows are gone
    assert ds.stats["max_len"] == 3
    assert max(ds.splits["valid"].lengths) == 3 and max(ds.splits["test"].lengths) == 3


@pytest.mark.parametrize(("starts", "lengths", "expected"), [
    ([5, 0, 9], [2, 0, 3], [5, 6, 9, 10, 11]),
    ([3], [0], []),
    ([0, 0], [1, 1], [0, 0]),
])
def test_concat_ranges(starts, lengths, expected):
    assert concat_ranges(np.array(starts), np.array(lengths)).tolist() == expected
