"""SASRec and GRU4Rec encoders: shapes, parameter count, and padding/batch independence of each row."""

from __future__ import annotations

import itertools
import json

import pytest

torch = pytest.importorskip("torch")

from raserec_core.config import ModelConfig  # noqa: E402
from raserec_core.models.checkpoint import CheckpointError, encoder_spec, file_sha256, load_encoder  # noqa: E402
from raserec_core.models.encoder import build_encoder, encode_by_length, encode_views, length_groups  # noqa: E402
from raserec_core.training.resume import save_weights  # noqa: E402

N_ITEMS, MAX_LEN = 30, 10
# lengths 1, 2, 3 and 10: most rows short, so length groups save padding
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
    enc = build_encoder("sasrec", 12102, 50, ModelConfig(layer="postln"))
    assert sum(p.numel() for p in enc.parameters()) == 877_824
    # BSA blocks add BSARec's beta (64) and the filter's LayerNorm (128) per block: 878,208, the count its
    # released Beauty log prints.
    bsa = build_encoder("sasrec", 12102, 50, ModelConfig(layer="bsa"))
    assert sum(p.numel() for p in bsa.parameters()) == 877_824 + 2 * (64 + 128)


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


def test_encode_by_length_groups_equal_one_padded_pass(encoder, make_padded):
    seqs, lengths = make_padded(HISTORIES, width=MAX_LEN)
    calls = []
    wrapped = lambda s, n: calls.append(s.shape) or encoder(s, n)  # noqa: E731
    grouped = encode_by_length(wrapped, seqs, lengths, max_groups=4, group_cost=0)
    assert len(calls) == 4  # the grouped path was taken
    assert [shape[1] for shape in calls] == [1, 2, 3, MAX_LEN]  # each group cut to its own longest row
    torch.testing.assert_close(grouped, encoder(seqs, lengths), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grouped, encode_by_length(encoder, seqs, lengths, max_groups=1), rtol=1e-5, atol=1e-6)


def test_encode_by_length_keeps_one_pass_when_groups_save_less_than_they_cost(encoder, make_padded):
    seqs, lengths = make_padded([[1, 2, 3], [4, 5, 6], [7, 8], [9, 10, 11], [12, 13, 14]], width=MAX_LEN)
    calls = []
    wrapped = lambda s, n: calls.append(s.shape) or encoder(s, n)  # noqa: E731
    out = encode_by_length(wrapped, seqs, lengths, max_groups=2, group_cost=2)  # a split would save 1
    assert calls == [torch.Size([5, 3])]  # one pass, cut to the longest row
    torch.testing.assert_close(out, encoder(seqs, lengths), rtol=1e-5, atol=1e-6)


def test_encode_views_equal_each_view_alone(encoder, make_padded):
    a = make_padded(HISTORIES[:4], width=MAX_LEN)  # padded wider than its longest row
    b = make_padded(HISTORIES[4:])  # padded to its own longest row, a different width
    c = make_padded([[9]])
    out = encode_views(encoder, [a, b, c], max_groups=3)
    assert [o.shape[0] for o in out] == [4, 6, 1]
    for got, (seqs, lengths) in zip(out, [a, b, c]):
        torch.testing.assert_close(got, encoder(seqs, lengths), rtol=1e-5, atol=1e-6)


def test_encode_views_draw_dropout_per_view(tiny_cfg, make_padded):
    enc = build_encoder("sasrec", N_ITEMS, MAX_LEN, tiny_cfg).train()
    view = make_padded(HISTORIES)
    first, second = encode_views(enc, [view, view])
    assert not torch.allclose(first, second)  # the same rows twice: two dropout views, not one copied


def test_length_groups_by_hand():
    lengths = torch.tensor([3, 1, 50, 2, 2, 7, 7, 8, 1, 49, 3])
    as_lengths = lambda groups: [sorted(lengths[g].tolist()) for g in groups]  # noqa: E731
    # one pass costs 11 * 50 = 550; splitting off the two long rows: 9 * 8 + 2 * 50 = 172 (+ 5 per group)
    assert as_lengths(length_groups(lengths, 2, group_cost=5)) == [[1, 1, 2, 2, 3, 3, 7, 7, 8], [49, 50]]
    # a third group saves 9 * 8 - (6 * 3 + 3 * 8) = 30 > 5; a fourth (1,1,2,2 | 3,3) saves 4 < 5
    assert as_lengths(length_groups(lengths, 4, group_cost=5)) == [[1, 1, 2, 2, 3, 3], [7, 7, 8], [49, 50]]
    # free groups, one fewer than the distinct lengths: the cheapest merge is 49 with 50 (one position)
    assert as_lengths(length_groups(lengths, 6, group_cost=0)) == [[1, 1], [2, 2], [3, 3], [7, 7], [8], [49, 50]]
    assert as_lengths(length_groups(lengths, 1)) == [sorted(lengths.tolist())]


def test_length_groups_is_optimal_against_every_cut():
    gen = torch.Generator().manual_seed(0)
    for _ in range(100):
        n = int(torch.randint(1, 10, (1,), generator=gen))
        lengths = torch.randint(1, 12, (n,), generator=gen)
        k, cost = int(torch.randint(1, 5, (1,), generator=gen)), float(torch.randint(0, 12, (1,), generator=gen))
        groups = length_groups(lengths, k, cost)
        assert sorted(torch.cat(groups).tolist()) == list(range(n))  # a partition of the rows
        got = sum(len(g) * int(lengths[g].max()) + cost for g in groups)
        s = sorted(lengths.tolist())
        best = min(
            sum((b[j + 1] - b[j]) * s[b[j + 1] - 1] + cost for j in range(m))
            for m in range(1, min(k, n) + 1)
            for cuts in itertools.combinations(range(1, n), m - 1)
            for b in [[0, *cuts, n]]
        )
        assert got == best


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
    loaded, back = load_encoder(tmp_path, "cpu")
    assert back == manifest and not loaded.training
    seqs, lengths = make_padded(HISTORIES)
    assert torch.equal(loaded(seqs, lengths), enc(seqs, lengths))

    (tmp_path / "encoder.pt").write_bytes((tmp_path / "encoder.pt").read_bytes() + b"x")
    with pytest.raises(ValueError, match="does not match model.json"):
        load_encoder(tmp_path, "cpu")


def test_load_encoder_without_manifest(tmp_path):
    with pytest.raises(CheckpointError, match="no model.json"):
        load_encoder(tmp_path, "cpu")
