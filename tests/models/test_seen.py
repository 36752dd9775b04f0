"""The offset for the items of the query's own sequence (``models.seen``): which scores it moves, its
gradient, that the next-item loss moves a learned one the way the data says, and the calibration of one
after training."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from raserec_core.models.full_softmax import full_softmax_ce, seen_log_odds  # noqa: E402
from raserec_core.models.ram import RAM, RAMConfig  # noqa: E402
from raserec_core.models.seen import calibrate_offset, first_occurrences, offset_seen  # noqa: E402


def seen_mask(history: torch.Tensor, n_items: int) -> torch.Tensor:
    """(B, n_items) True at each row's history items, padding (0) never: the dense reference."""
    mask = torch.zeros(history.shape[0], n_items, dtype=torch.bool).scatter_(1, history, True)
    mask[:, 0] = False
    return mask


def test_the_offset_moves_each_history_item_once_and_nothing_else():
    scores = torch.arange(12.0).view(2, 6)
    history = torch.tensor([[3, 3, 1, 0], [5, 0, 0, 0]])  # a repeated item, padding
    out = offset_seen(scores, history, torch.tensor(-10.0))
    expected = scores.clone()
    expected[0, [1, 3]] -= 10.0
    expected[1, 5] -= 10.0
    assert torch.equal(out, expected)  # padding (column 0) is never a seen item


def test_the_offset_equals_a_dense_mask_over_the_history():
    """The scatter onto the history's own columns against the plain form: a (B, N) mask of seen items."""
    g = torch.Generator().manual_seed(3)
    scores = torch.randn(64, 500, generator=g)
    history = torch.randint(0, 40, (64, 12), generator=g)  # many repeats and padding slots
    offset = torch.tensor(-2.5)
    dense = torch.where(seen_mask(history, 500), scores + offset, scores)
    assert torch.equal(offset_seen(scores, history, offset), dense)


def test_the_offsets_gradient_is_the_sum_over_the_seen_items():
    scores = torch.randn(3, 7)
    history = torch.tensor([[1, 2, 2], [6, 0, 0], [0, 0, 0]])
    offset = torch.zeros((), requires_grad=True)
    weights = torch.randn(3, 7)
    (offset_seen(scores, history, offset) * weights).sum().backward()
    assert offset.grad == pytest.approx(float(weights[0, 1] + weights[0, 2] + weights[1, 6]), rel=1e-6)


def test_first_occurrences_marks_each_item_of_a_row_once():
    history = torch.tensor([[4, 2, 4, 0, 0], [0, 0, 0, 0, 0], [7, 7, 7, 1, 2]])
    marks = first_occurrences(history)
    for row, m in zip(history, marks):
        assert sorted(row[m].tolist()) == sorted(set(row.tolist()) - {0})


