"""The leakage filter (docs/method.md §3) on hand-built candidate lists, and the retriever end to end over a
brute-force index of hand-made keys."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from raserec_core.memory.index import BruteForceIndex, build_index  # noqa: E402
from raserec_core.memory.retrieval import (  # noqa: E402
    Retrieved,
    Retriever,
    gather_memories,
    leakage_filter,
    retrieve_all,
)

L = torch.long


def filt(cand, cand_user, cand_len, user, length, k):
    t = lambda x: torch.tensor(x, dtype=L)
    return leakage_filter(t(cand), t(cand_user), t(cand_len), t(user), t(length), k)


def test_own_future_is_never_retrieved():
    # query: user 0, prefix length 3. Candidates of user 0 with length 3 (its own instance), 4 and 5 (whose
    # targets are the query's future) are all dropped.
    r = filt([[10, 11, 12]], [[0, 0, 0]], [[3, 4, 5]], [0], [3], k=3)
    assert r.ids.tolist() == [[-1, -1, -1]]
    assert r.mask.tolist() == [[False, False, False]]


def test_strictly_shorter_own_prefix_is_allowed():
    r = filt([[10, 11, 12, 13]], [[0, 0, 0, 0]], [[3, 2, 1, 3]], [0], [3], k=4)
    assert r.ids.tolist() == [[11, 12, -1, -1]]
    assert r.mask.tolist() == [[True, True, False, False]]


def test_other_users_are_allowed_whatever_their_length():
    r = filt([[20, 21, 22]], [[1, 2, 1]], [[50, 3, 1]], [0], [3], k=3)
    assert r.ids.tolist() == [[20, 21, 22]]
    assert r.mask.all()


def test_capped_lengths_drop_all_own_entries_at_the_cap():
    # the filter compares capped lengths, as the reference: a user at the cap (5) sees none of its own
    r = filt([[1, 2, 3]], [[7, 7, 8]], [[5, 5, 5]], [7], [5], k=3)
    assert r.ids.tolist() == [[3, -1, -1]]


def test_missing_ids_are_dropped_even_with_admissible_metadata():
    # -1 ids (IVF or a small index); their gathered metadata is that of entry 0, which would pass
    r = filt([[-1, 5, -1, 6, -1]], [[9, 1, 9, 2, 9]], [[1, 1, 1, 1, 1]], [0], [3], k=4)
    assert r.ids.tolist() == [[5, 6, -1, -1]]
    assert r.mask.tolist() == [[True, True, False, False]]


def test_first_k_survivors_in_similarity_order():
    cand = [[9, 4, 7, 1, 8, 3, 2]]
    users = [[0, 1, 0, 2, 3, 1, 4]]
    lens = [[9, 1, 1, 1, 1, 1, 1]]  # 9 (own, longer) dropped; 7 (own, shorter) kept
    r = filt(cand, users, lens, [0], [3], k=4)
    assert r.ids.tolist() == [[4, 7, 1, 8]]  # 3 and 2 are beyond K
    assert r.mask.all()


def test_fewer_than_k_survivors_are_masked_not_filled():
    r = filt([[3, 4, 5, 6]], [[0, 1, 0, 0]], [[5, 2, 4, 3]], [0], [3], k=3)
    assert r.ids.tolist() == [[4, -1, -1]]
    assert r.mask.tolist() == [[True, False, False]]


def test_rows_are_filtered_independently():
    cand = [[0, 1, 2], [0, 1, 2], [2, 1, 0]]
    users = [[0, 1, 2]] * 2 + [[2, 1, 0]]
    lens = [[2, 2, 2]] * 2 + [[2, 2, 2]]
    r = filt(cand, users, lens, [0, 1, 5], [2, 2, 1], k=2)  # row 1: user 1's entry 1 has its length
    assert r.ids.tolist() == [[1, 2], [0, 2], [2, 1]]
    assert r.mask.all()
    assert r.ids.shape == (3, 2) and r.mask.dtype == torch.bool


def test_row_without_survivor_is_all_masked():
    r = filt([[1, 2], [3, 4]], [[0, 0], [1, 0]], [[4, 3], [1, 1]], [0, 0], [3, 3], k=2)
    assert r.ids.tolist() == [[-1, -1], [3, 4]]
    assert r.mask.tolist() == [[False, False], [True, True]]


def test_empty_candidate_lists():
    r = leakage_filter(torch.zeros(2, 0, dtype=L), torch.zeros(2, 0, dtype=L), torch.zeros(2, 0, dtype=L),
                       torch.tensor([0, 1]), torch.tensor([1, 1]), 3)
    assert r.ids.tolist() == [[-1] * 3] * 2 and not r.mask.any()


# Hand-made keys: their cosine similarity to the query e0 decreases with the id.
KEYS = torch.tensor([
    [1.0, 0.0, 0.0, 0.0],  # 0: cos 1
    [1.0, 0.1, 0.0, 0.0],  # 1: 0.995
    [1.0, 0.5, 0.0, 0.0],  # 2: 0.894
    [1.0, 1.0, 0.0, 0.0],  # 3: 0.707
    [0.0, 1.0, 0.0, 0.0],  # 4: 0
    [-1.0, 0.2, 0.0, 0.0],  # 5: -0.98
])
USER = torch.tensor([0, 0, 1, 0, 2, 1])
LENGTH = torch.tensor([3, 2, 5, 4, 1, 1])
QUERY = torch.tensor([[2.0, 0.0, 0.0, 0.0]])


def retriever(candidate_factor: int = 4) -> Retriever:
    index = BruteForceIndex(4)
    index.add(KEYS)
    return Retriever(index, USER, LENGTH, candidate_factor)


def test_retriever_end_to_end_over_brute_force():
    # user 0 with length 3: entry 0 (itself) and 3 (its future) are dropped, 1 (shorter own prefix) kept
    r = retriever()(QUERY, torch.tensor([0]), torch.tensor([3]), k=3)
    assert r.ids.tolist() == [[1, 2, 4]]
    assert r.mask.all()


def test_retriever_k_larger_than_the_bank_masks_the_rest():
    r = retriever()(QUERY, torch.tensor([0]), torch.tensor([3]), k=10)
    assert r.ids.tolist() == [[1, 2, 4, 5] + [-1] * 6]
    assert r.mask.sum().item() == 4


def test_retriever_other_user_sees_everything_in_similarity_order():
    r = retriever()(QUERY, torch.tensor([9]), torch.tensor([1]), k=6)
    assert r.ids.tolist() == [[0, 1, 2, 3, 4, 5]]


def test_retriever_too_few_candidates_gives_masked_slots():
    # candidate_factor 1: 2 candidates (0, 1) for k=2; entry 0 is the query's own -> one slot masked
    r = retriever(candidate_factor=1)(QUERY, torch.tensor([0]), torch.tensor([3]), k=2)
    assert r.ids.tolist() == [[1, -1]]
    assert r.mask.tolist() == [[True, False]]


def test_retriever_over_faiss_flat_matches_brute_force():
    pytest.importorskip("faiss")
    g = torch.Generator().manual_seed(0)
    keys = torch.randn(80, 8, generator=g)
    user = torch.randint(0, 5, (80,), generator=g)
    length = torch.randint(1, 6, (80,), generator=g)
    q = torch.randn(16, 8, generator=g)
    qu, ql = torch.randint(0, 5, (16,), generator=g), torch.randint(1, 6, (16,), generator=g)
    a = Retriever(build_index(keys, "brute"), user, length)(q, qu, ql, 5)
    b = Retriever(build_index(keys, "flat"), user, length)(q, qu, ql, 5)
    assert torch.equal(a.ids, b.ids) and torch.equal(a.mask, b.mask)
    # the first 5 admissible entries among the 4 x 5 = 20 nearest, in similarity order
    sims = torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(keys, dim=1).T
    for row in range(16):
        ok = (user != qu[row]) | (length < ql[row])
        want = [i for i in sims[row].argsort(descending=True)[:20].tolist() if ok[i]][:5]
        assert a.ids[row][a.mask[row]].tolist() == want
        assert (a.ids[row][len(want):] == -1).all()


def test_retrieve_all_batches_like_one_call():
    g = torch.Generator().manual_seed(1)
    keys = torch.randn(40, 4, generator=g)
    user, length = torch.randint(0, 3, (40,), generator=g), torch.randint(1, 6, (40,), generator=g)
    r = Retriever(build_index(keys, "brute"), user, length)
    h = torch.randn(10, 4, generator=g)
    qu, ql = torch.randint(0, 3, (10,), generator=g), torch.randint(1, 6, (10,), generator=g)
    whole = r(h, qu, ql, 3)
    batched = retrieve_all(r, h, qu, ql, 3, batch_size=4)
    assert torch.equal(whole.ids, batched.ids) and torch.equal(whole.mask, batched.mask)
    empty = retrieve_all(r, h[:0], qu[:0], ql[:0], 3)
    assert empty.ids.shape == (0, 3) and empty.mask.shape == (0, 3)


def test_gather_memories_zeros_masked_slots():
    keys = torch.arange(12, dtype=torch.float32).view(6, 2) + 1
    values = -keys
    r = Retrieved(ids=torch.tensor([[2, -1], [5, 0]]), mask=torch.tensor([[True, False], [True, True]]))
    S, T, mask = gather_memories(keys, values, r, "cpu")
    assert S.shape == T.shape == (2, 2, 2)
    assert S.tolist() == [[[5.0, 6.0], [0.0, 0.0]], [[11.0, 12.0], [1.0, 2.0]]]
    assert torch.equal(T, -S)
    assert torch.equal(mask, r.mask)
