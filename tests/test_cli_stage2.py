"""The stage-2 commands end to end: ``raserec index``, ``raserec evaluate --memory`` and the errors of
``finetune``/``memory add`` the user sees, on the session's tiny dataset and model."""

from __future__ import annotations

import hashlib
import json
import logging

import pytest
from cli_helpers import run

torch = pytest.importorskip("torch")
pytest.importorskip("faiss")

from raserec_core.cli.main import main  # noqa: E402

FINETUNE = ["finetune.epochs=3", "finetune.batch_size=32", "finetune.top_k=4", "finetune.inner_size=32",
            "finetune.lr=0.1"]
KS = (5, 10, 20, 50)


def metric_keys(*splits: str) -> set[str]:
    """Every key of an evaluation's metrics: the usual ones and both protocols under their names."""
    names = [f"{m}@{k}" for m in ("hr", "ndcg", "mrr") for k in KS]
    protocols = ("", "seen_kept/", "seen_excluded/")
    return {f"{s}/{p}{n}" for s in splits for p in protocols for n in names} | {"eval.mask_history"}


def digest(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def bank(tmp_path_factory, wide_dataset_dir, trained_model_dir, tiny_args):
    out = tmp_path_factory.mktemp("cli2_bank") / "bank"
    rc, manifest = run(["index", "--data", str(wide_dataset_dir), "--model", str(trained_model_dir), "--output",
                        str(out), "--index-type", "flat", *tiny_args()])
    assert rc == 0
    return out, manifest


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, wide_dataset_dir, trained_model_dir, bank, tiny_args):
    out = tmp_path_factory.mktemp("cli2_ft") / "ft"
    rc, metrics = run(["finetune", "--data", str(wide_dataset_dir), "--model", str(trained_model_dir), "--memory",
                       str(bank[0]), "--output", str(out), *tiny_args(*FINETUNE)])
    assert rc == 0
    return out, metrics


def test_index_prints_the_manifest(bank, trained_model_dir):
    out, manifest = bank
    assert manifest == json.loads((out / "manifest.json").read_text())
    assert manifest["entries"] == 150 and manifest["dim"] == 16 and manifest["index_type_built"] == "flat"
    assert manifest["encoder_sha256"] == json.loads((trained_model_dir / "model.json").read_text())["encoder_sha256"]


def test_index_ivf_on_a_small_bank_is_an_error_naming_bank_size_and_need(
    wide_dataset_dir, trained_model_dir, tiny_args, tmp_path, capsys
):
    rc = main(["index", "--data", str(wide_dataset_dir), "--model", str(trained_model_dir), "--output",
               str(tmp_path / "bank"), "--index-type", "ivf", *tiny_args()])
    assert rc == 2
    assert "150 entries, fewer than the 4992 that ivf with nlist=128 needs" in capsys.readouterr().err
    assert not (tmp_path / "bank").exists()


def test_index_ivf_on_a_small_bank_falls_back_to_flat_when_allowed(
    wide_dataset_dir, trained_model_dir, tiny_args, tmp_path, caplog
):
    with caplog.at_level(logging.WARNING, logger="raserec.memory"):
        rc, manifest = run(["index", "--data", str(wide_dataset_dir), "--model", str(trained_model_dir), "--output",
                            str(tmp_path / "bank"), "--index-type", "ivf", "--nprobe", "3",
                            *tiny_args("memory.allow_fallback=true")])
    assert rc == 0
    assert manifest["index_type_built"] == "flat" and manifest["index_type_requested"] == "ivf"
    assert manifest["allow_fallback"] is True
    assert manifest["nlist"] == 128 and manifest["nprobe"] == 3
    assert any("150 entries, fewer than the 4992 that ivf with nlist=128 needs" in r.getMessage() for r in caplog.records)


def test_index_of_a_partition(wide_dataset_dir, trained_model_dir, tiny_args, tmp_path):
    rc, manifest = run(["index", "--data", str(wide_dataset_dir), "--model", str(trained_model_dir), "--output",
                        str(tmp_path / "bank"), "--index-type", "brute", *tiny_args(
                            "memory.partition=random", "memory.partition_fraction=0.5")])
    assert rc == 0 and manifest["index_type_built"] == "brute" and manifest["index_file"] == "index.pt"
    assert 50 <= manifest["entries"] <= 100  # about half of the 150 training instances


def test_evaluate_with_memory_reproduces_the_finetune_metrics(finetuned, bank, wide_dataset_dir, tiny_args, tmp_path):
    out, ft_metrics = finetuned
    before = digest(bank[0])
    metrics_path = tmp_path / "metrics.json"
    rc, metrics = run(["evaluate", "--data", str(wide_dataset_dir), "--model", str(out), "--memory", str(bank[0]),
                       "--metrics-output", str(metrics_path), *tiny_args()])
    assert rc == 0
    assert set(metrics) == metric_keys("valid", "test")
    assert metrics == pytest.approx(ft_metrics, abs=1e-9)
    assert json.loads(metrics_path.read_text()) == metrics
    assert digest(bank[0]) == before  # the train + validation view is built in memory, never written


