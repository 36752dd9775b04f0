"""Stage-1 objectives: CE, InfoNCE by hand, same-target sampling, CL4SRec views, and that each trains."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from raserec_core.data.batching import InstanceTensors  # noqa: E402
from raserec_core.data.split import Instances  # noqa: E402
from raserec_core.models.encoder import build_encoder  # noqa: E402
from raserec_core.models.objectives import (  # noqa: E402
    Batch,
    CL4SRecObjective,
    CrossEntropyObjective,
    DuoRecObjective,
    SameTargetSampler,
    cl4srec_views,
    info_nce,
    next_item_ce,
)


def test_next_item_ce_equals_cross_entropy():
    h = torch.randn(6, 8)
    table = torch.randn(11, 8)
    target = torch.tensor([1, 2, 3, 10, 0, 5])
    torch.testing.assert_close(next_item_ce(h, table, target), F.cross_entropy(h @ table.T, target))


def _nt_xent_by_hand(z_i, z_j, tau, cos):
    z = [*z_i, *z_j]
    if cos:
        z = [[a / math.hypot(*v) for a in v] for v in z]
    n2 = len(z)
    total = 0.0
    for k in range(n2):
        sims = {j: sum(a * b for a, b in zip(z[k], z[j])) / tau for j in range(n2) if j != k}
        pos = (k + n2 // 2) % n2
        total += -sims[pos] + math.log(sum(math.exp(s) for s in sims.values()))
    return total / n2


@pytest.mark.parametrize("sim", ["dot", "cos"])
@pytest.mark.parametrize("tau", [1.0, 0.5])
def test_info_nce_matches_a_hand_computation(sim, tau):
    z_i = [[1.0, 0.0], [0.0, 2.0]]
    z_j = [[1.0, 1.0], [-1.0, 0.5]]
    got = info_nce(torch.tensor(z_i), torch.tensor(z_j), tau=tau, sim=sim)
    assert float(got) == pytest.approx(_nt_xent_by_hand(z_i, z_j, tau, sim == "cos"), rel=1e-6)


def test_info_nce_dot_value_for_the_2x2_case():
    # z = [(1,0), (0,1), (1,0), (0,1)]: every row's partner has sim 1, others 0 and 0
    # loss = -1 + log(e^1 + e^0 + e^0) for each of the 4 rows
    eye = torch.eye(2)
    assert float(info_nce(eye, eye)) == pytest.approx(-1 + math.log(math.e + 2), rel=1e-6)


def test_info_nce_cos_ignores_the_norm():
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    torch.testing.assert_close(info_nce(a, b, sim="cos"), info_nce(3 * a, 0.5 * b, sim="cos"))


TARGETS = torch.tensor([5, 3, 5, 7, 5, 3, 9])  # 5 x3, 3 x2, 7 and 9 unique


def test_same_target_sampler_never_returns_the_row_when_its_target_repeats():
    sampler = SameTargetSampler(TARGETS)
    rows = torch.arange(len(TARGETS)).repeat(200)
    g = torch.Generator().manual_seed(0)
    partner = sampler(rows, g)
    assert torch.equal(TARGETS[partner], TARGETS[rows])  # always the same target
    repeated = torch.isin(TARGETS[rows], torch.tensor([5, 3]))
    assert not (partner[repeated] == rows[repeated]).any()
    assert torch.equal(partner[~repeated], rows[~repeated])  # unique target -> the row itself


def test_same_target_sampler_is_uniform_over_the_others():
    sampler = SameTargetSampler(TARGETS)
    partner = sampler(torch.zeros(3000, dtype=torch.long), torch.Generator().manual_seed(1))
    counts = torch.bincount(partner, minlength=len(TARGETS))
    assert set(torch.nonzero(counts).flatten().tolist()) == {2, 4}
    assert abs(int(counts[2]) - 1500) < 150


def test_same_target_sampler_is_deterministic_for_a_generator():
    sampler = SameTargetSampler(TARGETS)
    rows = torch.arange(7).repeat(10)
    a = sampler(rows, torch.Generator().manual_seed(3))
    b = sampler(rows, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


MASK = 10_000  # larger than any item id in these rows


def _views(lengths, seed=0):
    L = max(lengths)
    seqs = torch.zeros(len(lengths), L, dtype=torch.long)
    for r, n in enumerate(lengths):
        seqs[r, :n] = torch.arange(1, n + 1) + 10 * r  # distinct items inside a row
    out, out_len = cl4srec_views(seqs, torch.tensor(lengths), MASK, 0.6, 0.3, 0.6,
                                 generator=torch.Generator().manual_seed(seed))
    return seqs, out, out_len


def test_cl4srec_views_keep_lengths_and_items_right():
    lengths = [n for n in range(2, 13)] * 12
    seqs, out, out_len = _views(lengths)
    assert out.shape == seqs.shape
    kinds = {"crop": 0, "mask": 0, "reorder": 0}
    for r, n in enumerate(lengths):
        orig, view, m = seqs[r, :n].tolist(), out[r].tolist(), int(out_len[r])
        assert all(v == 0 for v in view[m:]), "padding after the view's length"
        if m < n:  # crop: a contiguous window of max(1, floor(0.6 n)) items
            kinds["crop"] += 1
            assert m == max(1, math.floor(0.6 * n))
            window = view[:m]
            start = orig.index(window[0])
            assert orig[start : start + m] == window
        elif MASK in view:  # mask: exactly floor(0.3 n) items replaced, the rest unchanged
            kinds["mask"] += 1
            assert m == n
            assert view[:n].count(MASK) == math.floor(0.3 * n)
            assert all(v == o for v, o in zip(view[:n], orig) if v != MASK)
        else:  # reorder: a permutation of the original items, changed only inside one window
            kinds["reorder"] += 1
            assert m == n
            assert sorted(view[:n]) == sorted(orig)
            moved = [i for i in range(n) if view[i] != orig[i]]
            if moved:
                assert moved[-1] - moved[0] + 1 <= math.floor(0.6 * n)
    assert min(kinds.values()) > 10, kinds  # every augmentation is exercised


def test_cl4srec_length_one_rows():
    seqs, out, out_len = _views([1] * 30)
    assert out_len.tolist() == [1] * 30
    assert torch.equal(out, seqs)  # crop keeps 1, mask replaces 0, reorder moves nothing


def test_cl4srec_views_are_deterministic_for_a_generator():
    _, a, la = _views([5, 8, 3], seed=7)
    _, b, lb = _views([5, 8, 3], seed=7)
    assert torch.equal(a, b) and torch.equal(la, lb)


# ---- each objective trains on a toy task -------------------------------------------------------------

N_ITEMS = 12


@pytest.fixture
def toy_train():
    """Next item = previous + 1 (mod 11, from 1): prefixes of cyclic sequences; targets repeat."""
    hist, targets = [], []
    for start in range(1, N_ITEMS):
        seq = [(start + j - 1) % (N_ITEMS - 1) + 1 for j in range(6)]
        for t in range(1, 6):
            hist.append(seq[:t])
            targets.append(seq[t])
    offsets = np.concatenate([[0], np.cumsum([len(h) for h in hist])])
    inst = Instances(user=np.zeros(len(hist), dtype=np.int64), position=np.ones(len(hist), dtype=np.int64),
                     target=np.array(targets), offsets=offsets, values=np.concatenate(hist))
    return InstanceTensors(inst)


def _objective(name, train):
    if name == "ce":
        return CrossEntropyObjective()
    if name == "cl4srec":
        return CL4SRecObjective(mask_token=N_ITEMS, lmd=0.1)
    return DuoRecObjective(SameTargetSampler(train.target), train.fetch, contrast=name.split(":")[1],
                           lmd=0.1, lmd_sem=0.1)


@pytest.mark.parametrize("name", ["ce", "duorec:un", "duorec:su", "duorec:us", "duorec:us_x", "cl4srec"])
def test_objective_loss_is_finite_and_decreases(name, toy_train):
    from raserec_core.config import ModelConfig

    torch.manual_seed(0)
    extra = 1 if name == "cl4srec" else 0
    cfg = ModelConfig(hidden_size=16, n_layers=1, inner_size=32, hidden_dropout=0.1, attn_dropout=0.1)
    enc = build_encoder("sasrec", N_ITEMS, 8, cfg, n_extra_tokens=extra)
    objective = _objective(name, toy_train)
    opt = torch.optim.Adam(enc.parameters(), lr=0.01)
    rows = torch.arange(len(toy_train))
    seqs, lengths = toy_train.fetch(rows)
    batch = Batch(rows=rows, seqs=seqs, lengths=lengths, target=toy_train.target)
    g = torch.Generator().manual_seed(0)
    losses = []
    enc.train()
    for _ in range(30):
        loss, parts = objective(enc, batch, g)
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3, losses
    expected_parts = {"ce": {"rec"}, "duorec:un": {"rec", "un"}, "duorec:su": {"rec", "su"},
                      "duorec:us": {"rec", "un", "su"}, "duorec:us_x": {"rec", "su"}, "cl4srec": {"rec", "cl"}}
    assert set(parts) == expected_parts[name]
    assert all(not v.requires_grad for v in parts.values())


def _batch(train):
    rows = torch.arange(len(train))
    seqs, lengths = train.fetch(rows)
    return Batch(rows=rows, seqs=seqs, lengths=lengths, target=train.target)


@pytest.mark.parametrize(("contrast", "formula"), [
    ("un", lambda p, lmd, sem: p["rec"] + lmd * p["un"]),
    ("su", lambda p, lmd, sem: p["rec"] + sem * p["su"]),
    ("us", lambda p, lmd, sem: p["rec"] + lmd * p["un"] + sem * p["su"]),
    ("us_x", lambda p, lmd, sem: p["rec"] + sem * p["su"]),  # lmd unused
])
def test_duorec_loss_is_the_weighted_sum_of_its_parts(contrast, formula, toy_train, tiny_cfg):
    enc = build_encoder("sasrec", N_ITEMS, 8, tiny_cfg).train()
    obj = DuoRecObjective(SameTargetSampler(toy_train.target), toy_train.fetch, contrast=contrast,
                          lmd=0.7, lmd_sem=0.3)
    loss, parts = obj(enc, _batch(toy_train), torch.Generator().manual_seed(0))
    assert float(loss.detach()) == pytest.approx(float(formula(parts, 0.7, 0.3)), rel=1e-5)


def test_duorec_us_x_contrasts_the_dropout_view_with_the_positive(toy_train, tiny_cfg):
    # without dropout h' = h, so us_x and su give the same loss for the same positives
    from raserec_core.config import ModelConfig

    cfg = ModelConfig(hidden_size=16, inner_size=32, hidden_dropout=0.0, attn_dropout=0.0)
    enc = build_encoder("sasrec", N_ITEMS, 8, cfg).train()
    make = lambda c: DuoRecObjective(SameTargetSampler(toy_train.target), toy_train.fetch, contrast=c)  # noqa: E731
    a, _ = make("us_x")(enc, _batch(toy_train), torch.Generator().manual_seed(5))
    b, _ = make("su")(enc, _batch(toy_train), torch.Generator().manual_seed(5))
    assert float(a.detach()) == pytest.approx(float(b.detach()), rel=1e-6)


def test_duorec_us_value_by_hand_in_eval_mode(toy_train, tiny_cfg):
    # each view read back from the one fused pass must be the right one: h, h' = h (no dropout), h_s
    enc = build_encoder("sasrec", N_ITEMS, 8, tiny_cfg).eval()
    sampler = SameTargetSampler(toy_train.target)
    batch = _batch(toy_train)
    loss, parts = DuoRecObjective(sampler, toy_train.fetch, contrast="us", lmd=0.7, lmd_sem=0.3)(
        enc, batch, torch.Generator().manual_seed(3))
    h = enc(batch.seqs, batch.lengths)
    h_s = enc(*toy_train.fetch(sampler(batch.rows, torch.Generator().manual_seed(3))))
    expected = next_item_ce(h, enc.item_table, batch.target) + 0.7 * info_nce(h, h) + 0.3 * info_nce(h, h_s)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(parts["su"], info_nce(h, h_s).detach(), rtol=1e-5, atol=1e-6)


def test_duorec_unknown_contrast(toy_train):
    with pytest.raises(ValueError, match="'xx'"):
        DuoRecObjective(SameTargetSampler(toy_train.target), toy_train.fetch, contrast="xx")


def test_ce_objective_equals_next_item_ce(toy_train, tiny_cfg):
    enc = build_encoder("sasrec", N_ITEMS, 8, tiny_cfg).eval()
    batch = _batch(toy_train)
    loss, parts = CrossEntropyObjective()(enc, batch)
    expected = next_item_ce(enc(batch.seqs, batch.lengths), enc.item_table, batch.target)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(parts["rec"], expected.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batch,n_items", [(5, 7), (37, 30000), (300, 2100)])  # one block, several, ragged last
def test_blocked_softmax_ce_equals_cross_entropy_with_gradients(batch, n_items):
    from raserec_core.models.full_softmax import full_softmax_ce

    g = torch.Generator().manual_seed(batch)
    h = torch.randn(batch, 8, generator=g, requires_grad=True)
    table = (torch.randn(n_items, 8, generator=g) * 2).requires_grad_()
    target = torch.randint(0, n_items, (batch,), generator=g)
    target[0] = 0  # the padding row is a legal (if useless) class, as in the reference
    target[-1] = n_items - 1
    want = F.cross_entropy(h @ table.T, target)
    want_h, want_table = torch.autograd.grad(want * 3.0, (h, table))
    got = full_softmax_ce(h, table, target)
    got_h, got_table = torch.autograd.grad(got * 3.0, (h, table))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_h, want_h, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(got_table, want_table, rtol=1e-4, atol=1e-6)


def test_blocked_softmax_ce_leaves_a_frozen_table_alone():
    from raserec_core.models.full_softmax import full_softmax_ce

    h = torch.randn(4, 8, requires_grad=True)
    table = torch.randn(600, 8)
    full_softmax_ce(h, table, torch.tensor([1, 2, 3, 599])).backward()
    assert h.grad is not None and torch.isfinite(h.grad).all() and table.grad is None
