"""Memory-bank partitions on hand-built entries: the reference code's length rule, target popularity,
a seeded random fraction and each user's oldest/newest entries."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from raserec_core.config import MemoryConfig  # noqa: E402
from raserec_core.memory.entries import Entries  # noqa: E402
from raserec_core.memory.partition import (  # noqa: E402
    length_mask,
    partition_mask,
    popularity_mask,
    random_mask,
    time_mask,
)

LENGTHS = torch.arange(1, 11)  # 1..10


def kept(mask: torch.Tensor, values: torch.Tensor = LENGTHS) -> list[int]:
    return values[mask].tolist()


@pytest.mark.parametrize(
    "lower, upper, reverse, want",
    [
        (3, 6, False, [3, 4, 5, 6]),  # both bounds: lower <= len <= upper
        (3, 6, True, [1, 2, 7, 8, 9, 10]),  # ... inverted
        (0, 4, False, [1, 2, 3]),  # only upper: len < upper
        (0, 4, True, [4, 5, 6, 7, 8, 9, 10]),
        (7, 0, False, [8, 9, 10]),  # only lower: len > lower
        (7, 0, True, [1, 2, 3, 4, 5, 6, 7]),
        (0, 0, False, list(range(1, 11))),  # no bound: everything
        (0, 0, True, list(range(1, 11))),  # ... and reverse does not invert "no partition"
    ],
)
def test_length_mask_reference_semantics(lower, upper, reverse, want):
    mask = length_mask(LENGTHS, lower, upper, reverse)
    assert mask.dtype == torch.bool and mask.shape == LENGTHS.shape
    assert kept(mask) == want


# targets: item 1 x4, item 2 x3, item 3 x2, item 4 x1 (item 5 never a target)
TARGETS = torch.tensor([3, 1, 2, 1, 4, 2, 1, 3, 2, 1])


def test_popularity_head_keeps_the_most_popular_items_covering_the_fraction():
    assert kept(popularity_mask(TARGETS, 0.7, "head"), TARGETS) == [1, 2, 1, 2, 1, 2, 1]  # items 1, 2: 70%
    assert kept(popularity_mask(TARGETS, 0.5, "head"), TARGETS) == [1, 1, 1, 1]  # item 1 (40%); +item 2 = 70% > 50%
    assert popularity_mask(TARGETS, 1.0, "head").all()


def test_popularity_tail_keeps_the_least_popular_items_covering_the_fraction():
    assert kept(popularity_mask(TARGETS, 0.3, "tail"), TARGETS) == [3, 4, 3]  # items 4, 3: 10% + 20%
    assert kept(popularity_mask(TARGETS, 0.1, "tail"), TARGETS) == [4]
    assert not popularity_mask(TARGETS, 0.05, "tail").any()


def test_random_fraction_is_seeded_and_approximately_the_fraction():
    a = random_mask(5000, 0.3, seed=7)
    assert a.dtype == torch.bool and a.shape == (5000,)
    assert torch.equal(a, random_mask(5000, 0.3, seed=7))
    assert not torch.equal(a, random_mask(5000, 0.3, seed=8))
    assert abs(a.float().mean().item() - 0.3) < 0.03
    assert random_mask(100, 1.0, seed=0).all() and not random_mask(100, 0.0, seed=0).any()


# two users, entries deliberately out of order: user 0 at positions 1..4, user 1 at positions 1..2
USER = torch.tensor([0, 1, 0, 0, 1, 0])
POSITION = torch.tensor([3, 2, 1, 4, 1, 2])


def test_time_head_keeps_each_users_oldest_entries():
    mask = time_mask(USER, POSITION, 0.5, "head")
    assert mask.tolist() == [False, False, True, False, True, True]  # user 0: positions 1, 2; user 1: position 1


def test_time_tail_keeps_each_users_newest_entries():
    mask = time_mask(USER, POSITION, 0.5, "tail")
    assert mask.tolist() == [True, True, False, True, False, False]  # user 0: positions 3, 4; user 1: position 2


def test_time_fraction_one_keeps_everything():
    assert time_mask(USER, POSITION, 1.0, "head").all()
    assert time_mask(USER, POSITION, 1.0, "tail").all()


def entries() -> Entries:
    n = len(TARGETS)
    return Entries(
        keys=torch.zeros(n, 2), values=torch.zeros(n, 2), user=torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 1, 1]),
        length=LENGTHS.clone(), position=torch.tensor([1, 2, 3, 4, 5, 1, 2, 3, 4, 5]), target=TARGETS.clone(),
    )


def test_partition_mask_by_config():
    e = entries()
    assert partition_mask(e, MemoryConfig(), seed=0).all()
    assert partition_mask(e, MemoryConfig(partition="length", len_lower_bound=3, len_upper_bound=6,
                                          len_bound_reverse=False), seed=0).tolist() == [False, False] + [True] * 4 + [False] * 4
    assert torch.equal(partition_mask(e, MemoryConfig(partition="popularity", partition_fraction=0.7), seed=0),
                       popularity_mask(e.target, 0.7, "head"))
    assert torch.equal(partition_mask(e, MemoryConfig(partition="random", partition_fraction=0.5), seed=3),
                       random_mask(10, 0.5, 3))
    assert partition_mask(e, MemoryConfig(partition="time", partition_fraction=0.4, partition_side="tail"),
                          seed=0).tolist() == [False, False, False, True, True] * 2


def test_length_bounds_combine_with_other_partitions():
    cfg = MemoryConfig(partition="time", partition_fraction=0.6, partition_side="head", len_upper_bound=3,
                       len_bound_reverse=True)  # time: positions 1..3 of each user; length: len >= 3
    assert partition_mask(entries(), cfg, seed=0).tolist() == [False, False, True, False, False, True, True, True, False, False]


def test_unknown_partition_is_an_error():
    with pytest.raises(ValueError, match="unknown memory partition 'size'"):
        partition_mask(entries(), MemoryConfig(partition="size"), seed=0)
