"""``raserec preprocess`` and ``raserec evaluate`` through ``main``: exit codes, messages, outputs."""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raserec_core.cli.main import main
from raserec_core.data import read_dataset


def preprocess(src, out, *extra) -> int:
    return main(["preprocess", "--input", str(src), "--output", str(out), *extra])


def test_preprocess_writes_a_dataset_and_prints_its_stats(tmp_path, capsys):
    src = tmp_path / "log.txt"
    src.write_text("a 1 2 3 4\nb 2 3 4\nc 1\n")
    out = tmp_path / "nested" / "ds"
    assert preprocess(src, out, "--k-core", "0", "--set", "data.max_len=2") == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["instances"] == {"train": 1, "valid": 2, "test": 2}
    assert stats["k_core"] == 0 and stats["max_len"] == 2 and stats["users_too_short"] == 1
    assert stats["source"] == str(src)
    ds = read_dataset(out)
    assert ds.stats == stats
    assert ds.splits["test"].history(0).tolist() == [2, 3]  # a: window of 2 before item 4


def test_preprocess_format_flag_and_column_names(tmp_path, capsys):
    src = tmp_path / "log.dat"
    src.write_text("who\twhat\twhen\n" + "".join(f"u{u}\ti{(u + t) % 4}\t{t}\n" for u in range(3) for t in range(4)))
    out = tmp_path / "ds"
    assert preprocess(src, out, "--format", "tsv", "--k-core", "2", "--set", "data.user_col=who",
                      "--set", "data.item_col=what", "--set", "data.time_col=when") == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["raw"] == {"users": 3, "items": 4, "interactions": 12}
    assert stats["k_core"] == 2


BAD_INPUTS = {
    "missing": (None, "file not found"),
    "non_utf8": (b"u1 1 2 3\n\xff 1 2\n", "line 2"),
    "seq_user_only": ("u1 1 2 3\nu2\n", "line 2"),
    "csv_fields": ("user_id,item_id,timestamp\na,b,1\na,c\n", "line 3"),
    "csv_column": ("uid,item_id,timestamp\na,b,1\n", "'user_id'"),
    "csv_timestamp": ("user_id,item_id,timestamp\na,b,1\na,c,later\n", "line 3: column 'timestamp'"),
    "empty": ("", "empty"),
    "kcore_empty": ("u1 1 2 3\nu2 4 5 6\n", "5-core"),
    "suffix": ("u 1 2 3\n", "cannot tell the format"),
}
SUFFIX = {"csv_fields": ".csv", "csv_column": ".csv", "csv_timestamp": ".csv", "suffix": ".xyz"}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_failed_preprocess_exits_2_names_the_file_and_writes_nothing(tmp_path, capsys, case):
    content, expected = BAD_INPUTS[case]
    src = tmp_path / f"input{SUFFIX.get(case, '.txt')}"
    if isinstance(content, bytes):
        src.write_bytes(content)
    elif content is not None:
        src.write_text(content)
    out = tmp_path / "out" / "ds"
    assert preprocess(src, out) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("raserec preprocess: error: ")
    assert str(src) in captured.err
    assert expected in captured.err
    assert not out.exists()
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_failed_preprocess_keeps_an_existing_output(tmp_path, capsys):
    good, bad = tmp_path / "good.txt", tmp_path / "bad.txt"
    good.write_text("u 1 2 3\n")
    bad.write_text("u\n")
    out = tmp_path / "ds"
    assert preprocess(good, out, "--k-core", "0") == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert preprocess(bad, out, "--k-core", "0") == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_preprocess_never_deletes_a_folder_it_did_not_write(tmp_path, capsys):
    src = tmp_path / "log.txt"
    src.write_text("u 1 2 3\nv 1 2 3\n")
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    assert preprocess(src, precious, "--k-core", "0") == 2
    err = capsys.readouterr().err
    assert f"{precious}: already exists and is not empty, and is not a dataset folder" in err and "--overwrite" in err
    assert [p.name for p in precious.iterdir()] == ["thesis.tex"]
    assert preprocess(src, precious, "--k-core", "0", "--overwrite") == 0  # said explicitly: replaced
    assert read_dataset(precious).stats["raw"]["users"] == 2 and not (precious / "thesis.tex").exists()


