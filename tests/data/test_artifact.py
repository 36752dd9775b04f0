"""The dataset artifact: exact round trip, and tampered or incomplete folders rejected."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raserec_core.data import SPLITS, DataError, build_dataset, read_dataset, read_interactions, write_dataset


@pytest.fixture
def dataset(write):
    text = "u1 1 2 3 4 5 6\nu2 2 3 4\nu3 6 5 4 3 2 1 7\nu4 1\n"
    return build_dataset(read_interactions(write("log.txt", text)), k_core=0, max_len=4, source="log.txt")


@pytest.fixture
def written(dataset, tmp_path):
    out = tmp_path / "ds"
    write_dataset(dataset, out)
    return out


def test_round_trip_gives_identical_arrays(dataset, written):
    back = read_dataset(written)
    for name in SPLITS:
        a, b = dataset.splits[name], back.splits[name]
        for field in ("user", "position", "target", "offsets", "values"):
            assert np.array_equal(getattr(a, field), getattr(b, field)), (name, field)
            assert getattr(b, field).dtype == np.int64
    assert back.item_ids.tolist() == dataset.item_ids.tolist()
    assert back.user_ids.tolist() == dataset.user_ids.tolist()
    assert back.stats == dataset.stats
    assert back.fingerprint == dataset.fingerprint


def test_folder_layout_and_schema(written):
    assert sorted(p.name for p in written.iterdir()) == [
        "items.parquet", "stats.json", "test.parquet", "train.parquet", "users.parquet", "valid.parquet",
    ]
    schema = pq.read_schema(written / "train.parquet")
    assert schema.names == ["user", "position", "history", "target"]
    assert schema.field("target").type == pa.int64()


def test_write_replaces_an_existing_folder(dataset, written, write):
    other = build_dataset(read_interactions(write("b.txt", "x 1 2 3\n")), k_core=0, max_len=4)
    write_dataset(other, written)
    assert read_dataset(written).user_ids.tolist() == ["x"]
    assert not [p for p in written.parent.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_tampered_target_is_rejected_by_the_fingerprint(written):
    path = written / "train.parquet"
    table = pq.read_table(path)
    target = table.column("target").to_numpy().copy()
    target[0] = target[0] % 7 + 1 if target[0] != 1 else 2
    pq.write_table(table.set_column(3, "target", pa.array(target)), path)
    with pytest.raises(DataError) as err:
        read_dataset(written)
    assert str(written) in str(err.value)
    assert "fingerprint" in str(err.value)
    # without verification the tampered value is read as it is
    assert read_dataset(written, verify=False).splits["train"].target[0] == target[0]


def test_tampered_item_map_is_rejected(written):
    path = written / "items.parquet"
    ids = pq.read_table(path).column("raw_id").to_pylist()
    ids[1] = "changed"
    pq.write_table(pa.table({"index": np.arange(len(ids)), "raw_id": ids}), path)
    with pytest.raises(DataError, match="fingerprint"):
        read_dataset(written)


def test_row_count_mismatch_names_the_file(written):
    stats = json.loads((written / "stats.json").read_text())
    stats["instances"]["valid"] += 1
    (written / "stats.json").write_text(json.dumps(stats))
    with pytest.raises(DataError) as err:
        read_dataset(written)
    assert "valid.parquet" in str(err.value)
    assert "stats.json says" in str(err.value)


def test_missing_stats_json(written):
    (written / "stats.json").unlink()
    with pytest.raises(DataError) as err:
        read_dataset(written)
    assert "stats.json" in str(err.value) and "missing" in str(err.value)


def test_corrupt_stats_json_names_the_line(written):
    (written / "stats.json").write_text('{\n"format_version": 1,\n oops\n}')
    with pytest.raises(DataError) as err:
        read_dataset(written)
    assert "stats.json, line 3" in str(err.value)


def test_wrong_format_version(written):
    stats = json.loads((written / "stats.json").read_text())
    stats["format_version"] = 99
    (written / "stats.json").write_text(json.dumps(stats))
    with pytest.raises(DataError, match="format_version 99"):
        read_dataset(written)


def test_missing_split_file(written):
    (written / "test.parquet").unlink()
    with pytest.raises(DataError) as err:
        read_dataset(written)
    assert "test.parquet" in str(err.value) and "missing" in str(err.value)


def test_split_file_missing_a_column(written):
    table = pq.read_table(written / "valid.parquet").drop(["history"])
    pq.write_table(table, written / "valid.parquet")
    with pytest.raises(DataError) as err:
        read_dataset(written)
    assert "valid.parquet" in str(err.value) and "'history'" in str(err.value)


def test_not_a_folder(tmp_path):
    with pytest.raises(DataError, match="not a dataset folder"):
        read_dataset(tmp_path / "missing")
