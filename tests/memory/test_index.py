"""Vector indexes: faiss Flat / IVF / IVF-PQ against the brute-force torch reference, padding of missing
results, the IVF -> Flat fallback, and save/load round trips."""

from __future__ import annotations

import logging

import pytest

torch = pytest.importorskip("torch")
faiss = pytest.importorskip("faiss")

from raserec_core.errors import MemoryBankError  # noqa: E402
from raserec_core.memory.index import (  # noqa: E402
    MIN_POINTS_PER_LIST,
    BruteForceIndex,
    FaissIndex,
    build_index,
    load_index,
    save_index,
)

DIM = 16


def rand(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, DIM, generator=torch.Generator().manual_seed(seed))


def exact(vectors: torch.Tensor, queries: torch.Tensor, k: int):
    """Cosine top-k computed from scratch (float64), independent of the index code."""
    v = vectors.double() / vectors.double().norm(dim=1, keepdim=True)
    q = queries.double() / queries.double().norm(dim=1, keepdim=True)
    scores, ids = (q @ v.T).topk(k, dim=1)
    return scores.float(), ids


def test_brute_force_is_exact_cosine_search():
    x, q = rand(50, 0), rand(7, 1)
    index = build_index(x, "brute")
    scores, ids = index.search(q, 10)
    want_scores, want_ids = exact(x, q, 10)
    assert isinstance(index, BruteForceIndex) and index.ntotal == 50
    assert scores.shape == ids.shape == (7, 10) and ids.dtype == torch.long
    assert torch.equal(ids, want_ids)
    torch.testing.assert_close(scores, want_scores, atol=1e-5, rtol=0)
    assert (scores[:, :-1] >= scores[:, 1:]).all()  # best first


def test_faiss_flat_agrees_with_brute_force():
    x, q = rand(200, 2), rand(32, 3)
    brute, flat = build_index(x, "brute"), build_index(x, "flat")
    assert flat.kind == "flat" and flat.ntotal == 200
    s_b, i_b = brute.search(q, 20)
    s_f, i_f = flat.search(q, 20)
    assert i_f.shape == (32, 20) and i_f.dtype == torch.long
    assert torch.equal(i_f, i_b)
    torch.testing.assert_close(s_f, s_b, atol=1e-5, rtol=0)


def test_ivf_with_nprobe_equal_to_nlist_agrees_with_exact_search():
    nlist = 4
    x, q = rand(MIN_POINTS_PER_LIST * nlist + 44, 4), rand(25, 5)  # 200 vectors: enough to train 4 lists
    ivf = build_index(x, "ivf", nlist=nlist, nprobe=nlist)
    assert ivf.kind == "ivf" and ivf.index.nlist == nlist and ivf.index.nprobe == nlist and ivf.ntotal == 200
    s_i, i_i = ivf.search(q, 15)
    s_b, i_b = build_index(x, "brute").search(q, 15)
    assert torch.equal(i_i, i_b)
    torch.testing.assert_close(s_i, s_b, atol=1e-5, rtol=0)


def test_ivf_sq8_with_every_list_probed_finds_the_exact_neighbours_up_to_its_8_bit_codes():
    nlist = 4
    x, q = rand(MIN_POINTS_PER_LIST * nlist + 44, 8), rand(25, 9)
    sq = build_index(x, "ivfsq", nlist=nlist, nprobe=nlist)
    assert sq.kind == "ivfsq" and isinstance(sq.index, faiss.IndexIVFScalarQuantizer) and sq.ntotal == 200
    s_q, i_q = sq.search(q, 10)
    s_b, i_b = build_index(x, "brute").search(q, 10)
    overlap = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(i_q, i_b)) / i_b.numel()
    assert overlap >= 0.9  # 8-bit codes reorder near ties only
    torch.testing.assert_close(s_q[:, 0], s_b[:, 0], atol=0.02, rtol=0)


