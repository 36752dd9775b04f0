"""Honest MLflow runs after a failure: a SIGTERMed step marks its runs KILLED on the way out, and a
SIGKILLed step's runs are marked KILLED when the next step starts; the runs of live processes are left
alone. A re-run's parent records where its cached steps' exports live."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from infra_fixtures import mlflow_store  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parent.parent


def _start_and_wait(body: str) -> subprocess.Popen:
    """A Python process running ``body``; returns once it printed its first line (then it sleeps)."""
    script = f"import sys, time\nsys.path.insert(0, {str(ROOT)!r})\n" + textwrap.dedent(body)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.strip(), proc.stderr.read()[-3000:]
    proc.first_line = line.split()
    return proc


@pytest.mark.integration
def test_sigkilled_step_is_marked_killed_at_the_next_start(mlflow_store):
    from mlflow import MlflowClient

    from raserec_core.tracking import runs

    uri, art = mlflow_store
    kw = dict(artifact_location=(art / "reap").as_uri())
    live = runs.start_step(uri, "reap", "pipe-live", "pretrain", **kw)  # this process: alive throughout
    proc = _start_and_wait(f"""
        from raserec_core.tracking import runs
        r = runs.start_step({uri!r}, "reap", "pipe-killed", "pretrain", artifact_location={kw['artifact_location']!r})
        print(r.run_id, r.parent_id, flush=True)
        time.sleep(120)
    """)
    killed_step, killed_parent = proc.first_line
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    c = MlflowClient(uri)
    assert c.get_run(killed_step).info.status == "RUNNING"  # nobody has looked yet

    nxt = runs.start_step(uri, "reap", "pipe-next", "preprocess", **kw)
    assert c.get_run(killed_step).info.status == "KILLED"
    assert c.get_run(killed_parent).info.status == "KILLED"
    assert c.get_run(live.run_id).info.status == "RUNNING" and c.get_run(live.parent_id).info.status == "RUNNING"
    nxt.end()
    live.end()


@pytest.mark.integration
def test_sigterm_marks_the_step_and_its_parent_killed(mlflow_store):
    from mlflow import MlflowClient

    uri, art = mlflow_store
    proc = _start_and_wait(f"""
        from components.runtime import pipeline_task
        with pipeline_task("preprocess", tracking_uri={uri!r}, experiment="term", pipeline_run_id="pipe-term",
                           needs_device=False) as t:
            print(t.run.run_id, t.run.parent_id, flush=True)
            time.sleep(120)
    """)
    step_id, parent_id = proc.first_line
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) != 0
    c = MlflowClient(uri)
    assert (c.get_run(step_id).info.status, c.get_run(parent_id).info.status) == ("KILLED", "KILLED")


@pytest.mark.integration
def test_a_rerun_parent_records_where_cached_steps_exports_live(mlflow_store):
    from mlflow import MlflowClient

    from raserec_core.tracking import runs

    uri, art = mlflow_store
    step = runs.start_step(uri, "exports", "pipe-rerun", "evaluate", artifact_location=(art / "exports").as_uri())
    runs.log_cached_step(step, "pretrain", {"export_uri": "s3://b/exports/pipe-first/pretrain/model", "epochs": 2})
    step.end()
    tags = MlflowClient(uri).get_run(step.parent_id).data.tags
    assert tags["raserec.export.pretrain"] == "s3://b/exports/pipe-first/pretrain/model"
