"""The pipeline through kfp's local runner on toy data, once per session (each task is a subprocess).

With every stage available (``steps.register`` is the last to come) this is the full
``raserec run`` with ``--artifact-root s3://…`` on the moto server; until then it is the stage-1 part
(preprocess -> pretrain -> evaluate) built from the same components, and the full-run checks skip.
Each run happens twice: the second must come from kfp's cache (register excepted).
"""

import contextlib
import io
import json  # no `from __future__ import annotations`: kfp reads the pipeline's annotations
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from infra_fixtures import (  # noqa: F401  (fixtures)
    DUMMY_AWS,
    TINY_OVERRIDES,
    mlflow_store,
    moto_endpoint,
    tiny_config,
    write_toy_interactions,
)


def full_pipeline_available() -> bool:
    from raserec_core import steps

    return hasattr(steps, "register")


def _stage1_pipeline():
    from kfp import dsl

    from components.evaluate import evaluate
    from components.preprocess import preprocess
    from components.pretrain import pretrain

    @dsl.pipeline(name="raserec-stage1-test")
    def stage1(data_uri: str, config_yaml: str, mlflow_tracking_uri: str, mlflow_experiment: str):
        t = dict(config_yaml=config_yaml, mlflow_tracking_uri=mlflow_tracking_uri, mlflow_experiment=mlflow_experiment,
                 kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
        prep = preprocess(data_uri=data_uri, **t).set_caching_options(True)
        pre = pretrain(data=prep.outputs["dataset"], **t).set_caching_options(True)
        evaluate(data=prep.outputs["dataset"], model=pre.outputs["model"], **t).set_caching_options(True)

    return stage1


@pytest.fixture(scope="session")
def local_runs(tmp_path_factory, mlflow_store, moto_endpoint):
    """Two runs of the pipeline on toy data: ``{"full": bool, "root", "runs": [(seconds, result)], ...}``."""
    import boto3
    from mlflow import MlflowClient

    from raserec_core.tracking.store import ensure_experiment

    uri, art = mlflow_store
    work = tmp_path_factory.mktemp("local-pipeline")
    toy = write_toy_interactions(work / "toy.txt")
    (work / "config.yaml").write_text(json.dumps(TINY_OVERRIDES))
    ensure_experiment(MlflowClient(uri), "local-pipeline", (art / "local-pipeline").as_uri())
    saved = {k: os.environ.get(k) for k in ("TMPDIR", "AWS_ENDPOINT_URL", *DUMMY_AWS)}
    os.environ.update({"TMPDIR": str(work), "AWS_ENDPOINT_URL": moto_endpoint, **DUMMY_AWS})
    tempfile.tempdir = None
    cwd = os.getcwd()
    os.chdir(work)
    full = full_pipeline_available()
    out = {"full": full, "work": work, "tracking_uri": uri, "experiment": "local-pipeline", "runs": [],
           "endpoint": moto_endpoint, "consoles": []}
    try:
        if full:
            from raserec_core.cli import pipeline as cli_pipeline
            from raserec_core.cli.main import main

            boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket="raserec-e2e")
            out["bucket"] = "raserec-e2e"
            argv = ["run", "--data", str(toy), "--config", str(work / "config.yaml"), "--experiment", "local-pipeline",
                    "--model-name", "toy-e2e", "--artifact-root", "s3://raserec-e2e/exports"]
            results, command = [], cli_pipeline.run  # `raserec run` as a user runs it; its result kept too
            cli_pipeline.run = lambda args: results.append(command(args)) or results[-1]
            try:
                for _ in range(2):
                    stdout, stderr = io.StringIO(), io.StringIO()
                    t0 = time.perf_counter()
                    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                        code = main(argv)
                    assert code == 0, stderr.getvalue()[-5000:]
                    out["runs"].append((time.perf_counter() - t0, results[-1]))
                    out["consoles"].append((stdout.getvalue(), stderr.getvalue()))
            finally:
                cli_pipeline.run = command
            out["root"] = Path(out["runs"][0][1]["pipeline_root"])
        else:
            from kfp import local

            root = work / "root"
            local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), enable_caching=True)
            pipeline = _stage1_pipeline()
            for _ in range(2):
                t0 = time.perf_counter()
                pipeline(data_uri=str(toy), config_yaml=tiny_config().to_yaml(), mlflow_tracking_uri=uri,
                         mlflow_experiment="local-pipeline")
                out["runs"].append((time.perf_counter() - t0, None))
            out["root"] = root
    finally:  # restore at once: the runs are over, and other test modules must not see a changed cwd/env
        os.chdir(cwd)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        tempfile.tempdir = None
    return out