def test_preprocess_replaces_its_own_dataset_atomically(tmp_path, capsys):
    src = tmp_path / "log.txt"
    src.write_text("u 1 2 3\n")
    out = tmp_path / "ds"
    assert preprocess(src, out, "--k-core", "0") == 0
    src.write_text("u 1 2 3\nv 1 2 3\n")
    assert preprocess(src, out, "--k-core", "0") == 0
    assert read_dataset(out).stats["raw"]["users"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "log.txt"]  # no temporary folder left


def test_preprocess_output_that_is_a_file_is_refused(tmp_path, capsys):
    src, out = tmp_path / "log.txt", tmp_path / "notes.txt"
    src.write_text("u 1 2 3\n")
    out.write_text("keep")
    assert preprocess(src, out, "--k-core", "0", "--overwrite") == 2
    assert "is a file" in capsys.readouterr().err and out.read_text() == "keep"


def test_bad_config_key_exits_2_naming_the_key(tmp_path, capsys):
    src = tmp_path / "log.txt"
    src.write_text("u 1 2 3\n")
    assert preprocess(src, tmp_path / "ds", "--set", "data.kcore=3") == 2
    err = capsys.readouterr().err
    assert "unknown config key 'data.kcore'" in err
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize(("flags", "message"), [
    (["--k-core", "-5"], "'data.k_core': -5 is out of range (allowed: >= 0)"),
    (["--set", "data.max_len=0"], "'data.max_len': 0 is out of range (allowed: >= 1)"),
    (["--set", "data.max_len=-3"], "'data.max_len': -3 is out of range (allowed: >= 1)"),
])
def test_out_of_range_setting_exits_2_before_reading_the_input(tmp_path, capsys, flags, message):
    src = tmp_path / "log.txt"
    src.write_text("u 1 2 3\n")
    assert preprocess(src, tmp_path / "ds", *flags) == 2
    captured = capsys.readouterr()
    assert message in captured.err and "Traceback" not in captured.err
    assert not (tmp_path / "ds").exists()


def test_bad_choice_on_the_command_line_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["preprocess", "--input", "x", "--output", "y", "--format", "xlsx"])
    assert exc.value.code == 2
    assert "invalid choice: 'xlsx'" in capsys.readouterr().err


# ---- evaluate ---------------------------------------------------------------------------------------


@pytest.fixture
def dump(trained_model_dir, wide_dataset_dir, tmp_path, tiny_args, capsys):
    path = tmp_path / "top.parquet"
    metrics_path = tmp_path / "metrics.json"
    assert main(["evaluate", "--data", str(wide_dataset_dir), "--model", str(trained_model_dir),
                 "--topk-output", str(path), "--metrics-output", str(metrics_path), *tiny_args()]) == 0
    printed = json.loads(capsys.readouterr().out)
    return pq.read_table(path), printed, json.loads(metrics_path.read_text())


def test_topk_dump_schema(dump, wide_dataset_dir):
    table, printed, _ = dump
    assert table.column_names == ["user", "items", "scores", "target", "target_rank", "split"]
    assert table.schema.field("user").type == pa.string()
    assert table.schema.field("items").type.value_type == pa.string()
    assert table.schema.field("target_rank").type == pa.int64()
    ds = read_dataset(wide_dataset_dir)
    assert table.num_rows == len(ds.splits["valid"]) + len(ds.splits["test"])
    rows = table.to_pylist()
    assert all(len(r["items"]) == 50 and len(r["scores"]) == 50 for r in rows)  # 60 items > 50
    assert {r["user"] for r in rows} == set(ds.user_ids.tolist())
    assert all("" not in r["items"] for r in rows)
    assert all(r["scores"] == sorted(r["scores"], reverse=True) for r in rows)


