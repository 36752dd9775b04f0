"""Live memory: ``raserec memory add --model models:/NAME@ALIAS`` grows a registered model's bank into a new
version (no retraining, the trained IVF index only receives vectors), with its lineage, through the
champion gate; the same interactions twice register nothing new. A real SQLite MLflow store in tmp, the
session's tiny dataset and model, fine-tuned over an IVF bank (nlist 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run

torch = pytest.importorskip("torch")
faiss = pytest.importorskip("faiss")
from infra_fixtures import mlflow_store  # noqa: E402,F401

from raserec_core import memory_steps  # noqa: E402
from raserec_core.cli.main import main  # noqa: E402

FINETUNE = ["finetune.epochs=1", "finetune.batch_size=32", "finetune.top_k=4", "finetune.inner_size=32"]
IVF = ["memory.index_type=ivf", "memory.nlist=2"]
# Two new items for user 1, one for user 2, and a new user with three: 2 + 1 + 2 memories.
SLICE = "user_id,item_id,timestamp\n1,30,101\n1,29,100\n2,40,5\nnew,7,10\nnew,2,11\nnew,55,12\n"
ADDED = 5


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, wide_dataset_dir, trained_model_dir, tiny_args):
    """(model folder, index-step bank, its validation NDCG@10) of a model fine-tuned over an IVF bank."""
    root = tmp_path_factory.mktemp("live")
    bank, model = root / "bank", root / "ft"
    assert run(["index", "--data", str(wide_dataset_dir), "--model", str(trained_model_dir), "--output", str(bank),
                *tiny_args(*IVF)])[0] == 0
    assert run(["finetune", "--data", str(wide_dataset_dir), "--model", str(trained_model_dir), "--memory",
                str(bank), "--output", str(model), *tiny_args(*IVF, *FINETUNE)])[0] == 0
    rc, metrics = run(["evaluate", "--data", str(wide_dataset_dir), "--model", str(model), "--memory", str(bank),
                       "--split", "valid", *tiny_args()])
    assert rc == 0
    return model, bank, metrics["valid/ndcg@10"]


def register(name: str, score: float, finetuned, data: Path, uri: str, art: Path) -> dict:
    """Version 1 of ``name`` as the register step makes it, with the given validation score."""
    from raserec_core.tracking import runs
    from raserec_core.tracking.registry import register_model

    step = runs.start_step(uri, "live", f"pipe-{name}", "register", params={}, artifact_location=(art / "live").as_uri())
    result = register_model(data, finetuned[0], valid_ndcg_at_10=score, tracking_uri=uri, run_id=step.run_id,
                            device="cpu", model_name=name, memory=finetuned[1])
    step.end()
    return result


def add(model_uri: str, csv: Path, data: Path, uri: str, tiny_args, *extra: str) -> tuple[int, dict | None]:
    return run(["memory", "add", "--model", model_uri, "--interactions", str(csv), "--data", str(data),
                "--tracking-uri", uri, *extra, *tiny_args()])


def versions(uri: str, name: str) -> dict[str, dict]:
    from mlflow import MlflowClient

    c = MlflowClient(uri)
    return {str(mv.version): {"tags": mv.tags, "aliases": sorted(c.get_model_version(name, mv.version).aliases)}
            for mv in c.search_model_versions(f"name = '{name}'")}


def downloaded(uri: str, model_uri: str, dst: Path) -> Path:
    import mlflow

    mlflow.set_tracking_uri(uri)
    return Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(dst))) / "artifacts" / "recommender"


@pytest.fixture(scope="module")
def slice_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("slice") / "new.csv"
    path.write_text(SLICE)
    return path


@pytest.fixture(scope="module")
def weak(mlflow_store, finetuned, wide_dataset_dir, slice_csv, tiny_args):
    """A champion registered with score 0 grown once: the new version beats it."""
    uri, art = mlflow_store
    first = register("live-weak", 0.0, finetuned, wide_dataset_dir, uri, art)
    rc, result = add("models:/live-weak@champion", slice_csv, wide_dataset_dir, uri, tiny_args)
    assert rc == 0
    return first, result


def test_a_new_version_holds_the_grown_bank_with_its_lineage(weak, mlflow_store, slice_csv, finetuned, tmp_path):
    from raserec_core.data import read_interactions
    from raserec_core.memory.bank import load_bank
    from raserec_core.memory.dynamic import interactions_sha256

    uri, _ = mlflow_store
    first, result = weak
    assert (result["version"], result["parent_version"], result["reused"]) == ("2", "1", False)
    assert result["entries_added"] == ADDED and result["new_users"] == 1
    parent = load_bank(downloaded(uri, "models:/live-weak/1", tmp_path / "v1") / "memory")
    child = load_bank(downloaded(uri, "models:/live-weak/2", tmp_path / "v2") / "memory")
    assert len(child) == len(parent) + ADDED == result["entries_total"]
    for name in ("keys", "values", "user", "position", "target"):  # the old memories as they were
        assert torch.equal(getattr(child.entries, name)[: len(parent)], getattr(parent.entries, name))
    assert child.user_ids[-1] == "new"

    tags = versions(uri, "live-weak")["2"]["tags"]
    assert tags["raserec.parent_version"] == "1"
    assert tags["raserec.interactions_sha256"] == interactions_sha256(read_interactions(slice_csv)) == result["interactions_sha256"]
    assert (tags["raserec.entries_added"], tags["raserec.bank_entries"]) == (str(ADDED), str(len(child)))
    assert tags["raserec.dataset_fingerprint"] == versions(uri, "live-weak")["1"]["tags"]["raserec.dataset_fingerprint"]
    assert float(tags["raserec.valid_ndcg_at_10"]) == result["valid/ndcg@10"]
    assert tags["raserec.score_source"].startswith("memory add: valid split")
    assert json.loads((tmp_path / "v2" / "artifacts" / "recommender" / "recommender.json").read_text())["entries"] == len(child)


def test_the_trained_index_is_kept_not_rebuilt(weak, mlflow_store, tmp_path):
    uri, _ = mlflow_store
    indexes = {}
    for v in ("1", "2"):
        folder = downloaded(uri, f"models:/live-weak/{v}", tmp_path / v) / "memory"
        assert json.loads((folder / "manifest.json").read_text())["index_type_built"] == "ivf"
        indexes[v] = faiss.read_index(str(folder / "index.faiss"))
    centroids = {v: faiss.downcast_index(ix.quantizer).reconstruct_n(0, ix.nlist) for v, ix in indexes.items()}
    assert np.array_equal(centroids["1"], centroids["2"])  # a rebuild would re-train them (k-means)
    assert indexes["2"].ntotal == indexes["1"].ntotal + ADDED


def test_the_score_is_measured_and_the_alias_moves_through_the_gate(weak, mlflow_store):
    uri, _ = mlflow_store
    _, result = weak
    assert 0 < result["valid/ndcg@10"] <= 1  # measured, not the parent's 0.0
    state = versions(uri, "live-weak")
    assert state["2"]["aliases"] == ["champion"] and state["1"]["aliases"] == []
    assert result["alias"] == "champion" and result["previous_champion"] == "1"
    assert state["2"]["tags"]["raserec.decision"].startswith("champion: valid NDCG@10")


def test_a_better_champion_keeps_the_alias(mlflow_store, finetuned, wide_dataset_dir, slice_csv, tiny_args):
    uri, art = mlflow_store
    register("live-strong", 1.0, finetuned, wide_dataset_dir, uri, art)  # NDCG@10 cannot exceed 1
    rc, result = add("models:/live-strong@champion", slice_csv, wide_dataset_dir, uri, tiny_args)
    assert rc == 0 and (result["version"], result["alias"]) == ("2", "challenger")
    state = versions(uri, "live-strong")
    assert state["1"]["aliases"] == ["champion"] and state["2"]["aliases"] == ["challenger"]

    # again, from the same champion, rows in another order: the version made then, nothing new
    shuffled = slice_csv.with_name("shuffled.csv")
    lines = SLICE.strip().split("\n")
    shuffled.write_text("\n".join([lines[0], *reversed(lines[1:])]) + "\n")
    rc, again = add("models:/live-strong@champion", shuffled, wide_dataset_dir, uri, tiny_args)
    assert rc == 0 and (again["version"], again["reused"], again["parent_version"]) == ("2", True, "1")
    assert sorted(versions(uri, "live-strong")) == ["1", "2"]


def test_adding_to_the_version_that_holds_them_registers_nothing(weak, mlflow_store, wide_dataset_dir, slice_csv,
                                                                   tiny_args):
    uri, _ = mlflow_store
    rc, again = add("models:/live-weak@champion", slice_csv, wide_dataset_dir, uri, tiny_args)  # now version 2
    assert rc == 0 and (again["version"], again["reused"]) == ("2", True)
    rc, again = add("models:/live-weak/1", slice_csv, wide_dataset_dir, uri, tiny_args)
    assert rc == 0 and (again["version"], again["reused"]) == ("2", True)
    assert sorted(versions(uri, "live-weak")) == ["1", "2"]


def test_validation_view_is_the_training_bank_plus_the_added(finetuned, wide_dataset_dir, trained_model_dir,
                                                             slice_csv):
    """What the gate's score reads: the serving bank minus its validation and test memories."""
    from raserec_core.data import read_dataset, read_interactions
    from raserec_core.memory.bank import load_bank
    from raserec_core.memory.build import extend_with_splits, validation_view
    from raserec_core.memory.dynamic import add_interactions
    from raserec_core.models.checkpoint import load_encoder

    ds = read_dataset(wide_dataset_dir)
    encoder, _ = load_encoder(trained_model_dir, "cpu")
    train = load_bank(finetuned[1])
    serving = extend_with_splits(train, encoder, ds, ("valid", "test"), "cpu")
    grown, _ = add_interactions(serving, encoder, read_interactions(slice_csv), "cpu")
    view = validation_view(grown, ds)
    expected = train.entries.concat(grown.entries.select(torch.arange(len(serving), len(grown))))
    for name in ("keys", "user", "position", "target"):
        assert torch.equal(getattr(view.entries, name), getattr(expected, name))
    assert view.index.ntotal == len(train) + ADDED


