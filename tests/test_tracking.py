"""MLflow against a real SQLite store in tmp: runs and tags, metric names, secrets, registry gate, pyfunc."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from infra_fixtures import SECRET_VALUE, mlflow_store, tiny_config, toy_dataset, toy_encoder  # noqa: F401

from raserec_core.config import flatten
from raserec_core.tracking.runs import metric_values
from raserec_core.tracking.secrets import safe_params, scrub


def test_safe_params_drop_secrets_and_url_credentials():
    params = safe_params({
        "config": {"model": {"backbone": "sasrec"}, "eval": {"ks": [5, 10]}},
        "AWS_SECRET_ACCESS_KEY": "x", "aws_session_token": "x", "db_password": "x", "MY_ACCESS_KEY_ID": "x",
        "tracking": "postgresql://mlflow:hunter2@postgres:5432/mlflow",
    })
    assert params == {
        "config.model.backbone": "sasrec", "config.eval.ks": "[5, 10]",
        "tracking": "postgresql://***@postgres:5432/mlflow",
    }
    assert scrub("see s3://k:s@host/b and http://plain/x") == "see s3://***@host/b and http://plain/x"


def test_metric_names_are_mlflow_safe():
    values = metric_values({"valid/ndcg@10": 0.5, "test/hr@5": 1, "note": "x", "flag": True, "nan": float("nan"),
                            "filtered": {"users": 3}}, prefix="best")
    assert values == {"best_valid_ndcg_at_10": 0.5, "best_test_hr_at_5": 1.0, "best_filtered_users": 3.0}
    assert flatten({"a": {"b": {"c": 1}}}, sep="_") == {"a_b_c": 1}


def _runs(uri, experiment):
    from mlflow import MlflowClient

    c = MlflowClient(uri)
    exp = c.get_experiment_by_name(experiment)
    return c, list(c.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"]))


@pytest.mark.integration
def test_parent_and_nested_runs_found_by_tag(mlflow_store, tmp_path, monkeypatch):
    from raserec_core.tracking import runs

    uri, art = mlflow_store
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_VALUE)
    kw = dict(artifact_location=(art / "nested").as_uri())
    pre = runs.start_step(uri, "nested", "pipe-1", "preprocess", params={"config": {"data": {"k_core": 5}}}, **kw)
    pre.log_metrics({"filtered": {"users": 24}}, prefix="dataset")
    pre.end()
    train = runs.start_step(uri, "nested", "pipe-1", "pretrain", params={"config": {"seed": 7}}, **kw)
    train.log_history([
        {"epoch": 1, "loss": 2.0, "train_time": 1.0, "valid/ndcg@10": 0.10, "valid/hr@10": 0.3},
        {"epoch": 2, "loss": 1.5, "train_time": 1.0, "valid/ndcg@10": 0.20, "valid/hr@10": 0.4},
    ])
    train.log_metrics({"valid/ndcg@10": 0.2}, prefix="best")
    runs.log_cached_step(train, "preprocess", {"users": 1.0})  # has a run already: nothing logged
    runs.log_cached_step(train, "index", {"entries": 120.0, "index_type": "brute"})
    train.end()
    other = runs.start_step(uri, "nested", "pipe-2", "preprocess", **kw)
    other.end()

    c, all_runs = _runs(uri, "nested")
    parents = [r for r in all_runs if r.data.tags.get(runs.TAG_ROLE) == "pipeline"]
    assert sorted(r.data.tags[runs.TAG_RUN] for r in parents) == ["pipe-1", "pipe-2"]
    parent = next(r for r in parents if r.data.tags[runs.TAG_RUN] == "pipe-1")
    children = runs.step_runs(c, parent.info.experiment_id, "pipe-1")
    assert sorted(children) == ["index", "preprocess", "pretrain"]
    for name, (child,) in children.items():
        assert child.data.tags[runs.PARENT_TAG] == parent.info.run_id
        assert child.data.tags[runs.TAG_STEP] == name
        assert child.info.status == "FINISHED"
    assert children["index"][0].data.tags[runs.TAG_CACHED] == "true"
    assert children["index"][0].data.metrics == {"entries": 120.0}
    assert runs.TAG_CACHED not in children["pretrain"][0].data.tags

    metrics = children["pretrain"][0].data.metrics
    assert {"valid_ndcg_at_10", "valid_hr_at_10", "loss", "best_valid_ndcg_at_10"} <= set(metrics)
    assert not any("@" in k or "/" in k for k in metrics)
    history = c.get_metric_history(children["pretrain"][0].info.run_id, "valid_ndcg_at_10")
    assert [(m.step, m.value) for m in history] == [(1, 0.10), (2, 0.20)]
    assert [a.path for a in c.list_artifacts(children["pretrain"][0].info.run_id, "plots")] == [
        "plots/training_curves.png"
    ]
    assert children["preprocess"][0].data.metrics == {"dataset_filtered_users": 24.0}

    for run in all_runs:  # the planted secret is nowhere
        assert SECRET_VALUE not in json.dumps({**run.data.params, **run.data.tags})


def _version(client, name, score, fingerprint, tmp_path):
    from raserec_core.tracking.registry import TAG_FINGERPRINT, TAG_SCORE

    src = tmp_path / f"model-{len(list(tmp_path.iterdir()))}"
    src.mkdir()
    mv = client.create_model_version(name, src.as_uri(), tags={TAG_SCORE: repr(score), TAG_FINGERPRINT: fingerprint})
    return mv.version


@pytest.mark.integration
def test_champion_challenger_gate_both_ways(mlflow_store, tmp_path):
    from mlflow import MlflowClient

    from raserec_core.tracking.registry import CHALLENGER, CHAMPION, describe, gate

    uri, _ = mlflow_store
    c = MlflowClient(uri)
    name = "gate-test"
    c.create_registered_model(name)

    v1 = _version(c, name, 0.30, "fp-a", tmp_path)
    assert gate(c, name, v1, 0.30, "fp-a")["alias"] == CHAMPION
    v2 = _version(c, name, 0.25, "fp-a", tmp_path)  # worse: challenger, champion stays
    decision = gate(c, name, v2, 0.25, "fp-a")
    assert (decision["alias"], decision["previous_champion"]) == (CHALLENGER, str(v1))
    assert str(c.get_model_version_by_alias(name, CHAMPION).version) == str(v1)
    v3 = _version(c, name, 0.30, "fp-a", tmp_path)  # a tie does not beat the champion
    assert gate(c, name, v3, 0.30, "fp-a")["alias"] == CHALLENGER
    v4 = _version(c, name, 0.35, "fp-a", tmp_path)  # better on the same data: new champion
    assert gate(c, name, v4, 0.35, "fp-a")["alias"] == CHAMPION
    v5 = _version(c, name, 0.90, "fp-b", tmp_path)  # other dataset: not comparable
    decision = gate(c, name, v5, 0.90, "fp-b")
    assert decision["alias"] == CHALLENGER and "another dataset" in decision["reason"]

    state = describe(c, name)
    assert state[CHAMPION]["version"] == str(v4) and state[CHALLENGER]["version"] == str(v5)
    assert c.get_model_version(name, v4).tags["raserec.decision"].startswith("champion: valid NDCG@10 0.350000 >")


@pytest.mark.integration
def test_register_model_and_predict_in_a_fresh_process(mlflow_store, toy_dataset, toy_encoder, tmp_path, monkeypatch):
    from raserec_core.tracking import model_folder, runs
    from raserec_core.tracking.registry import register_model
    from raserec_core.tracking.serving import answer

    uri, art = mlflow_store
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_VALUE)
    step = runs.start_step(uri, "registry", "pipe-reg", "register", params={"config": tiny_config().to_dict()},
                           artifact_location=(art / "registry").as_uri())
    result = register_model(toy_dataset, toy_encoder, valid_ndcg_at_10=0.2, tracking_uri=uri, run_id=step.run_id, device="cpu",
                            model_name="toy-recommender")
    step.end()
    assert (result["alias"], result["version"], result["kind"]) == ("champion", "1", "encoder")

    # the same answers in-process, straight from the packed folder
    packed = tmp_path / "packed"
    model_folder.pack(toy_encoder, toy_dataset, packed, None, "cpu")
    expected = answer(model_folder.load(packed, "cpu"), model_folder.load_popularity(packed),
                      [["i1", "i2", "i3"], ["nope"]], ["u1", None], 3)["item_ids"].tolist()

    script = textwrap.dedent(f"""
        import json, os, sys, mlflow, pandas as pd
        mlflow.set_tracking_uri({uri!r})
        torch_before = "torch" in sys.modules
        model = mlflow.pyfunc.load_model("models:/toy-recommender@champion")
        out = model.predict(pd.DataFrame({{"history": [["i1", "i2", "i3"], ["nope"]], "user_id": ["u1", None]}}),
                            params={{"k": 3}})
        device = next(model.unwrap_python_model().recommender.encoder.parameters()).device.type
        print(json.dumps({{"items": [list(x) for x in out["item_ids"]], "device": device, "torch_before": torch_before,
                           "wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                           "scores": [[float(s) for s in x] for x in out["scores"]]}}))
    """)
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["items"] == [list(x) for x in expected]
    assert len(out["items"][0]) == 3 and not set(out["items"][0]) & {"i1", "i2", "i3"}
    assert out["items"][1] == model_folder.load_popularity(packed).item_ids[:3].tolist()  # cold start
    assert out["scores"][0] == sorted(out["scores"][0], reverse=True)
    assert out["device"] == ("cuda" if torch.cuda.is_available() else "cpu")  # RASEREC_DEVICE unset: auto
    # The load chose OpenMP's passive waiting before anything loaded torch (so OpenMP read it).
    assert (out["torch_before"], out["wait_policy"]) == (False, "PASSIVE")
    assert not list(tmp_path.glob("mlruns"))  # nothing written outside the store


def test_the_registered_model_holds_no_pickle(mlflow_store, toy_dataset, toy_encoder, tmp_path):
    """Loading a registered model runs no pickled bytes: the model is built by its logged code file."""
    import mlflow
    import yaml

    from raserec_core.tracking import runs
    from raserec_core.tracking.registry import register_model

    uri, art = mlflow_store
    step = runs.start_step(uri, "nopickle", "pipe-np", "register", params={"config": tiny_config().to_dict()},
                           artifact_location=(art / "nopickle").as_uri())
    register_model(toy_dataset, toy_encoder, valid_ndcg_at_10=0.2, tracking_uri=uri, run_id=step.run_id, device="cpu",
                   model_name="toy-nopickle")
    step.end()
    mlflow.set_tracking_uri(uri)
    local = Path(mlflow.artifacts.download_artifacts("models:/toy-nopickle@champion", dst_path=str(tmp_path / "m")))
    assert not [p for p in local.rglob("*") if p.suffix in (".pkl", ".pickle", ".cloudpickle")]
    flavor = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]
    assert "python_model" not in flavor and flavor["model_code_path"].endswith("pyfunc_entry.py")


def test_recommender_folder(toy_dataset, toy_encoder, tmp_path):
    from raserec_core.tracking import model_folder

    folder = tmp_path / "rec"
    spec = model_folder.pack(toy_encoder, toy_dataset, folder, None, "cpu")
    assert spec["kind"] == "encoder" and spec["format_version"] == 2
    assert {p.name for p in (folder / "model").iterdir()} == {"encoder.pt", "model.json", "items.parquet"}
    assert {p.name for p in folder.iterdir()} == {"model", "recommender.json", "popularity.parquet"}
    rec = model_folder.load(folder, "cpu")
    items, scores = rec.recommend([["i1", "i2"], [], ["unknown"]], ["u", None, None], 100)
    assert len(items[0]) == len(rec.item_ids) - 1 - 2  # every item but padding and the history's two
    assert not {"i1", "i2"} & set(items[0])
    assert items[1] == [] and items[2] == [] and scores[1] == []
    # a folder packed before popularity.parquet (format 1) still serves; its cold starts get no items
    (folder / "popularity.parquet").rename(tmp_path / "popularity.parquet")
    (folder / "recommender.json").write_text(json.dumps({**spec, "format_version": 1}))
    from raserec_core.tracking.serving import answer

    out = answer(model_folder.load(folder, "cpu"), model_folder.load_popularity(folder), [["i1"], []], [None, None], 2)
    assert len(out["item_ids"][0]) == 2 and out["item_ids"][1] == [] and out["fallback"].tolist() == [False, True]
    (folder / "recommender.json").write_text(json.dumps({**spec, "format_version": 3}))
    with pytest.raises(ValueError, match="format_version 3, expected one of"):
        model_folder.load(folder, "cpu")
    (folder / "recommender.json").write_text(json.dumps({**spec, "kind": "mystery"}))
    with pytest.raises(ValueError, match="unknown recommender kind 'mystery'"):
        model_folder.load(folder, "cpu")
    with pytest.raises(FileExistsError):
        model_folder.pack(toy_encoder, toy_dataset, folder, None, "cpu")
