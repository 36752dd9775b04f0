"""``raserec tune`` end to end on toy data: a tiny search, pruning that stops the trial, and a study that
survives a SIGKILL of its tuner with no trial lost or run twice."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
optuna = pytest.importorskip("optuna")
pytest.importorskip("mlflow")

from toy_data import TINY, make_seq_lines, set_args  # noqa: E402

from raserec_core.cli.main import main  # noqa: E402
from raserec_core.config import load_config  # noqa: E402
from raserec_core.tuning.katib import METRICS_FORMAT  # noqa: E402
from raserec_core.tuning.space import set_items  # noqa: E402
from raserec_core.tuning.trial import PRUNED, read_history, run_trial, trial_command  # noqa: E402

pytestmark = pytest.mark.integration

SPACE = """
pretrain.lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
model.layer: {type: categorical, choices: [postln, bsa]}
"""
METRIC = "valid/ndcg@10"  # the default pretrain.valid_metric


def load_study(study_dir: Path):
    return optuna.load_study(study_name="raserec", storage=f"sqlite:///{study_dir / 'study.db'}")


def mlflow_runs(study_dir: Path):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{study_dir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("raserec-tune")
    return client, client.search_runs([exp.experiment_id], max_results=1000)


def test_tiny_search(tmp_path, wide_dataset_dir, capsys):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    study_dir = tmp_path / "study"
    base = [*TINY, "pretrain.epochs=2", "pretrain.objective=ce"]
    argv = ["tune", "--data", str(wide_dataset_dir), "--space", str(space), "--study-dir", str(study_dir),
            "--trials", "2", "--device", "cpu", *set_args(base)]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)

    study = load_study(study_dir)
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    base_cfg = load_config(None, base)
    assert trials[0].params == {"pretrain.lr": base_cfg.pretrain.lr, "model.layer": base_cfg.model.layer}  # the base first
    assert result["trials"] == {"complete": 2, "pruned": 0, "fail": 0} and result["finished"]
    # the objective is each trial's validation metric from its metrics.json; test metrics are recorded only
    values = {}
    for t in trials:
        metrics = json.loads((study_dir / "trials" / str(t.number) / "metrics.json").read_text())
        assert t.value == metrics[METRIC]
        assert t.user_attrs["metrics"] == metrics
        values[t.number] = metrics[METRIC]
    best = max(values, key=values.get)
    assert result["best_trial"] == best and result["best_value"] == values[best]
    assert result["best_params"] == trials[best].params
    assert result["best_test_metrics"]["test/mrr@10"] == trials[best].user_attrs["metrics"]["test/mrr@10"]

    # best.yaml: the base config with the best values, accepted by --config
    frozen = load_config(study_dir / "best.yaml")
    assert frozen == load_config(None, [*base, "device=cpu", *set_items(trials[best].params)])
    assert frozen.pretrain.lr == trials[best].params["pretrain.lr"]

    # every trial an MLflow run under one parent: sampled params, per-epoch validation, final metrics
    client, runs = mlflow_runs(study_dir)
    parents = [r for r in runs if r.data.tags.get("raserec.role") == "pipeline"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent_id = parents[0].info.run_id
    trial_runs = {int(r.data.tags["raserec.trial"]): r for r in runs if r.data.tags.get("raserec.step", "").startswith("trial-")}
    assert sorted(trial_runs) == [0, 1]
    for t in trials:
        run = trial_runs[t.number]
        assert run.data.tags["mlflow.parentRunId"] == parent_id
        assert run.data.tags["raserec.trial_state"] == "COMPLETE" and run.info.status == "FINISHED"
        assert run.data.params == {k: str(v) for k, v in t.params.items()}
        curve = client.get_metric_history(run.info.run_id, "valid_ndcg_at_10")
        history = read_history(study_dir / "trials" / str(t.number))
        assert sorted((m.step, m.value) for m in curve if m.step > 0) == [(r["epoch"], r[METRIC]) for r in history]
        assert run.data.metrics["test_mrr_at_10"] == t.user_attrs["metrics"]["test/mrr@10"]
    summary = [r for r in runs if r.data.tags.get("raserec.step") == "best"]
    assert len(summary) == 1 and summary[0].data.tags["raserec.trial"] == str(best)

    # what Katib's StdOut collector would read from the trial's output: every epoch, then the final value
    log = (study_dir / "trials" / f"{best}.log").read_text()
    found = [m.group(2) for m in map(re.compile(METRICS_FORMAT).search, log.splitlines()) if m and m.group(1) == METRIC]
    history = read_history(study_dir / "trials" / str(best))
    assert [float(v) for v in found[:-1]] == [round(r[METRIC], 4) for r in history]
    assert float(found[-1]) == values[best]

    # the same command on a finished study runs nothing new; another search in the folder is refused
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["best_trial"] == best
    assert len(load_study(study_dir).get_trials()) == 2
    assert main([*argv, "--set", "model.n_layers=1"]) == 2
    assert "holds another search (changed: overrides)" in capsys.readouterr().err


def test_pruned_trial_is_stopped(tmp_path, wide_dataset_dir):
    out = tmp_path / "trial"
    argv = trial_command(str(wide_dataset_dir), str(out), None, [*TINY, "pretrain.epochs=200", "device=cpu"])
    reported = []

    def report(epoch, value):
        reported.append((epoch, value))
        return epoch >= 1

    outcome = run_trial(argv, out, tmp_path / "trial.log", METRIC, report, poll_s=0.05)
    assert outcome.state == PRUNED
    assert reported[0][0] == 1 and len(reported) == outcome.epochs == 1
    assert not (out / "metrics.json").exists()  # stopped long before its 200 epochs
    assert len(read_history(out)) < 200


def test_failed_trial_stops_the_search_and_names_its_log(tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    study_dir = tmp_path / "study"
    argv = ["tune", "--data", str(tmp_path / "no-such-dataset"), "--space", str(space), "--study-dir", str(study_dir),
            "--trials", "2", "--device", "cpu", *set_args(TINY)]
    assert main(argv) == 2
    assert f"trial 0 failed (exit code 2); see {study_dir / 'trials' / '0'}.log" in capsys.readouterr().err
    assert [t.state.name for t in load_study(study_dir).get_trials()] == ["FAIL"]
    _, runs = mlflow_runs(study_dir)
    status = {r.data.tags["raserec.role"]: r.info.status for r in runs}
    assert status == {"pipeline": "FAILED", "step": "FAILED"}


@pytest.fixture(autouse=True)
def _own_tracking_store(monkeypatch):
    """The tuner's default store is the study folder's; mlflow.set_tracking_uri (called by other tests in
    this process) exports MLFLOW_TRACKING_URI, which would send the trials elsewhere."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def busier_dataset(tmp_path_factory) -> Path:
    """200 users: an epoch takes a few tenths of a second, long enough to be killed in the middle of."""
    root = tmp_path_factory.mktemp("busier")
    (root / "d.txt").write_text(make_seq_lines(200, 60, seed=3, min_len=8, max_len=12))
    assert main(["preprocess", "--input", str(root / "d.txt"), "--output", str(root / "ds"), "--k-core", "0",
                 "--set", "data.max_len=5"]) == 0
    return root / "ds"