def test_bad_inputs_are_one_line_errors_naming_them(mlflow_store, weak, wide_dataset_dir, slice_csv, tiny_args,
                                                    tmp_path, capsys):
    uri, _ = mlflow_store

    def error(model_uri, csv, *extra) -> str:
        capsys.readouterr()
        assert add(model_uri, csv, wide_dataset_dir, uri, tiny_args, *extra)[0] == 2
        line = [x for x in capsys.readouterr().err.splitlines() if x.startswith("raserec memory: error:")]
        assert len(line) == 1
        return line[0]

    assert "models:/nope@champion: no such model version" in error("models:/nope@champion", slice_csv)
    assert "models:/live-weak/99: no such model version" in error("models:/live-weak/99", slice_csv)
    assert "models:/live-weak: not a registered model URI" in error("models:/live-weak", slice_csv)
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,item\n1,30\n")
    assert str(bad) in error("models:/live-weak@champion", bad)
    assert "--memory --output apply to the folder form only" in error(
        "models:/live-weak@champion", slice_csv, "--memory", "x", "--output", "y")
    assert sorted(versions(uri, "live-weak")) == ["1", "2"]


def test_the_step_needs_the_models_dataset(mlflow_store, weak, small_dataset_dir, slice_csv):
    from raserec_core.config import load_config
    from raserec_core.errors import StepError

    uri, _ = mlflow_store
    fresh = slice_csv.with_name("fresh.csv")
    fresh.write_text("user_id,item_id,timestamp\n3,5,1000\n3,6,1001\n")
    with pytest.raises(StepError, match=f"{small_dataset_dir}: not the dataset models:/live-weak@champion was trained on"):
        memory_steps.memory_add_registered("models:/live-weak@champion", fresh, small_dataset_dir, load_config(None, []), "cpu", uri)


def test_the_folder_form_needs_its_bank_and_output(trained_model_dir, slice_csv, capsys):
    assert main(["memory", "add", "--model", str(trained_model_dir), "--interactions", str(slice_csv),
                 "--data", "somewhere"]) == 2
    err = capsys.readouterr().err
    assert f"memory add --model {trained_model_dir} (a folder): needs --memory and --output, takes no --data" in err