def test_an_index_trained_on_a_sample_and_added_in_chunks_holds_the_whole_bank():
    x = rand(600, 10)
    index = FaissIndex.empty("ivf", DIM, nlist=4, nprobe=4)
    index.train(x[:200])
    for part in x.split(150):
        index.add(part)
    assert index.ntotal == 600 and index.index.is_trained
    assert torch.equal(index.search(x[:5], 1)[1].flatten(), torch.arange(5))  # each vector finds itself
    index.set_nprobe(2)
    assert index.index.nprobe == 2


def test_a_pq_code_size_that_does_not_divide_the_dimension_is_a_clear_error():
    with pytest.raises(MemoryBankError, match="memory.pq_m=5 does not divide the key dimension 16"):
        FaissIndex.empty("ivfpq", DIM, nlist=4, pq_m=5)


@pytest.mark.parametrize(("kind", "n", "needed"), [
    ("ivf", MIN_POINTS_PER_LIST * 4 - 1, MIN_POINTS_PER_LIST * 4),  # one short of 39 x nlist
    ("ivfpq", 255, 256),  # enough for 4 lists, one short of PQ's 256 training points
])
def test_an_index_too_big_for_the_bank_is_an_error_naming_size_and_need(kind, n, needed):
    with pytest.raises(MemoryBankError) as err:
        build_index(rand(n, 6), kind, nlist=4, nprobe=1, pq_m=2)
    message = str(err.value)
    assert f"memory bank has {n} entries, fewer than the {needed} that {kind} with nlist=4 needs" in message
    assert "memory.allow_fallback=true" in message


def test_ivf_falls_back_to_flat_with_a_warning_when_allowed(caplog):
    nlist = 4
    x = rand(MIN_POINTS_PER_LIST * nlist - 1, 6)  # one short of 39 x nlist
    with caplog.at_level(logging.WARNING, logger="raserec.memory"):
        index = build_index(x, "ivf", nlist=nlist, nprobe=1, allow_fallback=True)
    assert index.kind == "flat"
    assert isinstance(index.index, faiss.IndexFlatIP)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "raserec.memory"]
    assert len(warnings) == 1
    msg = warnings[0].getMessage()
    assert "155 entries" in msg and "the 156 that ivf with nlist=4 needs" in msg and "Flat" in msg
    # exact, like the brute force reference
    q = rand(5, 7)
    assert torch.equal(index.search(q, 10)[1], build_index(x, "brute").search(q, 10)[1])


def test_ivf_with_enough_entries_does_not_warn(caplog):
    with caplog.at_level(logging.WARNING, logger="raserec.memory"):
        index = build_index(rand(MIN_POINTS_PER_LIST * 2, 8), "ivf", nlist=2, nprobe=1)
    assert index.kind == "ivf"
    assert not [r for r in caplog.records if r.name == "raserec.memory"]


def test_ivfpq_builds_and_searches():
    x, q = rand(300, 9), rand(6, 10)  # PQ with 8 bits trains 256 centroids per sub-quantizer
    index = build_index(x, "ivfpq", nlist=4, nprobe=4, pq_m=4)
    assert index.kind == "ivfpq" and isinstance(index.index, faiss.IndexIVFPQ) and index.ntotal == 300
    assert index.index.pq.M == 4
    scores, ids = index.search(q, 7)
    assert scores.shape == ids.shape == (6, 7)
    assert ((ids >= 0) & (ids < 300)).all()
    assert torch.isfinite(scores).all()
    assert (scores[:, :-1] >= scores[:, 1:] - 1e-6).all()
    # approximate, but a stored vector should find itself near the top
    self_ids = index.search(x[:20], 5)[1]
    assert (self_ids == torch.arange(20)[:, None]).any(dim=1).float().mean() >= 0.8


