"""Seeded item replacement (analysis/noise.py): shares, consistency across a user's prefixes, the noisy
dataset artifact."""

from __future__ import annotations

import numpy as np
import pytest

from raserec_core.analysis.noise import corrupt, noisy_dataset
from raserec_core.data.split import leave_one_out


def _splits(n_users: int = 200, length: int = 12, n_items: int = 50, max_len: int = 6):
    rng = np.random.default_rng(0)
    items = rng.integers(1, n_items, size=n_users * length)
    offsets = np.arange(0, n_users * length + 1, length)
    return leave_one_out(items, offsets, max_len)[0]


def test_share_zero_changes_nothing_and_share_one_replaces_every_item():
    train = _splits()["train"]
    same = corrupt(train, 0.0, 50, seed=3)
    assert np.array_equal(same.values, train.values) and np.array_equal(same.target, train.target)
    every = corrupt(train, 1.0, 50, seed=3, targets=True)
    assert every.values.min() >= 1 and every.values.max() <= 49
    # a replacement equals the original with probability 1/49 only
    assert (every.values != train.values).mean() > 0.9 and (every.target != train.target).mean() > 0.9


def test_share_is_the_fraction_replaced_and_the_seed_decides_which():
    train = _splits()["train"]
    a = corrupt(train, 0.2, 50, seed=1)
    changed = (a.values != train.values).mean()
    assert 0.17 < changed < 0.22  # 0.2 less the replacements that drew the same item
    assert np.array_equal(a.values, corrupt(train, 0.2, 50, seed=1).values)
    assert not np.array_equal(a.values, corrupt(train, 0.2, 50, seed=2).values)
    assert np.array_equal(a.target, train.target)  # targets only when asked


def test_an_item_is_replaced_by_the_same_item_in_every_prefix_that_holds_it():
    train = _splits(n_users=30)["train"]
    noisy = corrupt(train, 0.3, 50, seed=0, targets=True)
    seen: dict[tuple[int, int], int] = {}
    for r in range(len(train)):  # a test of the vectorised code, row by row
        hist = noisy.history(r)
        start = train.position[r] - len(hist)
        for j, item in enumerate(hist):
            assert seen.setdefault((int(train.user[r]), int(start + j)), int(item)) == item
        assert seen.setdefault((int(train.user[r]), int(train.position[r])), int(noisy.target[r])) == noisy.target[r]


def test_noisy_dataset_replaces_training_instances_only(wide_dataset_dir, tmp_path):
    from raserec_core.data import read_dataset

    out = noisy_dataset(wide_dataset_dir, 0.5, 0, tmp_path)
    ds, clean = read_dataset(out), read_dataset(wide_dataset_dir)  # the fingerprint checks out
    assert ds.fingerprint != clean.fingerprint and ds.stats["noise"] == {"share": 0.5, "seed": 0, "source": clean.fingerprint}
    assert not np.array_equal(ds.splits["train"].values, clean.splits["train"].values)
    for name in ("valid", "test"):
        assert np.array_equal(ds.splits[name].values, clean.splits[name].values)
    assert noisy_dataset(wide_dataset_dir, 0.5, 0, tmp_path) == out  # made once


@pytest.mark.parametrize("share", [0.05, 0.25])
def test_replacement_never_draws_padding(share):
    train = _splits()["train"]
    assert corrupt(train, share, 50, seed=9, targets=True).values.min() >= 1
