"""The cheap-random-bits dropout: its keep rate, determinism under a seed, and scaling."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from raserec_core.models.dropout import Dropout, dropout, keep_mask  # noqa: E402

N = 200_000  # std of the keep rate is about 0.001 at this size


@pytest.mark.parametrize("p", [0.5, 0.3, 0.1])
def test_keep_rate_is_close_to_one_minus_p(p):
    mask = keep_mask(torch.Size([N]), p, torch.device("cpu"))
    assert mask.dtype == torch.bool and mask.shape == (N,)
    assert abs(float(mask.float().mean()) - (1 - p)) < 0.006


def test_keep_mask_keeps_the_shape():
    mask = keep_mask(torch.Size([3, 7, 5]), 0.3, torch.device("cpu"))
    assert mask.shape == (3, 7, 5)


@pytest.mark.parametrize("p", [0.5, 0.3])
def test_keep_mask_is_deterministic_under_manual_seed(p):
    torch.manual_seed(42)
    a = keep_mask(torch.Size([1000]), p, torch.device("cpu"))
    torch.manual_seed(42)
    b = keep_mask(torch.Size([1000]), p, torch.device("cpu"))
    c = keep_mask(torch.Size([1000]), p, torch.device("cpu"))
    assert torch.equal(a, b)
    assert not torch.equal(b, c)


def test_half_mask_bits_are_not_correlated_between_neighbours():
    mask = keep_mask(torch.Size([N]), 0.5, torch.device("cpu")).float()
    both = float((mask[1:] * mask[:-1]).mean())
    assert abs(both - 0.25) < 0.006


def test_dropout_scales_kept_values_and_zeroes_the_rest():
    x = torch.ones(10_000)
    y = dropout(x, 0.3, training=True)
    kept = y != 0
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / 0.7))
    assert abs(float(y.mean()) - 1.0) < 0.05


def test_dropout_edge_cases():
    x = torch.randn(5, 4)
    assert dropout(x, 0.5, training=False) is x
    assert dropout(x, 0.0, training=True) is x
    assert torch.equal(dropout(x, 1.0, training=True), torch.zeros_like(x))


def test_dropout_module_follows_train_and_eval():
    m = Dropout(0.5)
    x = torch.ones(1000)
    assert torch.equal(m.eval()(x), x)
    assert set(m.train()(x).unique().tolist()) == {0.0, 2.0}
    assert repr(m) == "Dropout(p=0.5)"