@pytest.mark.parametrize("kind", ["brute", "flat"])
def test_k_larger_than_the_index_pads_with_minus_one_and_minus_inf(kind):
    x, q = rand(3, 11), rand(4, 12)
    scores, ids = build_index(x, kind).search(q, 5)
    assert scores.shape == ids.shape == (4, 5)
    assert (ids[:, 3:] == -1).all()
    assert torch.isneginf(scores[:, 3:]).all()
    assert sorted(ids[0, :3].tolist()) == [0, 1, 2]
    assert torch.isfinite(scores[:, :3]).all()


@pytest.mark.parametrize("kind", ["brute", "flat"])
def test_empty_index_returns_only_missing_results(kind):
    index = BruteForceIndex(DIM) if kind == "brute" else FaissIndex(faiss.IndexFlatIP(DIM), "flat")
    scores, ids = index.search(rand(2, 13), 3)
    assert index.ntotal == 0
    assert ids.tolist() == [[-1, -1, -1]] * 2
    assert torch.isneginf(scores).all()


def test_add_appends_with_consecutive_ids():
    x = rand(60, 14)
    for kind in ("brute", "flat"):
        index = build_index(x[:40], kind)
        index.add(x[40:])
        assert index.ntotal == 60
        # each new vector is its own nearest neighbour and gets id 40..59
        assert index.search(x[40:], 1)[1].flatten().tolist() == list(range(40, 60))


def test_search_does_not_normalise_the_query_in_place():
    x = rand(10, 15)
    q = rand(3, 16) * 5
    before = q.clone()
    for kind in ("brute", "flat"):
        build_index(x, kind).search(q, 2)
        assert torch.equal(q, before)


@pytest.mark.parametrize("kind", ["brute", "flat", "ivf"])
def test_save_load_round_trip_gives_identical_search_results(kind, tmp_path):
    x, q = rand(120, 17), rand(9, 18)
    index = build_index(x, kind, nlist=2, nprobe=1)  # ivf: 120 >= 39 x 2, trained with 2 lists, 1 probed
    assert index.kind == kind
    meta = save_index(index, tmp_path)
    assert meta == {"index_type_built": kind, "index_file": "index.pt" if kind == "brute" else "index.faiss"}
    assert (tmp_path / meta["index_file"]).is_file()
    loaded = load_index(tmp_path, meta)
    assert loaded.kind == kind and loaded.ntotal == 120
    s0, i0 = index.search(q, 12)
    s1, i1 = loaded.search(q, 12)
    assert torch.equal(i0, i1)
    assert torch.equal(s0, s1)


def test_load_reads_a_manifest_written_before_index_type_built(tmp_path):
    meta = save_index(build_index(rand(120, 19), "flat"), tmp_path)
    old = {"index_type": meta["index_type_built"], "index_file": meta["index_file"]}
    assert load_index(tmp_path, old).kind == "flat"


def test_load_overrides_nprobe(tmp_path):
    index = build_index(rand(120, 19), "ivf", nlist=2, nprobe=1)
    meta = save_index(index, tmp_path)
    assert load_index(tmp_path, meta).index.nprobe == 1
    assert load_index(tmp_path, meta, nprobe=2).index.nprobe == 2


def test_unknown_index_type_is_an_error():
    with pytest.raises(ValueError, match="unknown faiss index type 'hnsw'"):
        build_index(rand(10, 20), "hnsw")


def test_ivfpq_on_a_bank_too_small_for_pq_training_falls_back_with_a_warning_when_allowed(caplog):
    x = rand(200, 21)  # 200 >= 39 x 2, but < 256 PQ centroids
    with caplog.at_level(logging.WARNING, logger="raserec.memory"):
        index = build_index(x, "ivfpq", nlist=2, nprobe=2, pq_m=4, allow_fallback=True)
    assert index.kind in {"flat", "ivf"}
    assert [r for r in caplog.records if r.name == "raserec.memory" and r.levelno == logging.WARNING]
    assert index.search(rand(3, 22), 5)[1].shape == (3, 5)
