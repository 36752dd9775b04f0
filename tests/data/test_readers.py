"""Readers: every supported format gives the same interaction table (raw string ids, float times)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raserec_core.data import DataError, read_interactions
from raserec_core.data.readers import detect_format


def _as_tuples(inter):
    return list(zip(inter.user.tolist(), inter.item.tolist(), inter.time.tolist()))


def _expected(rows):
    return [(u, i, float(t)) for u, i, t in rows]


def test_sequence_file_gives_one_row_per_item_with_position_as_time(write):
    path = write("log.txt", "7 3 1 2\n\n8 5 5\n")  # blank lines are skipped
    inter = read_interactions(path)
    assert inter.user.tolist() == ["7", "7", "7", "8", "8"]
    assert inter.item.tolist() == ["3", "1", "2", "5", "5"]
    assert inter.time.tolist() == [0.0, 1.0, 2.0, 0.0, 1.0]
    assert len(inter) == 5
    assert inter.time.dtype == np.float64


def test_sequence_file_with_string_ids(write):
    inter = read_interactions(write("log.seq", "alice book-1 book-2\nbob pen\n"))
    assert _as_tuples(inter) == [("alice", "book-1", 0.0), ("alice", "book-2", 1.0), ("bob", "pen", 0.0)]


def test_csv_reads_named_columns_with_string_ids(write, rows):
    text = "user_id,item_id,timestamp,rating\n" + "".join(f"{u},{i},{t},5\n" for u, i, t in rows)
    inter = read_interactions(write("log.csv", text))
    assert _as_tuples(inter) == _expected(rows)
    assert inter.user.dtype == object and inter.item.dtype == object  # unpadded str ids


def test_tsv_reads_named_columns(write, rows):
    text = "timestamp\titem_id\tuser_id\n" + "".join(f"{t}\t{i}\t{u}\n" for u, i, t in rows)
    inter = read_interactions(write("log.tsv", text))
    assert _as_tuples(inter) == _expected(rows)


def test_recbole_inter_strips_type_suffixes(write, rows):
    header = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    text = header + "".join(f"{u}\t{i}\t4.0\t{t}\n" for u, i, t in rows)
    inter = read_interactions(write("beauty.inter", text))
    assert _as_tuples(inter) == _expected(rows)


def test_parquet_with_integer_ids(tmp_path):
    path = tmp_path / "log.parquet"
    pq.write_table(
        pa.table({"user_id": [1, 2, 1], "item_id": [10, 20, 30], "timestamp": [3, 1, 2]}), path
    )
    inter = read_interactions(path)
    assert _as_tuples(inter) == [("1", "10", 3.0), ("2", "20", 1.0), ("1", "30", 2.0)]


def test_parquet_with_string_ids(tmp_path, rows):
    path = tmp_path / "log.pq"
    users, items, times = zip(*rows)
    pq.write_table(pa.table({"user_id": list(users), "item_id": list(items), "timestamp": list(times)}), path)
    assert _as_tuples(read_interactions(path)) == _expected(rows)


def test_columns_are_chosen_by_name(write, rows):
    text = "when,who,what,extra\n" + "".join(f"{t},{u},{i},x\n" for u, i, t in rows)
    inter = read_interactions(write("log.csv", text), user_col="who", item_col="what", time_col="when")
    assert _as_tuples(inter) == _expected(rows)


def test_empty_time_column_keeps_file_order(write):
    inter = read_interactions(write("log.csv", "user_id,item_id\na,x\na,y\n"), time_col="")
    assert inter.time.tolist() == [0.0, 0.0]
    assert inter.item.tolist() == ["x", "y"]


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("a.txt", "seq"), ("a.seq", "seq"), ("a.csv", "csv"), ("a.TSV", "tsv"), ("a.parquet", "parquet"),
     ("a.pq", "parquet"), ("beauty.inter", "inter")],
)
def test_format_is_detected_by_suffix(tmp_path, name, fmt):
    assert detect_format(tmp_path / name) == fmt


def test_explicit_format_overrides_the_suffix(write):
    path = write("log.dat", "user_id\titem_id\ttimestamp\nu\ti\t1\n")
    assert detect_format(path, "tsv") == "tsv"
    assert _as_tuples(read_interactions(path, fmt="tsv")) == [("u", "i", 1.0)]


def test_unknown_suffix_is_an_error_naming_file_and_suffix(write):
    path = write("log.dat", "u i\n")
    with pytest.raises(DataError) as err:
        read_interactions(path)
    assert str(path) in str(err.value)
    assert "'.dat'" in str(err.value)