def test_evaluate_with_memory_differs_from_the_bare_encoder(finetuned, bank, trained_model_dir, wide_dataset_dir,
                                                            tiny_args, tmp_path, caplog):
    out, _ = finetuned
    topk = lambda model, memory, path: run(
        ["evaluate", "--data", str(wide_dataset_dir), "--model", str(model), "--split", "test", "--topk-output",
         str(path), *(["--memory", str(memory)] if memory else []), *tiny_args()])
    import pyarrow.parquet as pq

    rc, with_memory = topk(out, bank[0], tmp_path / "a.parquet")
    assert rc == 0 and set(with_memory) == metric_keys("test")
    # a fine-tuned model without --memory evaluates its encoder alone: the stage-1 model's results
    with caplog.at_level(logging.WARNING, logger="raserec"):
        rc, bare = topk(out, None, tmp_path / "b.parquet")
    assert rc == 0 and any("without --memory only its encoder is evaluated" in r.getMessage() for r in caplog.records)
    rc, stage1 = topk(trained_model_dir, None, tmp_path / "c.parquet")
    assert rc == 0 and bare == stage1
    scores = lambda name: pq.read_table(tmp_path / name).column("scores").to_pylist()
    assert scores("b.parquet") == scores("c.parquet")
    assert scores("a.parquet") != scores("b.parquet")  # retrieval changes the representation


def test_evaluate_with_memory_writes_topk_lists(finetuned, bank, wide_dataset_dir, tiny_args, tmp_path):
    import pyarrow.parquet as pq

    out, _ = finetuned
    path = tmp_path / "topk.parquet"
    rc, metrics = run(["evaluate", "--data", str(wide_dataset_dir), "--model", str(out), "--memory", str(bank[0]),
                       "--topk-output", str(path), *tiny_args("eval.topk=10")])
    assert rc == 0
    table = pq.read_table(path)
    assert set(table.column_names) == {"user", "items", "scores", "target", "target_rank", "split"}
    assert table.num_rows == 60
    rows = table.to_pylist()
    assert {r["split"] for r in rows} == {"valid", "test"}
    for r in rows:
        assert len(r["items"]) == len(r["scores"]) == 10 and len(set(r["items"])) == 10
        assert r["scores"] == sorted(r["scores"], reverse=True)
        assert "" not in r["items"]
        if r["target"] in r["items"]:
            assert r["target_rank"] == r["items"].index(r["target"]) + 1
        else:
            assert r["target_rank"] > 10
    for split in ("valid", "test"):
        ranks = [r["target_rank"] for r in rows if r["split"] == split]
        assert metrics[f"{split}/hr@10"] == pytest.approx(sum(x <= 10 for x in ranks) / 30)
        assert metrics[f"{split}/hr@5"] == pytest.approx(sum(x <= 5 for x in ranks) / 30)


def test_evaluate_a_stage1_model_with_memory_is_an_error(trained_model_dir, bank, wide_dataset_dir, tiny_args, capsys):
    rc = main(["evaluate", "--data", str(wide_dataset_dir), "--model", str(trained_model_dir), "--memory",
               str(bank[0]), *tiny_args()])
    assert rc == 2
    err = capsys.readouterr().err
    assert f"raserec evaluate: error: {trained_model_dir}: --memory needs a fine-tuned model" in err


def test_finetune_with_a_folder_that_is_not_a_bank_is_an_error(wide_dataset_dir, trained_model_dir, tiny_args,
                                                               tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    rc = main(["finetune", "--data", str(wide_dataset_dir), "--model", str(trained_model_dir), "--memory",
               str(tmp_path / "empty"), "--output", str(tmp_path / "ft"), *tiny_args(*FINETUNE)])
    assert rc == 2
    assert "no manifest.json (not a memory bank written by 'raserec index')" in capsys.readouterr().err
    assert not (tmp_path / "ft").exists()


def test_memory_add_into_an_existing_other_folder_is_an_error(bank, trained_model_dir, tiny_args, tmp_path, capsys):
    src = tmp_path / "slice.csv"
    src.write_text("user_id,item_id,timestamp\n3,5,1000\n")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("x")
    rc = main(["memory", "add", "--memory", str(bank[0]), "--model", str(trained_model_dir), "--interactions",
               str(src), "--output", str(taken), *tiny_args()])
    assert rc == 2
    assert f"{taken}: already exists and is not empty" in capsys.readouterr().err
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]


def _precious(folder):
    folder.mkdir()
    (folder / "notes.txt").write_text("not ours")
    return folder


def test_index_never_deletes_a_folder_it_did_not_write(wide_dataset_dir, trained_model_dir, tiny_args, tmp_path, capsys):
    precious = _precious(tmp_path / "precious")
    cmd = ["index", "--data", str(wide_dataset_dir), "--model", str(trained_model_dir), "--output", str(precious),
           "--index-type", "flat", *tiny_args()]
    assert run(cmd)[0] == 2
    err = capsys.readouterr().err
    assert f"{precious}: already exists and is not empty, and is not a memory bank" in err and "--overwrite" in err
    assert [p.name for p in precious.iterdir()] == ["notes.txt"]
    rc, manifest = run([*cmd, "--overwrite"])
    assert rc == 0 and manifest == json.loads((precious / "manifest.json").read_text())