@pytest.mark.parametrize("offset", [-3.0, 0.0, 1.5])
@pytest.mark.parametrize("n_items", [9, 3000])  # one block of the blocked log-sum-exp, several
def test_the_offset_cross_entropy_equals_the_dense_one_with_gradients(offset, n_items):
    """The blocked form (log-sum-exp plus a correction over the history's own logits) against
    ``F.cross_entropy`` over explicitly offset scores; repeated items, padding, targets in the history."""
    g = torch.Generator().manual_seed(n_items)
    B, L = 6, 5
    h = torch.randn(B, 8, generator=g, requires_grad=True)
    table = (torch.randn(n_items, 8, generator=g) * 2).requires_grad_()
    history = torch.randint(1, min(n_items, 9), (B, L), generator=g)
    history[0, 3:] = 0  # padding
    history[1, 1] = history[1, 0]  # a repeated item counts once
    target = torch.randint(1, n_items, (B,), generator=g)
    target[2] = history[2, 4]  # a target the user already has
    target[3] = 0  # the padding class, never a seen item
    b = torch.tensor(offset, requires_grad=True)
    want = F.cross_entropy(offset_seen(h @ table.T, history, b), target)
    got = full_softmax_ce(h, table, target, history, b)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    for w, gt in zip(torch.autograd.grad(want, (h, table, b)), torch.autograd.grad(got, (h, table, b))):
        torch.testing.assert_close(gt, w, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("repeat, sign", [(False, -1), (True, 1)])
def test_the_next_item_loss_learns_whether_users_come_back(repeat, sign):
    """Targets never in the history push the offset down; targets always in it push it up."""
    g = torch.Generator().manual_seed(0)
    n, L = 30, 4
    history = torch.randint(1, n // 2, (256, L), generator=g)  # the first half of the catalogue
    target = history[:, 0] if repeat else torch.randint(n // 2, n, (256,), generator=g)  # or the other half
    h, table = torch.randn(256, 8, generator=g), torch.randn(n, 8, generator=g)
    ram = RAM(RAMConfig(hidden_size=8, inner_size=8, top_k=2, history_bias="learned"))
    opt = torch.optim.Adam([ram.seen_offset], lr=0.05)
    for _ in range(50):  # the loss fine-tuning minimises
        opt.zero_grad()
        full_softmax_ce(h, table, target, history, ram.seen_offset).backward()
        opt.step()
    assert sign * float(ram.seen_offset) > 1.0


def test_the_ram_owns_the_offset_only_when_asked():
    assert RAM(RAMConfig(hidden_size=8, inner_size=8, top_k=2)).seen_offset is None
    learned = RAM(RAMConfig(hidden_size=8, inner_size=8, top_k=2, history_bias="learned"))
    assert float(learned.seen_offset) == 0.0 and "seen_offset" in learned.state_dict()
    assert any(p is learned.seen_offset for p in learned.parameters())
    calibrated = RAM(RAMConfig(hidden_size=8, inner_size=8, top_k=2, history_bias="calibrated"))
    assert "seen_offset" in calibrated.state_dict()  # saved with the weights, never trained
    assert not any(p is calibrated.seen_offset for p in calibrated.parameters())
    with pytest.raises(ValueError, match="history_bias"):
        RAM(RAMConfig(hidden_size=8, inner_size=8, top_k=2, history_bias="always"))


@pytest.mark.parametrize("flag, mode", [(True, "learned"), (False, "none")])
def test_model_folders_that_recorded_the_offset_as_a_flag_still_load(flag, mode):
    record = {"hidden_size": 8, "inner_size": 8, "top_k": 2, "history_bias": flag}
    assert RAMConfig.from_record(record) == RAMConfig(hidden_size=8, inner_size=8, top_k=2, history_bias=mode)
    assert RAMConfig.from_record({"hidden_size": 8}).history_bias == "none"  # before the offset existed


def test_seen_log_odds_are_those_of_the_softmax_mass_of_the_history():
    g = torch.Generator().manual_seed(1)
    h, table = torch.randn(4, 8, generator=g), torch.randn(3000, 8, generator=g) * 2  # several blocks
    history = torch.tensor([[1, 1, 4], [8, 0, 0], [2, 3, 5], [7, 6, 0]])  # a repeat counts once; padding never
    mass = (torch.softmax(h @ table.T, dim=1) * seen_mask(history, 3000)).sum(1)
    torch.testing.assert_close(seen_log_odds(h, table, history), (mass / (1 - mass)).log().double(),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("repeats", [0, 7, 120])
def test_the_calibrated_offset_matches_the_repeat_rate(repeats):
    """After the offset, the model's mean seen-item mass is the Krichevsky-Trofimov rate of repeat targets;
    where targets do repeat that is (nearly) the stationary point of the likelihood in the offset."""
    g = torch.Generator().manual_seed(repeats)
    log_odds = torch.randn(400, generator=g) * 2 - 3
    b = calibrate_offset(log_odds, repeats)
    rate = (repeats + 0.5) / 401
    assert torch.sigmoid(b + log_odds.double()).mean().item() == pytest.approx(rate, rel=1e-6)
    before = torch.sigmoid(log_odds.double()).mean().item()  # the model's own rate, about 0.12
    assert (b > 0) == (rate > before)  # up where users come back more often than the model says, else down
    if repeats == 0:
        assert b < -3.0  # nobody came back: seen items pushed far down
    else:
        # d/db of the negative log-likelihood, sum_j sigmoid(b + x_j) - repeats, is about the half a repeat
        grad = torch.sigmoid(b + log_odds.double()).sum().item() - repeats
        assert abs(grad) < 1.0


def test_the_calibration_refuses_what_it_cannot_fit():
    with pytest.raises(ValueError, match="no queries"):
        calibrate_offset(torch.zeros(0), 0)
    with pytest.raises(ValueError, match="repeats"):
        calibrate_offset(torch.zeros(3), 4)