def test_metrics_recomputed_from_the_dump_equal_the_printed_ones(dump):
    table, printed, written = dump
    assert printed == written
    for split in ("valid", "test"):
        ranks = [r["target_rank"] for r in table.to_pylist() if r["split"] == split]
        for k in (5, 10, 20, 50):
            hr = sum(r <= k for r in ranks) / len(ranks)
            ndcg = sum(1 / math.log2(r + 1) for r in ranks if r <= k) / len(ranks)
            assert printed[f"{split}/hr@{k}"] == pytest.approx(hr, abs=1e-12)
            assert printed[f"{split}/ndcg@{k}"] == pytest.approx(ndcg, abs=1e-12)


def test_target_sits_at_its_rank_in_the_dump(dump):
    table, _, _ = dump
    rows = table.to_pylist()
    inside = [r for r in rows if r["target_rank"] <= 50]
    assert inside, "a trained model should rank some targets in its top 50"
    for r in rows:
        if r["target_rank"] <= 50:
            assert r["items"][r["target_rank"] - 1] == r["target"]
            assert r["items"].count(r["target"]) == 1
        else:
            assert r["target"] not in r["items"]


def test_evaluate_one_split_and_a_shorter_topk(trained_model_dir, wide_dataset_dir, tmp_path, tiny_args, capsys):
    path = tmp_path / "top.parquet"
    assert main(["evaluate", "--data", str(wide_dataset_dir), "--model", str(trained_model_dir), "--split", "test",
                 "--topk-output", str(path), *tiny_args("eval.topk=5", "eval.ks=[1,5]")]) == 0
    printed = json.loads(capsys.readouterr().out)
    names = [f"{m}@{k}" for m in ("hr", "ndcg", "mrr") for k in (1, 5)]
    protocols = ("", "seen_kept/", "seen_excluded/")
    assert sorted(printed) == sorted([*(f"test/{p}{n}" for p in protocols for n in names), "eval.mask_history"])
    table = pq.read_table(path)
    assert "split" not in table.column_names
    assert {len(x) for x in table.column("items").to_pylist()} == {5}
    ranks = table.column("target_rank").to_pylist()
    assert printed["test/hr@5"] == pytest.approx(sum(r <= 5 for r in ranks) / len(ranks))


def test_evaluate_on_another_dataset_is_refused(trained_model_dir, small_dataset_dir, tiny_args, capsys):
    assert main(["evaluate", "--data", str(small_dataset_dir), "--model", str(trained_model_dir), *tiny_args()]) == 2
    err = capsys.readouterr().err
    assert "trained on another dataset" in err and str(trained_model_dir) in err


def test_evaluate_without_a_model_folder(wide_dataset_dir, tmp_path, tiny_args, capsys):
    assert main(["evaluate", "--data", str(wide_dataset_dir), "--model", str(tmp_path / "none"), *tiny_args()]) == 2
    assert "no model.json" in capsys.readouterr().err


def test_evaluate_with_history_masking_never_ranks_history(trained_model_dir, wide_dataset_dir, tmp_path, tiny_args):
    path = tmp_path / "top.parquet"
    assert main(["evaluate", "--data", str(wide_dataset_dir), "--model", str(trained_model_dir), "--split", "valid",
                 "--topk-output", str(path), *tiny_args("eval.mask_history=true", "eval.topk=10")]) == 0
    ds = read_dataset(wide_dataset_dir)
    valid = ds.splits["valid"]
    for r, row in enumerate(pq.read_table(path).to_pylist()):
        history = {ds.item_ids[i] for i in valid.history(r).tolist()}
        assert not history & set(row["items"])


def test_evaluate_with_a_corrupt_encoder_exits_2(trained_model_dir, wide_dataset_dir, tmp_path, tiny_args, capsys):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(trained_model_dir, model)
    (model / "encoder.pt").write_bytes((model / "encoder.pt").read_bytes()[:-10])
    assert main(["evaluate", "--data", str(wide_dataset_dir), "--model", str(model), *tiny_args()]) == 2
    err = capsys.readouterr().err
    assert "encoder.pt" in err and "does not match model.json" in err