def _run_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("raserec"))


@pytest.mark.integration
def test_every_step_leaves_its_artifacts(local_runs):
    first = _run_dirs(local_runs["root"])[0]
    dataset = first / "preprocess" / "dataset"
    assert {"train.parquet", "valid.parquet", "test.parquet", "items.parquet", "stats.json"} <= {
        p.name for p in dataset.iterdir()}
    assert {"encoder.pt", "model.json", "history.json"} <= {p.name for p in (first / "pretrain" / "model").iterdir()}
    metrics = json.loads((first / "evaluate" / "metrics").read_text())  # written so the step can be cached
    outputs = json.loads((first / "evaluate" / "executor_output.json").read_text())
    assert outputs["parameterValues"]["valid_ndcg_at_10"] == pytest.approx(metrics["valid/ndcg@10"])
    assert (first / "evaluate" / "topk").is_file()
    if local_runs["full"]:
        assert (first / "index" / "memory" / "manifest.json").is_file()
        assert (first / "finetune" / "model" / "model.json").is_file()
        assert (first / "register" / "registration").is_file()
        # the training steps trained in resumable folders named by config and inputs; outputs are published
        work = sorted(p.name.split("-")[0] for p in (local_runs["root"] / "checkpoints").iterdir())
        assert work == ["finetune", "pretrain"]
        assert not (first / "pretrain" / "model" / "checkpoint.pt").exists()


@pytest.mark.integration
def test_one_parent_run_with_a_nested_run_per_step(local_runs):
    from mlflow import MlflowClient

    from raserec_core.tracking import runs

    c = MlflowClient(local_runs["tracking_uri"])
    exp = c.get_experiment_by_name(local_runs["experiment"]).experiment_id
    parents = runs._search(c, exp, "x", "pipeline") or []  # validates the filter syntax on a real store
    assert parents == []
    all_parents = [r for r in c.search_runs([exp]) if r.data.tags.get(runs.TAG_ROLE) == "pipeline"]
    first_id = sorted(all_parents, key=lambda r: r.info.start_time)[0].data.tags[runs.TAG_RUN]
    assert first_id.startswith("kfp-")  # no explicit id: kfp's job id groups the runs
    children = runs.step_runs(c, exp, first_id)
    expected = ["evaluate", "finetune", "index", "preprocess", "pretrain", "register"] if local_runs["full"] else [
        "evaluate", "preprocess", "pretrain"]
    assert sorted(children) == expected
    assert all(v[0].info.status == "FINISHED" for v in children.values())
    if local_runs["full"] and sys.platform.startswith("linux"):  # `raserec run` preloads mimalloc into its steps
        assert {v[0].data.tags[runs.TAG_ALLOCATOR] for v in children.values()} == {"mimalloc"}
    ev = children["evaluate"][0]
    assert "test_ndcg_at_10" in ev.data.metrics and "valid_ndcg_at_10" in ev.data.metrics
    assert "test_ndcg_at_10_pop_g1" in ev.data.metrics
    assert "plots/popularity_groups.png" in [a.path for a in c.list_artifacts(ev.info.run_id, "plots")]
    assert "plots/training_curves.png" in [a.path for a in c.list_artifacts(children["pretrain"][0].info.run_id, "plots")]
    assert children["preprocess"][0].data.metrics["dataset_filtered_users"] == 24.0