def test_index_replaces_its_own_bank(bank, wide_dataset_dir, trained_model_dir, tiny_args, tmp_path):
    import shutil

    out = shutil.copytree(bank[0], tmp_path / "bank")
    rc, manifest = run(["index", "--data", str(wide_dataset_dir), "--model", str(trained_model_dir), "--output",
                        str(out), "--index-type", "brute", *tiny_args()])
    assert rc == 0 and json.loads((out / "manifest.json").read_text())["index_type_built"] == "brute"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bank"]


def test_memory_add_overwrite_replaces_another_folder_only_when_asked(bank, trained_model_dir, tiny_args, tmp_path):
    src = tmp_path / "slice.csv"
    src.write_text("user_id,item_id,timestamp\n3,5,1000\n")
    precious = _precious(tmp_path / "precious")
    cmd = ["memory", "add", "--memory", str(bank[0]), "--model", str(trained_model_dir), "--interactions", str(src),
           "--output", str(precious), *tiny_args()]
    assert run(cmd)[0] == 2 and [p.name for p in precious.iterdir()] == ["notes.txt"]
    assert run([*cmd, "--overwrite"])[0] == 0 and (precious / "manifest.json").exists()


def test_evaluate_with_memory_uses_the_models_top_k(finetuned, bank, wide_dataset_dir, tiny_args, tmp_path):
    """Retrieval follows model.json (top_k 4 here), not the command's config (default 20)."""
    import pyarrow.parquet as pq

    out, _ = finetuned
    paths = {}
    for name, extra in (("recorded", FINETUNE), ("defaults", [])):
        paths[name] = tmp_path / f"{name}.parquet"
        rc, _ = run(["evaluate", "--data", str(wide_dataset_dir), "--model", str(out), "--memory", str(bank[0]),
                     "--split", "test", "--topk-output", str(paths[name]), *tiny_args(*extra)])
        assert rc == 0
    scores = {name: pq.read_table(p).column("scores").to_pylist() for name, p in paths.items()}
    assert scores["defaults"] == scores["recorded"]


def test_evaluate_with_memory_of_a_rank_embedding_model(bank, wide_dataset_dir, trained_model_dir, tiny_args,
                                                        tmp_path):
    """4 rank embeddings, 4 memories: evaluate must not retrieve the config's default 20."""
    out = tmp_path / "ft"
    args = [*FINETUNE, "finetune.epochs=1", "finetune.retrieval_position_embedding=true"]
    rc, ft_metrics = run(["finetune", "--data", str(wide_dataset_dir), "--model", str(trained_model_dir), "--memory",
                          str(bank[0]), "--output", str(out), *tiny_args(*args)])
    assert rc == 0
    rc, metrics = run(["evaluate", "--data", str(wide_dataset_dir), "--model", str(out), "--memory", str(bank[0]),
                       *tiny_args()])
    assert rc == 0 and metrics == pytest.approx(ft_metrics, abs=1e-9)
    assert json.loads((out / "model.json").read_text())["retrieval"]["top_k"] == 4


def test_recommender_searches_with_the_nprobe_the_model_was_evaluated_with(wide_dataset_dir, trained_model_dir,
                                                                           tiny_args, tmp_path):
    from raserec_core.recommender import Recommender

    ivf = tmp_path / "ivf"
    rc, manifest = run(["index", "--data", str(wide_dataset_dir), "--model", str(trained_model_dir), "--output",
                        str(ivf), "--index-type", "ivf", "--nlist", "2", "--nprobe", "2", *tiny_args()])
    assert rc == 0 and manifest["index_type_built"] == "ivf" and manifest["nprobe"] == 2
    out = tmp_path / "ft"
    rc, _ = run(["finetune", "--data", str(wide_dataset_dir), "--model", str(trained_model_dir), "--memory", str(ivf),
                 "--output", str(out), *tiny_args(*FINETUNE, "finetune.epochs=1", "memory.nprobe=1")])
    assert rc == 0
    evaluated = json.loads((out / "model.json").read_text())["retrieval"]["nprobe"]
    assert evaluated == 1
    assert Recommender.load(out, ivf, "cpu").bank.index.index.nprobe == evaluated

    # The default memory.nprobe (0) fine-tunes with the bank's own and records it.
    rc, _ = run(["finetune", "--data", str(wide_dataset_dir), "--model", str(trained_model_dir), "--memory", str(ivf),
                 "--output", str(tmp_path / "ft0"), *tiny_args(*FINETUNE, "finetune.epochs=1")])
    assert rc == 0
    retrieval = json.loads((tmp_path / "ft0" / "model.json").read_text())["retrieval"]
    assert (retrieval["nprobe"], retrieval["index_type"], retrieval["nlist"]) == (2, "ivf", 2)
    assert Recommender.load(tmp_path / "ft0", ivf, "cpu").bank.index.index.nprobe == 2
