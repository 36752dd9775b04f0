"""Backbone options: the LiGR block's equations, the feed-forward width key and the sampled softmax."""

from __future__ import annotations

import dataclasses

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from raserec_core.config import ConfigError, load_config  # noqa: E402
from raserec_core.models.encoder import build_encoder  # noqa: E402
from raserec_core.models.ligr import LiGRBlock  # noqa: E402
from raserec_core.models.objectives import next_item_loss  # noqa: E402
from raserec_core.models.sampled_softmax import sampled_softmax_ce  # noqa: E402

N_ITEMS, MAX_LEN = 40, 8


def test_ligr_block_matches_its_equations():
    torch.manual_seed(0)
    block = LiGRBlock(hidden_size=8, n_heads=2, inner_size=12, hidden_dropout=0.0, attn_dropout=0.0, eps=1e-12).eval()
    x = torch.randn(3, 5, 8)
    B, L, D, H = 3, 5, 8, 2

    def attention(u):
        q, k, v = block.qkv(u).split(D, dim=-1)
        heads = lambda t: t.view(B, L, H, D // H).transpose(1, 2)
        s = heads(q) @ heads(k).transpose(-1, -2) / (D // H) ** 0.5
        s = s.masked_fill(torch.ones(L, L).triu(1).bool(), float("-inf"))
        return block.out((s.softmax(-1) @ heads(v)).transpose(1, 2).reshape(B, L, D))

    ffn = lambda u: block.ffn.w2(F.silu(block.ffn.w1(u)) * block.ffn.w3(u))
    y = x + torch.sigmoid(block.attn_residual.gate(x)) * attention(block.attn_norm(x))
    y = y + torch.sigmoid(block.ffn_residual.gate(y)) * ffn(block.ffn_norm(y))
    torch.testing.assert_close(block(x), y)


def test_ligr_encoder_is_causal_and_normalised():
    cfg = load_config(overrides=["model.layer=ligr", "model.hidden_size=16", "model.ff_multiplier=4"]).model
    enc = build_encoder("sasrec", N_ITEMS, MAX_LEN, cfg).eval()
    assert enc.blocks[0].ffn.w1.out_features == 64  # hidden_size × ff_multiplier
    seqs = torch.tensor([[3, 4, 5, 6, 0, 0], [3, 4, 5, 9, 10, 11]])
    out = enc.sequence_output(seqs)
    # The first three positions are the same prefix in both rows: later items must not change them.
    torch.testing.assert_close(out[0, :3], out[1, :3])
    # The closing LayerNorm (weight 1, bias 0 at init): zero mean, unit variance per position.
    torch.testing.assert_close(out.mean(-1), torch.zeros(2, 6), atol=1e-5, rtol=0)
    assert not torch.allclose(out[0, 3], out[1, 3])


def test_ff_multiplier_overrides_inner_size_and_zero_keeps_it():
    cfg = load_config(overrides=["model.hidden_size=32", "model.inner_size=100"]).model
    assert cfg.ffn_size == 100
    assert dataclasses.replace(cfg, ff_multiplier=2.0).ffn_size == 64
    assert build_encoder("sasrec", N_ITEMS, MAX_LEN, dataclasses.replace(cfg, ff_multiplier=2.0)).blocks[0].ffn.fc1.out_features == 64


def test_unknown_layer_is_a_config_error():
    with pytest.raises(ConfigError, match="model.layer"):
        load_config(overrides=["model.layer=moe"])


def test_sampled_softmax_is_the_target_against_the_drawn_negatives():
    torch.manual_seed(1)
    h, table = torch.randn(4, 6), torch.randn(N_ITEMS, 6)
    target = torch.tensor([1, 7, 7, 39])
    got = sampled_softmax_ce(h, table, target, 5, torch.Generator().manual_seed(3))
    neg = torch.randint(1, N_ITEMS, (5,), generator=torch.Generator().manual_seed(3))  # shared by the rows
    assert (neg > 0).all()  # the padding row is never a negative
    losses = []
    for b in range(4):
        kept = neg[neg != target[b]]  # an accidental hit is no negative
        logits = torch.cat([h[b] @ table[target[b]][None].T, table[kept] @ h[b]])
        losses.append(-torch.log_softmax(logits, 0)[0])
    torch.testing.assert_close(got, torch.stack(losses).mean())


def test_sampled_softmax_masks_accidental_hits():
    h, table = torch.randn(2, 4), torch.randn(3, 4)  # items 1 and 2 only: half the draws hit the target
    target = torch.tensor([1, 2])
    loss = sampled_softmax_ce(h, table, target, 50, torch.Generator().manual_seed(0))
    neg = torch.randint(1, 3, (50,), generator=torch.Generator().manual_seed(0))
    other = 3 - target  # the one item that is not the row's target
    misses = (neg[None, :] != target[:, None]).sum(1)  # the draws that count; the hits are masked out
    assert 0 < misses.min() and misses.max() < 50
    pos, negl = (h * table[target]).sum(1), (h * table[other]).sum(1)
    expected = -(pos - torch.log(pos.exp() + misses * negl.exp()))
    torch.testing.assert_close(loss, expected.mean())


def test_next_item_loss_full_equals_cross_entropy_and_sampled_reaches_the_table():
    torch.manual_seed(2)
    h = torch.randn(5, 6)
    table = torch.randn(N_ITEMS, 6, requires_grad=True)
    target = torch.randint(1, N_ITEMS, (5,))
    full = next_item_loss("full")(h, table, target, None)
    torch.testing.assert_close(full, F.cross_entropy(h @ table.T, target))
    next_item_loss("sampled", 8)(h, table, target, torch.Generator().manual_seed(0)).backward()
    touched = table.grad.abs().sum(1) > 0
    assert touched[target].all() and touched.sum() <= 5 + 8
    with pytest.raises(ValueError, match="softmax"):
        next_item_loss("hierarchical")