@pytest.mark.integration
def test_second_run_comes_from_the_cache(local_runs):
    (t1, _), (t2, second) = local_runs["runs"]
    dirs = _run_dirs(local_runs["root"])
    assert all(not (d / "pretrain").exists() for d in dirs[1:])  # cached tasks do not run: no folder
    if not local_runs["full"]:
        assert len(dirs) == 1 and t2 < t1 / 3
        return
    second_dir = dirs[1]
    from mlflow import MlflowClient

    from raserec_core.tracking import runs

    assert (second_dir / "register").exists()  # never cached
    c = MlflowClient(local_runs["tracking_uri"])
    exp = c.get_experiment_by_name(local_runs["experiment"]).experiment_id
    children = runs.step_runs(c, exp, second["registration"]["pipeline_run_id"])
    assert sorted(children) == ["evaluate", "finetune", "index", "preprocess", "pretrain", "register"]
    cached = sorted(k for k, v in children.items() if v[0].data.tags.get(runs.TAG_CACHED) == "true")
    assert cached == ["evaluate", "finetune", "index", "preprocess", "pretrain"]
    # the same model again: the first run's version is reused, no duplicate is registered
    first = local_runs["runs"][0][1]["registration"]
    assert (second["registration"]["version"], second["registration"]["reused"]) == (first["version"], True)
    assert second["registration"]["alias"] == "champion"
    assert len(c.search_model_versions("name = 'toy-e2e'")) == 1


@pytest.mark.integration
def test_the_console_shows_our_progress_and_ends_with_the_results(local_runs):
    if not local_runs["full"]:
        pytest.skip("steps.register is not implemented yet: stage-1 run only")
    (stdout, stderr), (_, second_stderr) = local_runs["consoles"]
    first = local_runs["runs"][0][1]
    assert re.search(r"^  test/ndcg@10\s+0\.\d{4}$", stdout, re.M) and re.search(r"^  test/hr@10\s+0\.\d{4}$", stdout, re.M)
    assert "registered: toy-e2e version " in stdout and " as @champion " in stdout
    assert f"MLflow: {local_runs['tracking_uri']}  experiment local-pipeline  run {first['mlflow_run_id']}" in stdout
    assert first["mlflow_run_id"] and first["test_metrics"]["test/ndcg@10"] >= 0
    for text in (stdout, stderr):  # kfp's executor-input dumps and MLflow's chatter only with -v
        assert "executor_input" not in text and "Creating initial MLflow database" not in text
    lines = stderr.splitlines()
    assert lines.index("[1/6] preprocess ...") < lines.index("[2/6] pretrain ...")
    assert any(re.match(r"      epoch 1/\d+  loss ", line) for line in lines)
    assert any(line.startswith("[6/6] register: done in ") for line in lines)
    assert "[2/6] pretrain: from the cache" in second_stderr.splitlines()


@pytest.mark.integration
def test_full_run_exports_to_s3_and_the_champion_serves(local_runs, tmp_path):
    if not local_runs["full"]:
        pytest.skip("steps.register is not implemented yet: stage-1 run only")
    import boto3

    _, first = local_runs["runs"][0]
    run_id = first["registration"]["pipeline_run_id"]
    keys = {o["Key"] for o in boto3.client("s3", endpoint_url=local_runs["endpoint"])
            .list_objects_v2(Bucket=local_runs["bucket"], Prefix=f"exports/{run_id}/")["Contents"]}
    for step, name in [("preprocess", "dataset"), ("pretrain", "model"), ("index", "memory"), ("finetune", "model")]:
        assert f"exports/{run_id}/{step}/{name}/_MANIFEST.json" in keys
    assert f"exports/{run_id}/evaluate/topk" in keys and f"exports/{run_id}/register/registration" in keys
    assert first["registration"]["alias"] == "champion"

    script = textwrap.dedent(f"""
        import json, mlflow, pandas as pd
        mlflow.set_tracking_uri({local_runs['tracking_uri']!r})
        m = mlflow.pyfunc.load_model("models:/toy-e2e@champion")
        out = m.predict(pd.DataFrame({{"history": [["i1", "i2"]]}}), params={{"k": 4}})
        print(json.dumps([list(out["item_ids"][0]), [float(s) for s in out["scores"][0]]]))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    items, scores = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(items) == 4 and all(isinstance(i, str) for i in items) and scores == sorted(scores, reverse=True)
