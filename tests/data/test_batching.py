"""Padded batches from ragged instances, and epoch batch orders."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from raserec_core.data.batching import InstanceTensors  # noqa: E402
from raserec_core.data.sampling import length_bucketed_batches, random_batches  # noqa: E402
from raserec_core.data.split import Instances  # noqa: E402


@pytest.fixture
def inst():
    # three histories: 5 | 5 6 7 | 8 9
    return Instances(
        user=np.array([0, 0, 1]), position=np.array([1, 3, 2]), target=np.array([6, 8, 3]),
        offsets=np.array([0, 1, 4, 6]), values=np.array([5, 5, 6, 7, 8, 9]),
    )


def test_fetch_right_pads_to_the_longest_row(inst):
    t = InstanceTensors(inst)
    seqs, lengths = t.fetch(torch.tensor([2, 0, 1]))
    assert seqs.tolist() == [[8, 9, 0], [5, 0, 0], [5, 6, 7]]
    assert lengths.tolist() == [2, 1, 3]
    assert seqs.dtype == torch.long


def test_fetch_cuts_to_the_batch_longest(inst):
    seqs, lengths = InstanceTensors(inst).fetch(torch.tensor([0]))
    assert seqs.tolist() == [[5]] and lengths.tolist() == [1]


def test_tensors_mirror_the_instances(inst):
    t = InstanceTensors(inst)
    assert len(t) == 3
    assert t.target.tolist() == [6, 8, 3]
    assert t.user.tolist() == [0, 0, 1]
    assert t.position.tolist() == [1, 3, 2]


def test_random_batches_cover_every_row_once():
    g = torch.Generator().manual_seed(1)
    batches = random_batches(23, 5, g)
    assert [len(b) for b in batches] == [5, 5, 5, 5, 3]
    assert sorted(torch.cat(batches).tolist()) == list(range(23))


def test_length_bucketed_batches_cover_every_row_once_and_group_lengths():
    lengths = torch.tensor([1, 9, 2, 8, 3, 7, 4, 6] * 4)
    g = torch.Generator().manual_seed(0)
    batches = length_bucketed_batches(lengths, batch_size=4, generator=g, pool_batches=8)
    assert sorted(torch.cat(batches).tolist()) == list(range(32))
    # one pool holds all 32 rows, so each batch is a run of the length-sorted rows
    spans = sorted((int(lengths[b].min()), int(lengths[b].max())) for b in batches)
    assert spans == [(1, 1), (2, 2), (3, 3), (4, 4), (6, 6), (7, 7), (8, 8), (9, 9)]


def test_batch_orders_are_deterministic_for_a_seed():
    lengths = torch.arange(50) % 7
    a = length_bucketed_batches(lengths, 8, torch.Generator().manual_seed(3))
    b = length_bucketed_batches(lengths, 8, torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and len(a) == len(b)
