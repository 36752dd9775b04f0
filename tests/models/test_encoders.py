"""SASRec and GRU4Rec encoders: shapes, parameter count, and padding/batch independence of each row."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from raserec_core.config import ModelConfig  # noqa: E402
from raserec_core.models.checkpoint import CheckpointError, encoder_spec, file_sha256, load_encoder  # noqa: E402
from raserec_core.models.encoder import build_encoder, encode_by_length  # noqa: E402
from raserec_core.training.checkpoint import save_weights  # noqa: E402

N_ITEMS, MAX_LEN = 30, 10
# lengths 1..10, most rows short, so 4 length-sorted chunks save padding and the chunked path is taken
HISTORIES = [[3], [4, 5], [6], [7, 8, 9], [1], [2, 2], [10, 11, 12, 13, 14, 15, 16, 17, 18, 19], [20],
             [21, 22, 23, 24, 25, 26, 27, 28, 29, 1], [5, 4]]


@pytest.fixture(params=["sasrec", "gru4rec"])
def encoder(request, tiny_cfg):
    return build_encoder(request.param, N_ITEMS, MAX_LEN, tiny_cfg).eval()


def test_sasrec_output_shape_and_item_table(tiny_cfg, make_padded):
    enc = build_encoder("sasrec", N_ITEMS, MAX_LEN, tiny_cfg)
    seqs, lengths = make_padded(HISTORIES)
    h = enc(seqs, lengths)
    assert h.shape == (len(HISTORIES), 16)
    assert enc.item_table.shape == (N_ITEMS, 16)
    assert torch.isfinite(h).all()


def test_extra_tokens_are_embedded_but_not_scored(tiny_cfg, make_padded):
    enc = build_encoder("sasrec", N_ITEMS, MAX_LEN, tiny_cfg, n_extra_tokens=1).eval()
    assert enc.item_embedding.weight.shape == (N_ITEMS + 1, 16)
    assert enc.item_table.shape == (N_ITEMS, 16)
    seqs, lengths = make_padded([[N_ITEMS, 3]])  # the mask token is a valid input
    assert enc(seqs, lengths).shape == (1, 16)


def test_gru4rec_output_shape(tiny_cfg, make_padded):
    enc = build_encoder("gru4rec", N_ITEMS, MAX_LEN, tiny_cfg)
    seqs, lengths = make_padded(HISTORIES)
    assert enc(seqs, lengths).shape == (len(HISTORIES), 16)
    assert enc.item_table.shape == (N_ITEMS, 16)


def test_unknown_backbone(tiny_cfg):
    with pytest.raises(ValueError, match="'bert'"):
        build_encoder("bert", N_ITEMS, MAX_LEN, tiny_cfg)


def test_sasrec_parameter_count_matches_the_logged_run():
    enc = build_encoder("sasrec", 12102, 50, ModelConfig())
    assert sum(p.numel() for p in enc.parameters()) == 877_824


def test_row_does_not_depend_on_padding_width(encoder, make_padded):
    tight = encoder(*make_padded(HISTORIES))
    wide = encoder(*make_padded(HISTORIES, width=MAX_LEN))
    torch.testing.assert_close(tight, wide, rtol=1e-5, atol=1e-6)


def test_row_does_not_depend_on_the_other_rows(encoder, make_padded):
    batch = encoder(*make_padded(HISTORIES, width=MAX_LEN))
    alone = torch.cat([encoder(*make_padded([h])) for h in HISTORIES])
    torch.testing.assert_close(batch, alone, rtol=1e-5, atol=1e-6)


def test_padding_content_is_ignored(encoder, make_padded):
    seqs, lengths = make_padded(HISTORIES, width=MAX_LEN)
    noisy = seqs.clone()
    pad = torch.arange(MAX_LEN)[None, :] >= lengths[:, None]
    noisy[pad] = 7  # garbage where padding should be
    torch.testing.assert_close(encoder(seqs, lengths), encoder(noisy, lengths), rtol=1e-5, atol=1e-6)


def test_encode_by_length_chunks_equal_one_padded_pass(encoder, make_padded):
    seqs, lengths = make_padded(HISTORIES, width=MAX_LEN)
    calls = []
    wrapped = lambda s, n: calls.append(s.shape) or encoder(s, n)  # noqa: E731
    chunked = encode_by_length(wrapped, seqs, lengths, n_chunks=4)
    assert len(calls) == 4  # the chunked path was taken
    assert max(shape[1] for shape in calls[:-1]) < MAX_LEN  # short chunks are cut
    torch.testing.assert_close(chunked, encoder(seqs, lengths), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(chunked, encode_by_length(encoder, seqs, lengths, n_chunks=1), rtol=1e-5, atol=1e-6)


def test_encode_by_length_falls_back_to_one_pass_when_chunks_save_little(encoder, make_padded):
    seqs, lengths = make_padded([[1, 2, 3], [4, 5, 6], [7, 8], [9, 10, 11], [12, 13, 14]], width=MAX_LEN)
    calls = []
    wrapped = lambda s, n: calls.append(s.shape) or encoder(s, n)  # noqa: E731
    out = encode_by_length(wrapped, seqs, lengths, n_chunks=2)
    assert calls == [torch.Size([5, 3])]  # one pass, cut to the longest row
    torch.testing.assert_close(out, encoder(seqs, lengths), rtol=1e-5, atol=1e-6)


def test_eval_is_deterministic_and_train_uses_dropout(tiny_cfg, make_padded):
    enc = build_encoder("sasrec", N_ITEMS, MAX_LEN, tiny_cfg)
    seqs, lengths = make_padded(HISTORIES)
    enc.train()
    assert not torch.equal(enc(seqs, lengths), enc(seqs, lengths))
    enc.eval()
    assert torch.equal(enc(seqs, lengths), enc(seqs, lengths))


@torch.no_grad()
def test_init_follows_the_reference(tiny_cfg):
    enc = build_encoder("sasrec", 2000, MAX_LEN, tiny_cfg)
    w = enc.item_embedding.weight
    assert abs(float(w.std()) - 0.02) < 0.002
    assert float(enc.blocks[0].attn.query.bias.abs().max()) == 0.0
    assert float(enc.input_norm.weight.min()) == 1.0 and float(enc.input_norm.bias.abs().max()) == 0.0


def test_load_encoder_round_trip_and_hash_check(tmp_path, tiny_cfg, make_padded):
    enc = build_encoder("gru4rec", N_ITEMS, MAX_LEN, tiny_cfg).eval()
    save_weights(enc, tmp_path / "encoder.pt")
    manifest = {"encoder": encoder_spec("gru4rec", N_ITEMS, MAX_LEN, 0, tiny_cfg),
                "encoder_sha256": file_sha256(tmp_path / "encoder.pt")}
    (tmp_path / "model.json").write_text(json.dumps(manifest))
    loaded, back = load_encoder(tmp_path)
    assert back == manifest and not loaded.training
    seqs, lengths = make_padded(HISTORIES)
    assert torch.equal(loaded(seqs, lengths), enc(seqs, lengths))

    (tmp_path / "encoder.pt").write_bytes((tmp_path / "encoder.pt").read_bytes() + b"x")
    with pytest.raises(ValueError, match="does not match model.json"):
        load_encoder(tmp_path)


def test_load_encoder_without_manifest(tmp_path):
    with pytest.raises(CheckpointError, match="no model.json"):
        load_encoder(tmp_path)