def test_study_resumes_after_sigkill(tmp_path, busier_dataset):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    study_dir = tmp_path / "study"
    epochs = 6
    cmd = [sys.executable, "-m", "raserec_core.cli.main", "tune", "--data", str(busier_dataset), "--space", str(space),
           "--study-dir", str(study_dir), "--trials", "3", "--pruner", "none", "--device", "cpu",
           *set_args([*TINY, f"pretrain.epochs={epochs}", "pretrain.objective=ce"])]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    victim = study_dir / "trials" / "1"
    tuner = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while len(read_history(victim)) < 2:  # trial 1 is in the middle of its training
            assert tuner.poll() is None and time.monotonic() < deadline, "the tuner ended before trial 1 trained"
            time.sleep(0.02)
        tuner.send_signal(signal.SIGKILL)
        tuner.wait()
    finally:
        if tuner.poll() is None:
            tuner.kill()
    killed_at = len(read_history(victim))
    assert not (victim / "metrics.json").exists()
    time.sleep(1.0)
    assert len(read_history(victim)) == killed_at  # the trial died with its tuner

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["finished"] and result["trials"] == {"complete": 3, "pruned": 0, "fail": 1}

    trials = load_study(study_dir).get_trials()
    failed = [t for t in trials if t.state.name == "FAIL"]
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert [t.number for t in failed] == [1]
    retry = [t for t in complete if t.user_attrs.get("retry_of") == 1]
    assert len(retry) == 1 and retry[0].params == failed[0].params  # same values, same folder
    assert retry[0].user_attrs["run_dir"] == "trials/1"
    run_dirs = sorted(t.user_attrs["run_dir"] for t in complete)
    assert run_dirs == ["trials/0", "trials/1", "trials/3"]  # none lost, none twice (trial 2 resumed trials/1)
    assert sorted(f"trials/{p.name}" for p in (study_dir / "trials").iterdir() if p.is_dir()) == run_dirs
    assert [r["epoch"] for r in read_history(victim)] == list(range(1, epochs + 1))
    assert f"resuming after epoch {killed_at}" in (study_dir / "trials" / "1.log").read_text()

    _, runs = mlflow_runs(study_dir)
    states = sorted((int(r.data.tags["raserec.trial"]), r.data.tags["raserec.trial_state"], r.info.status)
                    for r in runs if r.data.tags.get("raserec.step", "").startswith("trial-"))
    assert states == [(0, "COMPLETE", "FINISHED"), (1, "FAIL", "FAILED"), (2, "COMPLETE", "FINISHED"),
                      (3, "COMPLETE", "FINISHED")]
