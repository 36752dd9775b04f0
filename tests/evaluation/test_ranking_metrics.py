"""Metrics and ranking against hand computations: ranks, ties, stable top-K, the padding item."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from raserec_core.evaluation import mlflow_key, rank_all, stable_topk, summarize, target_ranks  # noqa: E402
from raserec_core.evaluation.metrics import hit_at, mrr_at, ndcg_at  # noqa: E402

RANKS = torch.tensor([1, 2, 5, 10, 11, 50])


def test_hit_at():
    assert hit_at(RANKS, 10).tolist() == [1, 1, 1, 1, 0, 0]
    assert hit_at(RANKS, 1).tolist() == [1, 0, 0, 0, 0, 0]


def test_ndcg_at():
    expected = [1.0, 1 / math.log2(3), 1 / math.log2(6), 1 / math.log2(11), 0.0, 0.0]
    assert ndcg_at(RANKS, 10).tolist() == pytest.approx(expected, rel=1e-12)
    assert ndcg_at(RANKS, 50).tolist()[-1] == pytest.approx(1 / math.log2(51))


def test_mrr_at():
    assert mrr_at(RANKS, 10).tolist() == pytest.approx([1.0, 0.5, 0.2, 0.1, 0.0, 0.0])
    assert mrr_at(RANKS, 5).tolist() == pytest.approx([1.0, 0.5, 0.2, 0.0, 0.0, 0.0])


def test_summarize_means_and_keys():
    out = summarize(torch.tensor([1, 3, 20]), (5, 10), prefix="valid/")
    assert sorted(out) == sorted(f"valid/{m}@{k}" for m in ("hr", "ndcg", "mrr") for k in (5, 10))
    assert out["valid/hr@5"] == pytest.approx(2 / 3)
    assert out["valid/ndcg@10"] == pytest.approx((1 + 1 / math.log2(4)) / 3)
    assert out["valid/mrr@10"] == pytest.approx((1 + 1 / 3) / 3)
    assert all(isinstance(v, float) for v in out.values())


def test_mlflow_key():
    assert mlflow_key("valid/ndcg@10") == "valid_ndcg_at_10"


def test_target_ranks_simple():
    scores = torch.tensor([[0.0, 0.9, 0.1, 0.5], [0.0, 0.2, 0.3, 0.1]])
    assert target_ranks(scores, torch.tensor([3, 3])).tolist() == [2, 3]


def test_target_ranks_ties_go_to_the_smaller_item_index():
    scores = torch.tensor([[0.0, 1.0, 3.0, 3.0, 2.0, 3.0]] * 3)
    # items 2, 3, 5 tie at 3.0: their order is 2, 3, 5
    assert target_ranks(scores, torch.tensor([2, 3, 5])).tolist() == [1, 2, 3]
    assert target_ranks(scores, torch.tensor([4, 1, 0])).tolist() == [4, 5, 6]


def _reference_topk(row: list[float], k: int) -> list[int]:
    return [i for _, i in sorted((-s, i) for i, s in enumerate(row))][:k]


@pytest.mark.parametrize("k", [1, 3, 4, 7, 12])
def test_stable_topk_with_ties_equals_a_python_sort(k):
    g = torch.Generator().manual_seed(k)
    scores = torch.randint(0, 4, (20, 12), generator=g).float()  # many ties, also at the boundary
    items, top_scores = stable_topk(scores, k)
    assert items.shape == (20, k)
    for r in range(20):
        assert items[r].tolist() == _reference_topk(scores[r].tolist(), k)
    assert torch.equal(top_scores, scores.gather(1, items))


def test_stable_topk_agrees_with_target_ranks():
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 3, (6, 9), generator=g).float()
    items, _ = stable_topk(scores, 9)
    for r in range(6):
        ranks = target_ranks(scores[r : r + 1].expand(9, 9), torch.arange(9))
        assert [int(ranks[i]) for i in items[r]] == list(range(1, 10))


def test_stable_topk_k_larger_than_n():
    items, _ = stable_topk(torch.tensor([[1.0, 3.0, 2.0]]), 10)
    assert items.tolist() == [[1, 2, 0]]


def test_rank_all_never_ranks_the_padding_item():
    scores = torch.tensor([[9.0, 1.0, 2.0, 3.0], [9.0, 3.0, 2.0, 1.0]])
    result = rank_all(lambda rows: scores[rows].clone(), torch.tensor([3, 3]), batch_size=1, topk=2)
    assert result.ranks.tolist() == [1, 3]  # item 0 scored highest but is not ahead of anything
    assert result.topk_items.tolist() == [[3, 2], [1, 2]]
    assert result.topk_scores.tolist() == [[3.0, 2.0], [3.0, 2.0]]


def test_rank_all_batches_equal_one_batch_and_exclude_works():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(7, 15, generator=g)
    targets = torch.randint(1, 15, (7,), generator=g)
    score = lambda rows: scores[rows].clone()  # noqa: E731
    one = rank_all(score, targets, batch_size=100, topk=5)
    many = rank_all(score, targets, batch_size=3, topk=5)
    assert torch.equal(one.ranks, many.ranks) and torch.equal(one.topk_items, many.topk_items)
    assert one.ranks_excluded is None
    assert one.metrics((5,), protocols=False) == summarize(one.ranks, (5,))
    assert one.metrics((5,)) == summarize(one.ranks, (5,)) | summarize(one.ranks, (5,), "seen_kept/")
    # excluding each row's current best item (its "history") moves it out of the top-K and the target up by one
    best = one.topk_items[:, 0]
    history = lambda rows: best[rows][:, None]  # noqa: E731
    excluded = rank_all(score, targets, topk=5, history=history, mask_history=True)
    assert not (excluded.topk_items == best[:, None]).any()
    expected = torch.where(best == targets, one.ranks.new_tensor(0), one.ranks - 1)
    keep = best != targets
    assert torch.equal(excluded.ranks[keep], expected[keep])
    assert torch.equal(one.topk_items[:, 1:], excluded.topk_items[:, :4])
    # one pass ranks both ways: the kept ranks are those of a pass without history, whichever is chosen
    kept = rank_all(score, targets, batch_size=3, topk=5, history=history, mask_history=False)
    assert torch.equal(kept.ranks, one.ranks) and torch.equal(kept.topk_items, one.topk_items)
    assert torch.equal(kept.ranks_kept, excluded.ranks_kept) and torch.equal(kept.ranks_excluded, excluded.ranks)
    both = kept.metrics((5,))
    assert {k: v for k, v in both.items() if k.startswith("seen_excluded/")} == summarize(excluded.ranks, (5,), "seen_excluded/")
    with pytest.raises(ValueError, match="mask_history needs the queries' history"):
        rank_all(score, targets, mask_history=True)


def test_rank_all_without_topk():
    result = rank_all(lambda rows: torch.ones(len(rows), 4), torch.tensor([1, 2, 3]))
    assert result.ranks.tolist() == [1, 2, 3] and result.topk_items is None


def test_rank_all_topk_never_contains_padding_with_few_items():
    result = rank_all(lambda rows: torch.rand(len(rows), 6), torch.tensor([1, 2]), topk=50)
    assert result.topk_items.shape == (2, 5)
    assert not (result.topk_items == 0).any()
