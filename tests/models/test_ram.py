"""The Retrieval-Augmented Module (docs/method.md §4): shapes, masking of missing memories, the fusion weights,
the length gate, the named options and the parameter count."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from raserec_core.models.ram import RAM, RAMConfig  # noqa: E402

B, K, D = 3, 4, 16


def ram(**kw) -> RAM:
    cfg = {"hidden_size": D, "inner_size": 32, "top_k": K, **kw}
    return RAM(RAMConfig(**cfg))


def inputs(seed: int = 0, b: int = B, k: int = K):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(b, D, generator=g)
    S = torch.randn(b, k, D, generator=g)
    T = torch.randn(b, k, D, generator=g)
    return h, S, T


def bigger_weights(module: RAM) -> RAM:
    """Initialisation std 0.02 makes the RAM's output tiny; scale it so that differences show."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return module


def trainable(module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def test_output_shape_and_dtype():
    m = ram().eval()
    h, S, T = inputs()
    out = m(h, S, T, torch.ones(B, K, dtype=torch.bool))
    assert out.shape == (B, D) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_batch_of_one_keeps_its_batch_dimension():
    m = ram().eval()
    h, S, T = inputs(b=1)
    assert m(h, S, T, torch.ones(1, K, dtype=torch.bool)).shape == (1, D)


def test_changing_a_masked_slot_does_not_change_the_output():
    m = bigger_weights(ram(beta=0.5)).eval()
    h, S, T = inputs()
    mask = torch.tensor([[True, True, False, False], [True, False, True, False], [True, True, True, True]])
    out = m(h, S, T, mask)
    S2, T2 = S.clone(), T.clone()
    S2[~mask] = torch.randn(int((~mask).sum()), D) * 100
    T2[~mask] = torch.randn(int((~mask).sum()), D) * 100
    assert torch.equal(m(h, S2, T2, mask), out)
    # ... while changing a present slot does
    S2[0, 0] += 1.0
    assert not torch.allclose(m(h, S2, T2, mask)[0], out[0], atol=1e-4)


def test_masked_slots_act_as_if_absent():
    m = bigger_weights(ram(beta=0.5)).eval()
    h, S, T = inputs()
    mask = torch.ones(B, K, dtype=torch.bool)
    mask[:, 2:] = False
    torch.testing.assert_close(m(h, S, T, mask), m(h, S[:, :2], T[:, :2], mask[:, :2]), atol=1e-6, rtol=1e-5)


def test_row_without_memory_returns_h_exactly():
    m = bigger_weights(ram(beta=0.5)).eval()
    h, S, T = inputs()
    mask = torch.ones(B, K, dtype=torch.bool)
    mask[1] = False
    out = m(h, S, T, mask)
    assert torch.equal(out[1], h[1])
    assert not torch.allclose(out[0], h[0], atol=1e-3) and not torch.allclose(out[2], h[2], atol=1e-3)
    assert torch.isfinite(out).all()


def test_row_without_memory_in_training_mode_has_finite_gradients():
    m = ram(beta=0.5).train()
    h, S, T = inputs()
    mask = torch.zeros(B, K, dtype=torch.bool)
    mask[0, 0] = True
    m(h, S, T, mask).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


def channel_grads(m: RAM, beta: float):
    h, S, T = inputs()
    m(h, S, T, torch.ones(B, K, dtype=torch.bool)).pow(2).sum().backward()
    return [p.grad for p in m.seq_tar.parameters()], [p.grad for p in m.tar_seq.parameters()]


def test_beta_one_gives_the_tar_seq_channel_no_gradient():
    m = ram(beta=1.0).train()
    seq_tar, tar_seq = channel_grads(m, 1.0)
    assert all(g is None for g in tar_seq)
    assert all(g is not None for g in seq_tar)
    assert sum(g.abs().sum() for g in seq_tar) > 0


def test_beta_half_trains_both_channels():
    m = ram(beta=0.5).train()
    seq_tar, tar_seq = channel_grads(m, 0.5)
    for grads in (seq_tar, tar_seq):
        assert all(g is not None for g in grads)
        assert sum(g.abs().sum() for g in grads) > 0


def test_beta_zero_gives_the_seq_tar_channel_no_gradient():
    m = ram(beta=0.0).train()
    seq_tar, tar_seq = channel_grads(m, 0.0)
    assert all(g is None for g in seq_tar) and all(g is not None for g in tar_seq)


def test_fusion_formula():
    m = bigger_weights(ram(alpha=0.3, beta=0.6)).eval()
    h, S, T = inputs()
    mask = torch.ones(B, K, dtype=torch.bool)
    o1 = m.seq_tar(h, S, T, mask)
    o2 = m.tar_seq(h, T, S, mask)
    torch.testing.assert_close(m(h, S, T, mask), 0.3 * h + 0.7 * (0.6 * o1 + 0.4 * o2))


def test_alpha_one_returns_h():
    m = bigger_weights(ram(alpha=1.0, beta=0.5)).eval()
    h, S, T = inputs()
    assert torch.equal(m(h, S, T, torch.ones(B, K, dtype=torch.bool)), h)


def test_length_gate_keeps_h_for_long_sequences():
    m = bigger_weights(ram(length_gate=3)).eval()
    h, S, T = inputs()
    mask = torch.ones(B, K, dtype=torch.bool)
    lengths = torch.tensor([2, 3, 4])
    out = m(h, S, T, mask, lengths)
    assert torch.equal(out[2], h[2])  # 4 > 3 keeps h
    ungated = ram(length_gate=0)
    ungated.load_state_dict(m.state_dict())
    ref = ungated.eval()(h, S, T, mask, lengths)
    assert torch.equal(out[:2], ref[:2]) and not torch.allclose(ref[2], h[2], atol=1e-3)
    # without lengths the gate cannot apply
    assert torch.equal(m(h, S, T, mask), ref)


def test_eval_mode_is_deterministic_and_train_mode_uses_dropout():
    m = bigger_weights(ram(dropout=0.5, beta=0.5))
    h, S, T = inputs()
    mask = torch.ones(B, K, dtype=torch.bool)
    m.eval()
    assert torch.equal(m(h, S, T, mask), m(h, S, T, mask))
    m.train()
    assert not torch.equal(m(h, S, T, mask), m(h, S, T, mask))


def test_attn_tau_changes_the_output():
    a = bigger_weights(ram(attn_tau=1.0)).eval()
    b = ram(attn_tau=0.1)
    b.load_state_dict(a.state_dict())
    h, S, T = inputs()
    mask = torch.ones(B, K, dtype=torch.bool)
    assert not torch.allclose(a(h, S, T, mask), b.eval()(h, S, T, mask), atol=1e-4)


def test_options_change_the_parameter_count_as_expected():
    base = trainable(ram())
    # one (K, D) table of rank embeddings
    assert trainable(ram(retrieval_position_embedding=True)) - base == K * D
    # a LayerNorm (weight + bias) in each of the 4 cross-attention blocks
    assert trainable(ram(cross_attn_residual_ln=True)) - base == 4 * 2 * D
    both = ram(retrieval_position_embedding=True, cross_attn_residual_ln=True)
    assert trainable(both) - base == K * D + 8 * D
    assert both.rank_embedding.weight.shape == (K, D)


def test_retrieval_position_embedding_makes_the_output_depend_on_rank():
    m = bigger_weights(ram(retrieval_position_embedding=True)).eval()
    plain = ram()
    plain.load_state_dict({k: v for k, v in m.state_dict().items() if not k.startswith("rank_embedding")})
    h, S, T = inputs()
    mask = torch.ones(B, K, dtype=torch.bool)
    perm = torch.tensor([3, 2, 1, 0])
    # without rank embeddings the memories are a set: permuting them changes nothing
    torch.testing.assert_close(plain.eval()(h, S, T, mask), plain(h, S[:, perm], T[:, perm], mask), atol=1e-6, rtol=1e-5)
    assert not torch.allclose(m(h, S, T, mask), m(h, S[:, perm], T[:, perm], mask), atol=1e-4)


def test_cross_attn_residual_ln_normalises_the_attention_output():
    m = ram(cross_attn_residual_ln=True, beta=1.0).eval()
    h, S, T = inputs()
    out = m.seq_tar.attn1(h, S, T, torch.ones(B, K, dtype=torch.bool))
    torch.testing.assert_close(out.mean(dim=1), torch.zeros(B), atol=1e-5, rtol=0)


def test_trainable_parameter_count_of_the_paper_size():
    # hidden 64, inner 256, 2 channels, no options. Per channel: 2 cross-attentions of 4 Linear(64, 64)
    # (2 x 4 x 4160) + a feed-forward Linear(64, 256) + Linear(256, 64) + LayerNorm(64) (16640 + 16448 + 128).
    # docs/method.md §4's 136,064 for the reference adds its 2 x 20 x 64 position embeddings and 4 cross-attention
    # LayerNorms (2,560 + 512), unused in its forward.
    m = RAM(RAMConfig())
    per_channel = 2 * 4 * (64 * 64 + 64) + (64 * 256 + 256) + (256 * 64 + 64) + 2 * 64
    assert trainable(m) == 2 * per_channel == 132_992
    assert trainable(m) + 2 * 20 * 64 + 4 * 2 * 64 == 136_064
    assert trainable(m.seq_tar) == trainable(m.tar_seq) == per_channel


def test_a_second_list_feeds_the_tar_seq_channel():
    m = bigger_weights(ram(alpha=0.5, beta=0.5)).eval()
    h, S, T = inputs()
    _, S2, T2 = inputs(seed=1)
    mask = torch.ones(B, K, dtype=torch.bool)
    mask2 = torch.tensor([[True, True, False, False]] * B)
    out = m(h, S, T, mask, second=(S2, T2, mask2))
    o1 = m.seq_tar(h, S, T, mask)
    o2 = m.tar_seq(h, T2, S2, mask2)
    torch.testing.assert_close(out, 0.5 * h + 0.5 * (0.5 * o1 + 0.5 * o2))
    assert not torch.allclose(out, m(h, S, T, mask), atol=1e-4)


def test_with_two_lists_a_row_keeps_h_only_when_both_are_empty():
    m = bigger_weights(ram(beta=0.5)).eval()
    h, S, T = inputs()
    mask = torch.tensor([[False] * K, [False] * K, [True] * K])
    mask2 = torch.tensor([[False] * K, [True] * K, [False] * K])
    out = m(h, S, T, mask, second=(S, T, mask2))
    assert torch.equal(out[0], h[0])
    assert not torch.allclose(out[1], h[1], atol=1e-3) and not torch.allclose(out[2], h[2], atol=1e-3)
    assert torch.isfinite(out).all()
