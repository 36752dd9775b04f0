"""Sequence packing: which prefix lives in which window, epoch batches, and parity with per-prefix encoding."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from raserec_core.config import ModelConfig  # noqa: E402
from raserec_core.data.batching import InstanceTensors  # noqa: E402
from raserec_core.data.packing import pack_rows, prefix_windows, window_batches  # noqa: E402
from raserec_core.data.split import leave_one_out  # noqa: E402
from raserec_core.models.encoder import build_encoder  # noqa: E402
from raserec_core.models.objectives import (  # noqa: E402
    Batch,
    CrossEntropyObjective,
    DuoRecObjective,
    Packed,
    SameTargetSampler,
)

MAX_LEN = 6


@pytest.fixture
def train():
    # user lengths 3..12 with max_len 6, so the longest users' late prefixes are cut (the sliding window)
    rng = np.random.default_rng(0)
    lens = np.array([5, 3, 12, 7, 9, 4, 11, 6, 8, 10])
    items = rng.integers(1, 30, size=int(lens.sum()))
    offsets = np.concatenate([[0], np.cumsum(lens)])
    splits, _ = leave_one_out(items, offsets, MAX_LEN)
    return InstanceTensors(splits["train"])


def test_every_history_is_the_start_of_its_window(train):
    window = prefix_windows(train.user, train.position, train.lengths)
    for r in range(len(train)):
        w = int(window[r])
        assert int(train.user[w]) == int(train.user[r])
        hist = train.fetch(torch.tensor([r]))[0][0].tolist()
        whole = train.fetch(torch.tensor([w]))[0][0].tolist()
        assert whole[: len(hist)] == hist
        if int(train.lengths[r]) < int(train.position[r]):  # a cut history is its own window
            assert w == r


def test_window_count_is_one_per_user_plus_the_cut_histories(train):
    window = prefix_windows(train.user, train.position, train.lengths)
    n_cut = int((train.lengths < train.position).sum())
    assert n_cut > 0
    assert len(torch.unique(window)) == len(torch.unique(train.user)) + n_cut


def test_window_batches_have_exactly_batch_size_rows_and_cover_each_row_once(train):
    window = prefix_windows(train.user, train.position, train.lengths)
    batches = window_batches(window, train.lengths, batch_size=4, generator=torch.Generator().manual_seed(3),
                             pool_batches=2)
    sizes = sorted(len(b) for b in batches)
    assert sizes[1:] == [4] * (len(batches) - 1) and 0 < sizes[0] <= 4
    assert sorted(torch.cat(batches).tolist()) == list(range(len(train)))
    # a window's rows stay together: n rows touch at most ceil(n / 4) + 1 batches
    windows, counts = torch.unique(window, return_counts=True)
    assert int(counts.max()) > 4  # some window must straddle two cuts for this to mean anything
    for w, n in zip(windows.tolist(), counts.tolist()):
        holders = {i for i, b in enumerate(batches) if bool((window[b] == w).any())}
        assert len(holders) <= -(-n // 4) + 1


def test_window_batches_are_seeded():
    window = torch.tensor([0, 0, 0, 3, 3, 5, 6, 6, 6, 6])
    lengths = torch.tensor([1, 2, 3, 1, 2, 1, 1, 2, 3, 4])
    run = lambda s: [b.tolist() for b in window_batches(window, lengths, 3, torch.Generator().manual_seed(s))]
    assert run(1) == run(1)
    assert any(run(1) != run(s) for s in range(2, 6))


def _batch(train, rows, window, packed: bool):
    seqs, lengths = train.fetch(rows)
    p = None
    if packed:
        windows, inverse, slot = pack_rows(window, train.lengths, rows)
        w_seqs, _ = train.fetch(windows)
        p = Packed(w_seqs, inverse, slot)
    return Batch(rows=rows, seqs=seqs, lengths=lengths, target=train.target[rows], packed=p)


@pytest.mark.parametrize("backbone", ["sasrec", "gru4rec"])
def test_packed_loss_and_gradients_equal_per_prefix_ones_without_dropout(train, backbone):
    torch.manual_seed(0)
    enc = build_encoder(backbone, 30, MAX_LEN, ModelConfig(hidden_size=16, inner_size=32)).eval()
    window = prefix_windows(train.user, train.position, train.lengths)
    rows = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:20]
    objective = CrossEntropyObjective(length_chunks=1)
    results = []
    for packed in (False, True):
        enc.zero_grad()
        loss, _ = objective(enc, _batch(train, rows, window, packed))
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in enc.parameters()]))
    (loss_a, grads_a), (loss_b, grads_b) = results
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-5, atol=1e-6)
    for ga, gb in zip(grads_a, grads_b):
        torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-6)


def test_packed_duorec_trains_and_keeps_same_target_positives_per_prefix(train):
    torch.manual_seed(0)
    enc = build_encoder("sasrec", 30, MAX_LEN, ModelConfig(hidden_size=16, inner_size=32))
    window = prefix_windows(train.user, train.position, train.lengths)
    objective = DuoRecObjective(SameTargetSampler(train.target), train.fetch, "us_x")
    opt = torch.optim.Adam(enc.parameters(), lr=1e-2)
    rows = torch.arange(len(train))
    losses = []
    for _ in range(30):
        loss, parts = objective(enc, _batch(train, rows, window, True), torch.Generator().manual_seed(1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(np.isfinite(losses)) and set(parts) == {"rec", "su"}
    assert losses[-1] < 0.7 * losses[0]


@pytest.mark.parametrize("backbone", ["sasrec", "gru4rec"])
def test_the_cuda_graph_plan_pads_batches_to_one_shape_and_keeps_the_loss(train, backbone):
    """A captured step sees every full batch as batch_size windows of max_len items; the padding changes
    neither the loss nor the gradients, and a shorter batch is left to the eager step."""
    from raserec_core.config import from_dict
    from raserec_core.training.pretrain import cuda_graph_plan

    cfg = from_dict({"data": {"max_len": MAX_LEN}, "pretrain": {"batch_size": 8},
                            "model": {"backbone": backbone, "hidden_size": 16, "inner_size": 32}})
    torch.manual_seed(0)
    enc = build_encoder(backbone, 30, MAX_LEN, cfg.model).eval()
    window = prefix_windows(train.user, train.position, train.lengths)
    objective = CrossEntropyObjective(length_chunks=1)
    plan = cuda_graph_plan(cfg, train, window, objective, enc)
    rows = torch.randperm(len(train), generator=torch.Generator().manual_seed(1))[:8]
    assert plan.prepare(rows[:7]) is None
    inputs = plan.prepare(rows)
    assert inputs["windows"].shape == (8, MAX_LEN) and inputs["inverse"].shape == (8,)
    results = []
    for loss_of in (lambda: objective(enc, _batch(train, rows, window, packed=True)), lambda: plan.loss(inputs)):
        enc.zero_grad()
        loss, _ = loss_of()
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in enc.parameters() if p.grad is not None]))
    assert torch.allclose(results[0][0], results[1][0], atol=1e-6)
    for a, b in zip(results[0][1], results[1][1]):
        assert torch.allclose(a, b, atol=1e-6)


def test_no_cuda_graph_plan_for_objectives_that_draw_on_the_host(train):
    from raserec_core.config import Config, from_dict
    from raserec_core.training.pretrain import cuda_graph_plan

    window = prefix_windows(train.user, train.position, train.lengths)
    enc = build_encoder("sasrec", 30, MAX_LEN, ModelConfig(hidden_size=16, inner_size=32))
    for pretrain in ({"objective": "duorec"}, {"softmax": "sampled"}, {"cuda_graph": False}):
        cfg = from_dict({"data": {"max_len": MAX_LEN}, "pretrain": pretrain})
        assert cuda_graph_plan(cfg, train, window, CrossEntropyObjective(), enc) is None
    assert cuda_graph_plan(Config(), train, None, CrossEntropyObjective(), enc) is None  # not packed
