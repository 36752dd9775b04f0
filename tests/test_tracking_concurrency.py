"""Concurrent processes on one MLflow store: a fresh SQLite store opened at once, the champion gate under
simultaneous registrations, and a repeated registration of the same model.

Each worker is a spawned process that imports MLflow first and then waits on a barrier, so the racing
calls really start together.
"""

from __future__ import annotations

import json
import multiprocessing

import pytest
from infra_fixtures import mlflow_store, toy_dataset, toy_encoder  # noqa: F401  (fixtures)

SCORES = (0.5, 0.3, 0.4, 0.2)
ROUNDS = 3


def _open_store_and_start(root: str, index: int, barrier, errors) -> None:
    try:
        from pathlib import Path

        from pipelines.runner import local_tracking
        from raserec_core.tracking import runs

        barrier.wait(timeout=120)
        uri = local_tracking(Path(root), "concurrent")  # what `raserec run` does first on its root
        step = runs.start_step(uri, "concurrent", f"pipe-{index}", "preprocess")
        step.end()
    except BaseException as exc:  # noqa: BLE001  (reported to the test)
        errors.put(f"{type(exc).__name__}: {exc}")


def _register_rounds(uri: str, score: float, src: str, barrier, errors) -> None:
    try:
        from mlflow import MlflowClient

        from raserec_core.tracking.registry import TAG_FINGERPRINT, TAG_SCORE, gate

        c = MlflowClient(uri)
        for r in range(ROUNDS):
            mv = c.create_model_version(f"race-{r}", src, tags={TAG_SCORE: repr(score), TAG_FINGERPRINT: "fp"})
            barrier.wait(timeout=120)  # every version exists; now all four gate at once
            gate(c, f"race-{r}", mv.version, score, "fp")
    except BaseException as exc:  # noqa: BLE001
        errors.put(f"{type(exc).__name__}: {exc}")


def _run_all(target, args_per_process) -> list[str]:
    ctx = multiprocessing.get_context("spawn")
    barrier, errors = ctx.Barrier(len(args_per_process)), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, barrier, errors)) for args in args_per_process]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert [p.exitcode for p in procs] == [0] * len(procs)
    return found


@pytest.mark.integration
def test_concurrent_runs_on_a_fresh_root_open_the_store_once(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert _run_all(_open_store_and_start, [(str(tmp_path), i) for i in range(4)]) == []
    from raserec_core.tracking import runs
    from raserec_core.tracking.store import client

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    c = client(uri)
    exp = c.get_experiment_by_name("concurrent").experiment_id
    assert sorted(r.data.tags[runs.TAG_RUN] for r in c.search_runs([exp]) if r.data.tags[runs.TAG_ROLE] == "pipeline") == [
        f"pipe-{i}" for i in range(4)]
    assert (tmp_path / "mlflow.db.lock").exists()


@pytest.mark.integration
def test_concurrent_registrations_leave_the_best_champion(mlflow_store, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from raserec_core.tracking.registry import CHAMPION, TAG_SCORE

    uri, _ = mlflow_store
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    c = MlflowClient(uri)
    for r in range(ROUNDS):
        c.create_registered_model(f"race-{r}")
    src = tmp_path / "model"
    src.mkdir()
    assert _run_all(_register_rounds, [(uri, s, src.as_uri()) for s in SCORES]) == []
    for r in range(ROUNDS):
        champion = c.get_model_version_by_alias(f"race-{r}", CHAMPION)
        assert float(champion.tags[TAG_SCORE]) == max(SCORES), f"round {r}"


@pytest.mark.integration
def test_registering_the_same_model_again_reuses_its_version(mlflow_store, toy_dataset, toy_encoder, tmp_path):
    import shutil

    from mlflow import MlflowClient

    from raserec_core.tracking import runs
    from raserec_core.tracking.registry import TAG_MODEL_SHA, register_model

    uri, art = mlflow_store
    kw = dict(tracking_uri=uri, device="cpu", model_name="toy-dedupe")

    def register(model, score):
        step = runs.start_step(uri, "dedupe", "pipe-dedupe", "register", artifact_location=(art / "dedupe").as_uri())
        try:
            return register_model(toy_dataset, model, valid_ndcg_at_10=score, run_id=step.run_id, **kw)
        finally:
            step.end()

    first = register(toy_encoder, 0.2)
    copy = tmp_path / "copy"  # the same files elsewhere (a cached re-run) plus a training leftover
    shutil.copytree(toy_encoder, copy)
    (copy / "history.json").write_text("[]")
    again = register(copy, 0.2)
    assert (first["version"], first["alias"], first["reused"]) == ("1", "champion", False)
    assert (again["version"], again["alias"], again["reused"]) == ("1", "champion", True)
    assert "is version 1 already" in again["reason"]

    changed = tmp_path / "changed"  # another model folder: a new version
    shutil.copytree(toy_encoder, changed)
    manifest = json.loads((changed / "model.json").read_text())
    (changed / "model.json").write_text(json.dumps({**manifest, "note": "another model"}))
    third = register(changed, 0.1)
    assert (third["version"], third["alias"], third["reused"]) == ("2", "challenger", False)
    versions = MlflowClient(uri).search_model_versions("name = 'toy-dedupe'")
    assert len(versions) == 2 and len({v.tags[TAG_MODEL_SHA] for v in versions}) == 2
