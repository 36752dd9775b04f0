"""``model.positions``: the lag bias's math, that packing stays exact with it, and what each setting builds."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from raserec_core.config import ConfigError, load_config  # noqa: E402
from raserec_core.models.attention import LagBias, causal_attention  # noqa: E402
from raserec_core.models.encoder import build_encoder  # noqa: E402

N_ITEMS, MAX_LEN = 40, 8


def encoder(*overrides: str):
    cfg = load_config(overrides=["model.hidden_size=16", "model.hidden_dropout=0", "model.attn_dropout=0", *overrides]).model
    return build_encoder("sasrec", N_ITEMS, MAX_LEN, cfg).eval()


def test_attention_adds_the_bias_of_each_lag_before_the_causal_softmax():
    torch.manual_seed(0)
    H, L, d = 2, 5, 4
    bias = LagBias(H, MAX_LEN)
    bias.weight.data.normal_()
    q, k, v = (torch.randn(3, H, L, d) for _ in range(3))
    out = causal_attention(q, k, v, 0.0, False, bias(L))
    for t in range(L):  # by hand: position t reads s = 0..t with score q_t.k_s / sqrt(d) + b[h, t - s]
        s = torch.arange(t + 1)
        scores = (q[:, :, t, None, :] * k[:, :, : t + 1]).sum(-1) / d**0.5 + bias.weight[:, t - s]
        torch.testing.assert_close(out[:, :, t], (scores.softmax(-1)[..., None] * v[:, :, : t + 1]).sum(-2))


def test_zero_bias_is_plain_attention_and_positions_both_starts_as_absolute():
    torch.manual_seed(1)
    q, k, v = (torch.randn(2, 2, 6, 4) for _ in range(3))
    torch.testing.assert_close(causal_attention(q, k, v, 0.0, False, LagBias(2, MAX_LEN)(6)), causal_attention(q, k, v, 0.0, False))
    torch.manual_seed(2)
    absolute = encoder("model.positions=absolute")
    torch.manual_seed(2)
    both = encoder("model.positions=both")
    seqs = torch.tensor([[3, 4, 5, 6, 0], [7, 8, 9, 10, 11]])
    torch.testing.assert_close(both.sequence_output(seqs), absolute.sequence_output(seqs))


@pytest.mark.parametrize("layer", ["postln", "bsa", "ligr"])
def test_lag_positions_reach_every_block_and_keep_prefixes_causal(layer):
    torch.manual_seed(3)
    enc = encoder(f"model.layer={layer}", "model.positions=lag")
    assert enc.position_embedding is None
    biases = [m for m in enc.modules() if isinstance(m, LagBias)]
    assert len(biases) == 2 and all(b.weight.shape == (2, MAX_LEN) for b in biases)
    for b in biases:
        b.weight.data.normal_()
    seqs = torch.tensor([[3, 4, 5, 6, 0, 0], [3, 4, 5, 9, 10, 11]])
    out = enc.sequence_output(seqs)
    # A packed pass answers each prefix as encoding it alone would.
    torch.testing.assert_close(out[:, 3], enc(seqs[:, :4], torch.tensor([4, 4])))
    torch.testing.assert_close(out[0, :3], out[1, :3])
    # The bias is learned: the loss reaches it.
    out[:, -1].sum().backward()
    assert all(b.weight.grad is not None and b.weight.grad.abs().sum() > 0 for b in biases)


def test_lag_bias_changes_the_ranking_input_and_absolute_has_none():
    enc = encoder("model.positions=lag")
    seqs = torch.tensor([[3, 4, 5, 6]])
    before = enc(seqs, torch.tensor([4]))
    enc.blocks[0].attn.lag_bias.weight.data[:, 0] = 5.0  # every head now favours the newest item
    assert not torch.allclose(enc(seqs, torch.tensor([4])), before)
    assert not any(isinstance(m, LagBias) for m in encoder().modules())


def test_unknown_positions_is_a_config_error():
    with pytest.raises(ConfigError, match="model.positions"):
        load_config(overrides=["model.positions=rotary"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_fused_cuda_kernel_adds_the_same_bias():
    torch.manual_seed(4)
    bias = LagBias(2, MAX_LEN)
    bias.weight.data.normal_()
    q, k, v = (torch.randn(3, 2, 6, 4) for _ in range(3))
    on_cpu = causal_attention(q, k, v, 0.0, False, bias(6))
    on_cuda = causal_attention(q.cuda(), k.cuda(), v.cuda(), 0.0, False, bias.cuda()(6))
    torch.testing.assert_close(on_cuda.cpu(), on_cpu, atol=1e-4, rtol=1e-4)
