"""Chronological order with a stable tie-break, and the raw-id maps (item 0 = padding)."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from raserec_core.data import build_dataset, read_dataset, read_interactions, write_dataset


def full_sequences(ds) -> dict[str, list[str]]:
    """Raw user id -> raw item ids in order, rebuilt from the test split (history + target)."""
    test = ds.splits["test"]
    return {
        ds.user_ids[u]: [ds.item_ids[i] for i in [*test.history(r).tolist(), int(test.target[r])]]
        for r, u in enumerate(test.user.tolist())
    }


def test_items_are_sorted_by_time_per_user(write):
    text = "user_id,item_id,timestamp\nu,c,30\nv,a,2\nu,a,10\nv,b,1\nu,b,20\nv,c,3\nu,d,40\nv,d,4\n"
    ds = build_dataset(read_interactions(write("log.csv", text)), k_core=0, max_len=50)
    assert full_sequences(ds) == {"u": ["a", "b", "c", "d"], "v": ["b", "a", "c", "d"]}


def test_equal_timestamps_keep_file_order(write):
    # u: t=5 for c (row 0) and b (row 2) and e (row 4): they keep file order c, b, e after a (t=1)
    text = "user_id,item_id,timestamp\nu,c,5\nu,a,1\nu,b,5\nu,d,9\nu,e,5\n"
    ds = build_dataset(read_interactions(write("log.csv", text)), k_core=0, max_len=50)
    assert full_sequences(ds) == {"u": ["a", "c", "b", "e", "d"]}


def test_seq_file_keeps_line_order(write):
    ds = build_dataset(read_interactions(write("log.txt", "9 5 3 5 1\n")), k_core=0, max_len=50)
    assert full_sequences(ds) == {"9": ["5", "3", "5", "1"]}


def test_item_zero_is_padding_and_integer_ids_sort_numerically(write):
    ds = build_dataset(read_interactions(write("log.txt", "10 100 9 20 2\n2 9 9 100\n")), k_core=0, max_len=50)
    assert ds.item_ids.tolist() == ["", "2", "9", "20", "100"]
    assert ds.user_ids.tolist() == ["2", "10"]
    assert ds.n_items == 5 and ds.n_users == 2
    # every stored item index is >= 1
    for inst in ds.splits.values():
        assert inst.values.min() >= 1 and inst.target.min() >= 1


def test_string_ids_sort_as_strings(write):
    ds = build_dataset(read_interactions(write("log.txt", "bob z b a10 a9\nann a9 z b\n")), k_core=0, max_len=50)
    assert ds.item_ids.tolist() == ["", "a10", "a9", "b", "z"]
    assert ds.user_ids.tolist() == ["ann", "bob"]
    assert full_sequences(ds) == {"bob": ["z", "b", "a10", "a9"], "ann": ["a9", "z", "b"]}


def test_id_maps_are_saved_in_parquet_and_read_back(write, tmp_path):
    ds = build_dataset(read_interactions(write("log.txt", "10 100 9 20 2\n2 9 9 100\n")), k_core=0, max_len=50)
    out = tmp_path / "ds"
    write_dataset(ds, out)
    items = pq.read_table(out / "items.parquet").to_pydict()
    users = pq.read_table(out / "users.parquet").to_pydict()
    assert items == {"index": [0, 1, 2, 3, 4], "raw_id": ["", "2", "9", "20", "100"]}
    assert users == {"index": [0, 1], "raw_id": ["2", "10"]}
    back = read_dataset(out)
    assert back.item_ids.tolist() == ds.item_ids.tolist()
    assert back.user_ids.tolist() == ds.user_ids.tolist()
    assert full_sequences(back) == {"10": ["100", "9", "20", "2"], "2": ["9", "9", "100"]}


def test_duplicates_are_kept(write):
    ds = build_dataset(read_interactions(write("log.txt", "u 1 1 1 2\n")), k_core=0, max_len=50)
    assert full_sequences(ds) == {"u": ["1", "1", "1", "2"]}
    assert ds.stats["filtered"]["interactions"] == 4
    assert np.array_equal(ds.splits["train"].target, [1])
