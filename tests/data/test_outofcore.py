"""The out-of-core (DuckDB) path writes the very artifact the in-memory path writes, and names bad input."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raserec_core import steps
from raserec_core.config import load_config
from raserec_core.data import DataError, build_dataset, outofcore, read_dataset, read_interactions, write_dataset
from raserec_core.data.outofcore import preprocess_parquet

pytest.importorskip("duckdb")  # the `ooc` extra


@pytest.fixture(autouse=True)
def tiny_batches(monkeypatch):
    # Batches and row groups of a few rows: users straddle batch boundaries, files hold many row groups.
    monkeypatch.setattr(outofcore, "BATCH_ROWS", 7)
    monkeypatch.setattr(outofcore, "GROUP_ROWS", 5)


def random_log(seed: int, n: int, string_ids: bool) -> pa.Table:
    rng = np.random.default_rng(seed)
    user = rng.zipf(1.5, n) % 40
    item = rng.zipf(1.3, n) % 60
    time = rng.integers(0, 6, n)  # few distinct times: many ties, broken by row order
    if string_ids:  # mixed text: string order, not numeric ("u10" < "u9")
        return pa.table({"user_id": [f"u{x}" for x in user], "item_id": [f"é{x}" for x in item], "timestamp": time})
    return pa.table({"user_id": user * 7 - 50, "item_id": item * 13, "timestamp": time.astype(np.float64)})


def both(tmp_path, table: pa.Table, k_core: int, max_len: int):
    src = tmp_path / "log.parquet"
    pq.write_table(table, src, row_group_size=9)
    stats = preprocess_parquet(src, tmp_path / "ooc", k_core, max_len)
    write_dataset(build_dataset(read_interactions(src), k_core, max_len, source=str(src)), tmp_path / "mem")
    return stats, read_dataset(tmp_path / "ooc"), read_dataset(tmp_path / "mem")


def assert_same(ooc, mem):
    assert ooc.stats == mem.stats
    assert ooc.user_ids.tolist() == mem.user_ids.tolist() and ooc.item_ids.tolist() == mem.item_ids.tolist()
    for name in ("train", "valid", "test"):
        a, b = ooc.splits[name], mem.splits[name]
        for field in ("user", "position", "target", "offsets", "values"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=f"{name}.{field}")


@pytest.mark.parametrize("string_ids", [True, False])
@pytest.mark.parametrize("k_core", [0, 2, 4])
def test_same_artifact_as_in_memory(tmp_path, string_ids, k_core):
    stats, ooc, mem = both(tmp_path, random_log(k_core, 400, string_ids), k_core, max_len=3)
    assert_same(ooc, mem)
    assert stats == json.loads((tmp_path / "ooc" / "stats.json").read_text())
    assert stats["instances"]["train"] > 50  # the case is not trivial
    if k_core == 0:
        assert stats["users_too_short"] > 0


def test_numeric_strings_sort_numerically_and_ties_keep_row_order(tmp_path):
    # all ids parse as integers ("012" too): numeric order; u "9" has three rows at t=5, kept in row order
    table = pa.table({
        "user_id": ["10", "9", "9", "9", "10", "9", "10", "012", "012", "012"],
        "item_id": ["100", "20", "3", "100", "3", "20", "20", "3", "100", "20"],
        "timestamp": [1, 5, 5, 5, 2, 1, 3, 1, 1, 1],
    })
    _, ooc, mem = both(tmp_path, table, k_core=0, max_len=50)
    assert_same(ooc, mem)
    assert ooc.user_ids.tolist() == ["9", "10", "012"] and ooc.item_ids.tolist() == ["", "3", "20", "100"]
    test = ooc.splits["test"]
    assert [ooc.item_ids[i] for i in [*test.history(0), test.target[0]]] == ["20", "20", "3", "100"]


def test_no_time_column_keeps_file_order(tmp_path):
    table = pa.table({"user_id": ["b", "a", "b", "a", "b", "a"], "item_id": ["z", "y", "x", "z", "y", "x"]})
    src = tmp_path / "log.parquet"
    pq.write_table(table, src)
    preprocess_parquet(src, tmp_path / "ooc", 0, 50, time_col="")
    ooc = read_dataset(tmp_path / "ooc")
    test = ooc.splits["test"]
    assert [ooc.item_ids[i] for i in [*test.history(1), test.target[1]]] == ["z", "x", "y"]  # user "b"


def write_table(tmp_path, columns: dict):
    src = tmp_path / "bad.parquet"
    pq.write_table(pa.table(columns), src)
    return src


@pytest.mark.parametrize("columns, message", [
    ({"user_id": ["a", None, "b"], "item_id": ["x", "y", "z"], "timestamp": [1, 2, 3]},
     "row 1: column 'user_id' is empty"),
    ({"user_id": ["a", "b"], "item_id": ["x", "y"], "timestamp": [1.0, float("inf")]},
     "row 1: column 'timestamp' must be a finite number"),
    ({"user_id": ["a", "b"], "item_id": ["x", "y"], "timestamp": ["1", "2"]},
     "column 'timestamp' is string; data.engine=duckdb needs a numeric time column"),
    ({"user_id": ["a", "b"], "item_id": ["x", "y"], "time": [1, 2]},
     "no time column named 'timestamp' (columns: user_id, item_id, time); set data.time_col"),
    ({"user_id": ["a", "b"], "item_id": ["x", "y" * 1025], "timestamp": [1, 2]},
     "row 1: column 'item_id' holds an id longer than 1024 characters"),
    ({"user_id": pa.array([], pa.string()), "item_id": pa.array([], pa.string()), "timestamp": pa.array([], pa.int64())},
     "no interactions (the table has no rows)"),
])
def test_bad_input_names_the_file(tmp_path, columns, message):
    src = write_table(tmp_path, columns)
    with pytest.raises(DataError, match="bad.parquet") as err:
        preprocess_parquet(src, tmp_path / "out", 0, 50)
    assert message in str(err.value)
    assert not (tmp_path / "out").exists()


def test_unreadable_and_missing_files(tmp_path):
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=r"junk.parquet: not a readable Parquet file"):
        preprocess_parquet(tmp_path / "junk.parquet", tmp_path / "out", 0, 50)
    with pytest.raises(DataError, match=r"nope.parquet: file not found"):
        preprocess_parquet(tmp_path / "nope.parquet", tmp_path / "out", 0, 50)


def test_nothing_survives_the_k_core(tmp_path):
    src = write_table(tmp_path, {"user_id": [1, 2, 3], "item_id": [1, 2, 3], "timestamp": [1, 2, 3]})
    with pytest.raises(DataError, match=r"no interaction survives the 5-core filter \(3 users, 3 items, 3 interactions"):
        preprocess_parquet(src, tmp_path / "out", 5, 50)


def test_step_chooses_the_engine_from_config(tmp_path, write):
    table = random_log(1, 300, string_ids=True)
    src = tmp_path / "log.parquet"
    pq.write_table(table, src)
    cfg = load_config(None, ["data.engine=duckdb", "data.k_core=2", "data.memory_limit_gb=0.5"])
    stats = steps.preprocess(src, tmp_path / "ds", cfg)
    assert stats == read_dataset(tmp_path / "ds").stats and stats["k_core"] == 2
    with pytest.raises(DataError, match=r"log.csv: data.engine=duckdb reads Parquet only"):
        steps.preprocess(write("log.csv", "user_id,item_id,timestamp\na,b,1\n"), tmp_path / "ds2", cfg)


def test_cli_engine_flag(tmp_path, capsys):
    from raserec_core.cli.main import main

    src = tmp_path / "log.parquet"
    pq.write_table(random_log(2, 200, string_ids=False), src)
    assert main(["preprocess", "--input", str(src), "--output", str(tmp_path / "ds"), "--engine", "duckdb",
                 "--k-core", "2"]) == 0
    write_dataset(build_dataset(read_interactions(src), 2, 50, source=str(src)), tmp_path / "mem")
    assert_same(read_dataset(tmp_path / "ds"), read_dataset(tmp_path / "mem"))
