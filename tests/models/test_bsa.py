"""The BSARec-style block: the causal filter equals the FFT low-pass of each prefix's zero-padded
window, the block mixes as its equations say, and the encoder stays causal (so packing holds); the
whole-window scope is BSARec's filter of every position and trains per prefix only."""

from __future__ import annotations

import dataclasses

import pytest

torch = pytest.importorskip("torch")

from raserec_core.config import load_config  # noqa: E402
from raserec_core.models.bsa import BSABlock, causal_lowpass, lowpass_impulse, window_lowpass  # noqa: E402
from raserec_core.models.encoder import build_encoder  # noqa: E402

N_ITEMS, MAX_LEN = 40, 12


def fft_lowpass_at_end(window: torch.Tensor, cutoff: int) -> torch.Tensor:
    """BSARec's filter over a (B, W, D) window, read at its last position: ortho rfft, zero the bins from
    cutoff // 2 + 1 on, ortho irfft."""
    spec = torch.fft.rfft(window, dim=1, norm="ortho")
    spec[:, cutoff // 2 + 1 :] = 0
    return torch.fft.irfft(spec, n=window.shape[1], dim=1, norm="ortho")[:, -1]


@pytest.mark.parametrize("cutoff", [1, 5, 9])
def test_causal_filter_is_the_fft_lowpass_of_every_zero_padded_prefix(cutoff):
    torch.manual_seed(0)
    W, L = 8, 11  # sequences longer than the window: only the last W items count
    x = torch.randn(2, L, 3, dtype=torch.float64)
    y = causal_lowpass(x, lowpass_impulse(W, cutoff).double())
    for t in range(L):
        window = torch.zeros(2, W, 3, dtype=torch.float64)
        kept = x[:, max(0, t + 1 - W) : t + 1]
        window[:, W - kept.shape[1] :] = kept
        torch.testing.assert_close(y[:, t], fft_lowpass_at_end(window, cutoff))


def test_impulse_keeps_the_mean_at_cutoff_one_and_everything_at_full_band():
    assert torch.allclose(lowpass_impulse(6, 1), torch.full((6,), 1 / 6))  # only the DC bin: the window mean
    full = lowpass_impulse(6, 6)  # every bin of a length-6 window: the identity
    assert torch.allclose(full, torch.tensor([1.0, 0, 0, 0, 0, 0]), atol=1e-6)


def test_bsa_block_mixes_filter_and_attention_as_its_equations():
    cfg = load_config(overrides=["model.layer=bsa", "model.hidden_size=8", "model.filter_alpha=0.3",
                                 "model.hidden_dropout=0", "model.attn_dropout=0"]).model
    block = build_encoder("sasrec", N_ITEMS, MAX_LEN, cfg).blocks[0].eval()
    assert isinstance(block, BSABlock)
    x = torch.randn(2, 5, 8)
    low = causal_lowpass(x, block.filter.impulse)
    dsp = block.filter.norm(x + low + block.filter.sqrt_beta**2 * (x - low))
    torch.testing.assert_close(block(x), block.ffn(0.3 * dsp + 0.7 * block.attn(x)))
    assert block.filter.impulse.shape == (MAX_LEN,)  # the window is max_len
    assert "blocks.0.filter.impulse" not in build_encoder("sasrec", N_ITEMS, MAX_LEN, cfg).state_dict()


def test_bsa_encoder_is_causal_so_prefixes_read_off_one_pass():
    cfg = load_config(overrides=["model.layer=bsa", "model.hidden_size=16"]).model
    enc = build_encoder("sasrec", N_ITEMS, MAX_LEN, cfg).eval()
    seqs = torch.tensor([[3, 4, 5, 6, 0, 0], [3, 4, 5, 9, 10, 11]])
    out = enc.sequence_output(seqs)
    torch.testing.assert_close(out[0, :3], out[1, :3])
    assert not torch.allclose(out[0, 3], out[1, 3])
    # The prefix's own pass, cut to its length, gives the same representation as the packed one.
    torch.testing.assert_close(enc(seqs[:1, :4], torch.tensor([4])), out[:1, 3])


def fft_lowpass(window: torch.Tensor, cutoff: int) -> torch.Tensor:
    """BSARec's filter, every position of the window: rfft, keep cutoff // 2 + 1 bins, irfft."""
    spec = torch.fft.rfft(window, dim=1, norm="ortho")
    spec[:, cutoff // 2 + 1 :] = 0
    return torch.fft.irfft(spec, n=window.shape[1], dim=1, norm="ortho")


@pytest.mark.parametrize("cutoff", [1, 5])
def test_window_filter_is_the_fft_lowpass_of_the_left_padded_window(cutoff):
    torch.manual_seed(0)
    W, L = 8, 6
    x = torch.randn(3, L, 2, dtype=torch.float64)
    lengths = torch.tensor([6, 4, 1])
    valid = torch.arange(L)[None, :] < lengths[:, None]
    y = window_lowpass(x, lowpass_impulse(W, cutoff).double(), valid)
    for b, n in enumerate(lengths.tolist()):
        window = torch.zeros(1, W, 2, dtype=torch.float64)  # BSARec's layout: the prefix at the window's end
        window[0, W - n :] = x[b, :n]
        torch.testing.assert_close(y[b, :n], fft_lowpass(window, cutoff)[0, W - n :])


def test_window_scope_reads_later_items_and_refuses_packing():
    cfg = load_config(overrides=["model.layer=bsa", "model.hidden_size=16", "model.filter_scope=window"]).model
    torch.manual_seed(1)
    enc = build_encoder("sasrec", N_ITEMS, MAX_LEN, cfg).eval()
    assert not enc.causal
    with pytest.raises(ValueError, match="filter_scope=window"):
        enc.sequence_output(torch.tensor([[3, 4, 5]]))
    # Two prefixes that share their first three items differ at position 2 once the fourth differs (the
    # filter there reads position 3); the causal scope keeps position 2 the same ...
    seqs, valid = torch.tensor([[3, 4, 5, 6], [3, 4, 5, 9]]), torch.ones(2, 4, dtype=torch.bool)
    assert not torch.allclose(*enc._encode(seqs, valid)[:, 2])
    causal = build_encoder("sasrec", N_ITEMS, MAX_LEN, dataclasses.replace(cfg, filter_scope="causal")).eval()
    torch.testing.assert_close(*causal.sequence_output(seqs)[:, 2])
    a = enc(seqs[:1], torch.tensor([4]))
    # ... while right padding, and how wide a batch is cut, never reach a representation.
    padded = enc(torch.tensor([[3, 4, 5, 6, 0, 0], [3, 4, 5, 9, 10, 11]]), torch.tensor([4, 6]))
    torch.testing.assert_close(padded[:1], a)
    torch.testing.assert_close(padded[1:], enc(torch.tensor([[3, 4, 5, 9, 10, 11]]), torch.tensor([6])))


def test_causal_scope_is_the_window_filter_at_each_prefix_end():
    """At a prefix's last position the two scopes' filters agree: it is in the first block that they part."""
    torch.manual_seed(2)
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    impulse = lowpass_impulse(MAX_LEN, 5).double()
    causal = causal_lowpass(x, impulse)
    for n in range(1, 6):
        whole = window_lowpass(x, impulse, torch.arange(5)[None, :] < n)
        torch.testing.assert_close(whole[:, n - 1], causal[:, n - 1])


def test_window_scope_trains_per_prefix_and_refuses_packing(small_dataset_dir, tiny_args, tmp_path, capsys):
    from raserec_core.cli.main import main

    args = ["pretrain", "--data", str(small_dataset_dir), *tiny_args("model.layer=bsa", "model.filter_scope=window",
                                                                      "pretrain.epochs=1")]
    assert main([*args, "--output", str(tmp_path / "packed"), "--set", "pretrain.batching=sequence"]) == 2
    assert "pretrain.batching=sequence" in capsys.readouterr().err
    assert main([*args, "--output", str(tmp_path / "per-prefix"), "--set", "pretrain.batching=random"]) == 0
    assert (tmp_path / "per-prefix" / "metrics.json").exists()
