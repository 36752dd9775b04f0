"""Bad input: every case raises DataError whose message names the file and the line or column."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raserec_core.data import DataError, build_dataset, read_interactions
from raserec_core.data.readers import MAX_ID_LENGTH

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


LONG = "x" * (MAX_ID_LENGTH + 1)


@pytest.mark.parametrize(("name", "content", "where"), [
    ("log.txt", f"u1 1 2 3\nu2 1 {LONG} 3\n", "line 2"),
    ("log.csv", HEADER + f"a,x,1\n{LONG},y,2\n", "line 3, column 'user_id'"),
    ("log.tsv", "user_id\titem_id\ttimestamp\n" + f"a\tx\t1\nb\ty\t2\nc\t{LONG}\t3\n", "line 4, column 'item_id'"),
], ids=["seq", "csv", "tsv"])
def test_an_id_over_the_length_limit_names_the_line(write, name, content, where):
    msg = _error(write(name, content))
    assert where in msg and f"{MAX_ID_LENGTH + 1} characters" in msg and f"at most {MAX_ID_LENGTH}" in msg


def test_an_id_over_the_length_limit_in_parquet_names_the_row(tmp_path):
    path = tmp_path / "log.parquet"
    pq.write_table(pa.table({"user_id": ["a", "b"], "item_id": ["x", LONG], "timestamp": [1, 2]}), path)
    assert "row 1, column 'item_id'" in _error(path)


def test_an_id_at_the_length_limit_is_read(write):
    longest = "y" * MAX_ID_LENGTH
    inter = read_interactions(write("log.txt", f"u {longest} 2\n"))
    assert inter.item.tolist() == [longest, "2"]


def test_a_million_character_id_ends_in_a_clear_error_in_bounded_memory(write):
    """Ids used to live in fixed-width numpy strings: every row padded to the longest id (22.7 GB for
    this file's big brother). The child's address space is capped too, so a regression fails here
    instead of taking the machine down."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import raserec_core

    lines = [f"u{u} " + " ".join(f"i{(u + j) % 40}" for j in range(4)) for u in range(100)]
    lines[50] = "u50 i1 " + "x" * 1_000_000 + " i2"
    path = write("big.txt", "\n".join(lines) + "\n")
    child = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))\n"
        "from raserec_core.cli.main import main\n"
        "rc = main(sys.argv[1:])\n"
        "print('RESULT', rc, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    root = str(Path(raserec_core.__file__).parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-c", child, "preprocess", "--input", str(path), "--output", str(path.parent / "ds"),
         "--k-core", "0"], capture_output=True, text=True, env=env, timeout=300,
    )
    result = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    assert result, proc.stderr[-2000:]
    rc, max_rss_kb = map(int, result[0].split()[1:])
    assert rc == 2 and f"{path}, line 51: an id of 1000000 characters" in proc.stderr
    assert max_rss_kb < 1 << 20  # ru_maxrss is in KiB on Linux: under 1 GiB
    assert not (path.parent / "ds").exists()


@pytest.mark.parametrize("name", ["log.csv", "log.inter"])
def test_a_duplicate_column_name_is_one_line_naming_it(write, name):
    header = "user_id,item_id,user_id\n" if name == "log.csv" else "user_id:token\titem_id:token\tuser_id:float\n"
    body = "a,x,1\n" if name == "log.csv" else "a\tx\t1\n"
    msg = _error(write(name, header + body), time_col="")
    assert "line 1: column 'user_id' appears more than once" in msg and "\n" not in msg


def test_a_duplicate_column_in_parquet_names_it(tmp_path):
    path = tmp_path / "log.parquet"
    pq.write_table(pa.Table.from_arrays([pa.array(["a"]), pa.array(["x"]), pa.array(["b"])],
                                        names=["user_id", "item_id", "item_id"]), path)
    assert "column 'item_id' appears more than once" in _error(path, time_col="")


@pytest.mark.parametrize(("name", "content"), [
    ("log.csv", HEADER + "a,x,1\nb,y,2\n"),
    ("log.txt", "a x\nb y\n"),
], ids=["csv", "seq"])
def test_a_utf8_byte_order_mark_is_stripped(write, name, content):
    inter = read_interactions(write(name, b"\xef\xbb\xbf" + content.encode()), time_col="")
    assert inter.user.tolist() == ["a", "b"] and inter.item.tolist() == ["x", "y"]


@pytest.mark.parametrize(("content", "line"), [
    (HEADER + 'a,x,1\nb,"y,2\nc,z,3\nd,w,4\n', 3),  # the open quote swallows the following lines
    (HEADER + 'a,x,1\nb,"y,2\n', 3),  # ... or runs to the end of the file
    (HEADER + 'a,"x ""quoted"" y",1\n\nb,"y,2\nc,z,3\n', 4),  # escaped quotes and a blank line before it
], ids=["mid-file", "last-line", "after-escapes"])
def test_an_unbalanced_quote_is_blamed_on_the_line_it_opens(write, content, line):
    msg = _error(write("log.csv", content))
    assert f"line {line}: a quote opened on this line is not closed" in msg


def test_balanced_quotes_still_read(write):
    inter = read_interactions(write("log.csv", HEADER + 'a,"x ""q"" y",1\n"b",y,2\n'))
    assert inter.item.tolist() == ['x "q" y', "y"] and inter.user.tolist() == ["a", "b"]
