"""The drift hold-out: whole sequences rebuilt from the splits, the stale dataset, the held-out rows."""

from __future__ import annotations

import numpy as np
import pytest

from raserec_core.data import DataError, build_dataset, read_dataset, write_dataset
from raserec_core.data.holdout import hold_out_newest, user_sequences
from raserec_core.data.readers import Interactions
from raserec_core.data.split import take
from raserec_core.memory.build import user_state


def dataset(seqs: dict[str, list[int]], max_len: int = 3):
    users = [u for u, items in seqs.items() for _ in items]
    items = [str(i) for s in seqs.values() for i in s]
    times = [float(t) for s in seqs.values() for t in range(len(s))]
    inter = Interactions(np.array(users, dtype=object), np.array(items, dtype=object), np.array(times))
    return build_dataset(inter, k_core=0, max_len=max_len)


def raw(ds, items: np.ndarray) -> list[str]:
    return ds.item_ids[items].tolist()


SEQS = {  # raw item ids; "a" has 10 items, "b" 6, "c" 5 (too short to drift), "d" 3
    "a": [11, 12, 13, 14, 15, 16, 17, 18, 19, 20],
    "b": [21, 22, 23, 24, 25, 26],
    "c": [31, 32, 33, 34, 35],
    "d": [41, 42, 43],
}


def test_user_sequences_rebuild_every_whole_sequence_past_the_window():
    ds = dataset(SEQS, max_len=3)  # histories keep 3 items: the rebuild must not read them whole
    items, offsets = user_sequences(ds)
    got = {ds.user_ids[u]: raw(ds, items[offsets[u] : offsets[u + 1]]) for u in range(ds.n_users)}
    assert got == {u: [str(i) for i in s] for u, s in SEQS.items()}


def test_take_selects_rows_with_their_histories():
    test = dataset(SEQS).splits["test"]
    sub = take(test, np.array([2, 0]))
    assert sub.user.tolist() == [test.user[2], test.user[0]]
    assert [sub.history(r).tolist() for r in range(2)] == [test.history(2).tolist(), test.history(0).tolist()]
    assert sub.target.tolist() == [test.target[2], test.target[0]]


def test_drift_user_keeps_its_oldest_items_and_loses_the_rest_but_the_test_item():
    ds = dataset(SEQS, max_len=50)
    a = int(np.flatnonzero(ds.user_ids == "a")[0])
    # 2 of 4 users drift; only a and b have the 6 items it takes, so both are drawn.
    h = hold_out_newest(ds, user_fraction=0.5, share=0.4, seed=0)
    assert ds.user_ids[h.drift_users].tolist() == ["a", "b"]
    # a: training prefix 11..18 (8 items), m = round(3.2) = 3 -> keeps 11..15; holds out 16..19; test 20.
    # b: training prefix 21..24, m = round(1.6) = 2, capped at n - 5 = 1 -> keeps 21..23; holds out 24, 25.
    assert h.cut.tolist() == [5, 3]
    assert list(zip(h.held_out.user.tolist(), h.held_out.item.tolist(), h.held_out.time.tolist())) == [
        ("a", "16", 5.0), ("a", "17", 6.0), ("a", "18", 7.0), ("a", "19", 8.0), ("b", "24", 3.0), ("b", "25", 4.0)]
    stale = h.stale
    items, offsets = user_sequences(stale)
    assert raw(stale, items[offsets[a] : offsets[a + 1]]) == ["11", "12", "13", "14", "15"]
    test = stale.splits["test"]
    row = int(np.flatnonzero(test.user == a)[0])
    assert raw(stale, test.history(row)) == ["11", "12", "13", "14"] and raw(stale, test.target[[row]]) == ["15"]
    # The same index: models of both datasets score the same items; the bank maps raw ids back.
    assert stale.user_ids.tolist() == ds.user_ids.tolist() and stale.item_ids.tolist() == ds.item_ids.tolist()
    assert stale.stats["holdout"]["of"] == ds.fingerprint and stale.fingerprint != ds.fingerprint


def test_no_test_item_reaches_the_stale_data_or_the_held_out_rows_and_controls_are_unchanged():
    ds = dataset(SEQS, max_len=50)
    h = hold_out_newest(ds, user_fraction=0.5, share=0.4, seed=0)
    full_test = ds.splits["test"]
    for u in h.drift_users.tolist():  # a control user's stale test item is its test item: it is evaluated there
        n = full_test.position[full_test.user == u][0] + 1  # the test item sits at position n - 1
        for name in ("train", "valid", "test"):
            inst = h.stale.splits[name]
            assert (inst.position[inst.user == u] < (n - 1)).all()
        assert (h.held_out.time[h.held_out.user == ds.user_ids[u]] < n - 1).all()
    control = ~np.isin(full_test.user, h.drift_users)
    for name in ("train", "valid", "test"):
        full, stale = ds.splits[name], h.stale.splits[name]
        f_rows, s_rows = np.flatnonzero(~np.isin(full.user, h.drift_users)), np.flatnonzero(~np.isin(stale.user, h.drift_users))
        f, s = take(full, f_rows), take(stale, s_rows)
        assert f.target.tolist() == s.target.tolist() and f.values.tolist() == s.values.tolist()
    assert control.sum() == 2


def test_the_stale_banks_user_state_ends_where_the_held_out_rows_begin():
    """``memory add`` appends after the bank's known items: the held-out rows must land at their positions."""
    ds = dataset(SEQS, max_len=3)
    h = hold_out_newest(ds, user_fraction=0.5, share=0.4, seed=0)
    state = user_state(h.stale)
    items, offsets = user_sequences(ds)
    assert state.n_seen[h.drift_users].tolist() == h.cut.tolist()
    for u, k in zip(h.drift_users.tolist(), h.cut.tolist()):
        assert state.last(u).tolist() == items[offsets[u] : offsets[u] + k][-3:].tolist()
        first_held = h.held_out.time[h.held_out.user == ds.user_ids[u]].min()
        assert first_held == k


def test_the_stale_dataset_is_a_valid_artifact_and_the_draw_is_seeded(tmp_path):
    ds = dataset({f"u{i}": list(range(100 * i, 100 * i + 6 + i % 4)) for i in range(20)})
    h1 = hold_out_newest(ds, user_fraction=0.2, share=0.4, seed=1)
    write_dataset(h1.stale, tmp_path / "stale")
    assert read_dataset(tmp_path / "stale").fingerprint == h1.stale.fingerprint  # fingerprint verified on read
    assert hold_out_newest(ds, 0.2, 0.4, seed=1).drift_users.tolist() == h1.drift_users.tolist()
    assert len(h1.drift_users) == 4
    assert any(hold_out_newest(ds, 0.2, 0.4, seed=s).drift_users.tolist() != h1.drift_users.tolist() for s in (2, 3, 4))


def test_too_few_long_users_and_bad_fractions_are_refused():
    ds = dataset(SEQS)
    with pytest.raises(DataError, match="3 drift users wanted .* 2 users have the 6 items"):
        hold_out_newest(ds, user_fraction=0.75, share=0.4, seed=0)
    with pytest.raises(DataError, match="user_fraction 1.5"):
        hold_out_newest(ds, user_fraction=1.5, share=0.4, seed=0)
    with pytest.raises(DataError, match="share 0"):
        hold_out_newest(ds, user_fraction=0.5, share=0, seed=0)
