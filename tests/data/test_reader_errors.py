"""Bad input: every case raises DataError whose message names the file and the line or column."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raserec_core.data import DataError, build_dataset, read_interactions

HEADER = "user_id,item_id,timestamp\n"


def _error(path, **kwargs) -> str:
    with pytest.raises(DataError) as err:
        read_interactions(path, **kwargs)
    msg = str(err.value)
    assert str(path) in msg, msg
    return msg


def test_missing_file(tmp_path):
    msg = _error(tmp_path / "nope.csv")
    assert "file not found" in msg


def test_missing_parquet_file(tmp_path):
    assert "file not found" in _error(tmp_path / "nope.parquet")


def test_directory_instead_of_file(tmp_path):
    (tmp_path / "dir.txt").mkdir()
    assert "is a directory" in _error(tmp_path / "dir.txt")


def test_non_utf8_bytes_name_the_line(write):
    path = write("log.txt", b"u1 1 2\nu2 3 4\nu3 \xff\xfe 5\n")
    msg = _error(path)
    assert "line 3" in msg
    assert "UTF-8" in msg
    assert "0xff" in msg


def test_non_utf8_in_csv_names_the_line(write):
    path = write("log.csv", (HEADER + "a,b,1\n").encode() + b"c,\xe9t\xe9,2\n")
    assert "line 3" in _error(path)


def test_seq_line_with_only_a_user_id(write):
    path = write("log.txt", "u1 1 2 3\nu2\nu3 4\n")
    msg = _error(path)
    assert "line 2" in msg
    assert "'u2'" in msg


def test_csv_wrong_field_count_names_the_line(write):
    path = write("log.csv", HEADER + "a,x,1\nb,y,2,extra\nc,z,3\n")
    msg = _error(path)
    assert "line 3" in msg
    assert "expected 3 fields" in msg
    assert "got 4" in msg


def test_tsv_too_few_fields_names_the_line(write):
    path = write("log.tsv", "user_id\titem_id\ttimestamp\na\tx\t1\nb\ty\n")
    msg = _error(path)
    assert "line 3" in msg and "got 2" in msg


@pytest.mark.parametrize(("role", "kwarg"), [("user", "user_col"), ("item", "item_col"), ("time", "time_col")])
def test_misnamed_column_names_the_column_and_the_setting(write, role, kwarg):
    path = write("log.csv", HEADER + "a,x,1\n")
    msg = _error(path, **{kwarg: "wrong_name"})
    assert "'wrong_name'" in msg
    assert f"data.{role}_col" in msg
    assert "user_id, item_id, timestamp" in msg  # lists what is there


def test_inter_file_missing_timestamp_column(write):
    path = write("x.inter", "user_id:token\titem_id:token\n1\t2\n")
    assert "'timestamp'" in _error(path)


def test_parquet_missing_column(tmp_path):
    path = tmp_path / "log.parquet"
    pq.write_table(pa.table({"user_id": ["a"], "item": ["x"], "timestamp": [1]}), path)
    msg = _error(path)
    assert "'item_id'" in msg


def test_non_numeric_timestamp_names_line_and_column(write):
    path = write("log.csv", HEADER + "a,x,1\nb,y,2\nc,z,yesterday\n")
    msg = _error(path)
    assert "line 4" in msg
    assert "'timestamp'" in msg
    assert "'yesterday'" in msg


def test_non_numeric_timestamp_in_inter_file(write):
    path = write("x.inter", "user_id:token\titem_id:token\ttimestamp:float\n1\t2\tnoon\n")
    msg = _error(path)
    assert "line 2" in msg and "'timestamp'" in msg


def test_non_finite_timestamp(write):
    path = write("log.csv", HEADER + "a,x,1\nb,y,inf\n")
    msg = _error(path)
    assert "line 3" in msg and "finite" in msg


def test_non_numeric_timestamp_in_parquet_names_row_and_column(tmp_path):
    path = tmp_path / "log.parquet"
    pq.write_table(pa.table({"user_id": ["a", "b"], "item_id": ["x", "y"], "timestamp": ["1", "late"]}), path)
    msg = _error(path)
    assert "row 1" in msg and "'timestamp'" in msg


def test_unreadable_parquet(write):
    path = write("log.parquet", b"this is not parquet")
    assert "not a readable Parquet file" in _error(path)


@pytest.mark.parametrize("name", ["empty.txt", "empty.csv", "empty.tsv", "empty.inter"])
def test_empty_file(write, name):
    assert "empty" in _error(write(name, ""))


def test_whitespace_only_seq_file(write):
    assert "empty" in _error(write("blank.txt", "\n  \n\n"))


def test_csv_with_header_only(write):
    assert "no rows" in _error(write("head.csv", HEADER))


def test_empty_result_after_kcore_names_the_source(write):
    path = write("log.txt", "u1 1 2 3\nu2 4 5 6\n")
    inter = read_interactions(path)
    with pytest.raises(DataError) as err:
        build_dataset(inter, k_core=5, max_len=50, source=str(path))
    msg = str(err.value)
    assert str(path) in msg
    assert "5-core" in msg
    assert "2 users, 6 items, 6 interactions" in msg


def test_no_user_long_enough_for_a_split(write):
    path = write("log.txt", "u1 1 2\nu2 1\n")
    with pytest.raises(DataError) as err:
        build_dataset(read_interactions(path), k_core=0, max_len=50, source=str(path))
    assert str(path) in str(err.value) and "3 interactions" in str(err.value)


def test_empty_item_id_is_an_error(write):
    path = write("log.csv", HEADER + "a,x,1\nb,,2\n")
    msg = _error(path)
    assert "line 3" in msg and "'item_id'" in msg


def test_line_number_counts_blank_lines(write):
    path = write("log.csv", HEADER + "a,x,1\n\nb,y,soon\n")
    assert "line 4" in _error(path)


def test_quoted_csv_field_with_a_comma(write):
    inter = read_interactions(write("log.csv", HEADER + 'a,"x,y",1\n'))
    assert inter.item.tolist() == ["x,y"]
