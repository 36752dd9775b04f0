"""What ``raserec run`` shows: our progress and results, not kfp's executor-input dumps (unless -v)."""

from __future__ import annotations

import io
import logging
import os
import warnings

from raserec_core.cli.console import RunConsole, route_logs, summary

STEPS = ("preprocess", "pretrain", "index", "finetune", "evaluate", "register")
CYAN, GREEN, RED, OFF = "\x1b[96m", "\x1b[92m", "\x1b[91m", "\x1b[0m"


def _task(step: str, body: list[str], status: str = "SUCCESS") -> str:
    """What kfp's local runner prints for one task (its own log lines, then the indented subprocess output)."""
    colour = GREEN if status == "SUCCESS" else RED
    return "\n".join([
        f"15:01:02.123 - INFO - Executing task {CYAN}'{step}'{OFF}",
        "15:01:02.124 - INFO - Streamed logs:",
        "",
        f"    [KFP Executor 2026-12-03 15:01:03,000 INFO]: Looking for component `{step}` in --component_module_path",
        "    [KFP Executor 2026-12-03 15:01:03,001 INFO]: Got executor_input:",
        "    {",
        '        "inputs": {',
        '            "parameterValues": {"config_yaml": "seed: 1"}',
        "        }",
        "    }",
        "    2026/12/03 15:01:04 INFO mlflow.store.db.utils: Creating initial MLflow database tables...",
        *[f"    2026-12-03 15:01:04,{i:03d} {line}" for i, line in enumerate(body)],
        f"15:01:05.000 - INFO - Task {CYAN}'{step}'{OFF} finished with status {colour}{status}{OFF}",
        f"15:01:05.001 - INFO - Task {CYAN}'{step}'{OFF} outputs:",
        "    dataset: Dataset( name='dataset', uri='/x' )",
        "-" * 40,
        "",
    ])


def _run(text: str, verbose: bool = False) -> str:
    out = io.StringIO()
    console = RunConsole(STEPS, {"pretrain": 3}, out, verbose=verbose)
    for i in range(0, len(text), 37):  # kfp writes in pieces; lines may arrive split
        console.write(text[i:i + 37])
    console.close()
    return out.getvalue()


def test_progress_without_the_executor_input_dumps():
    text = _task("preprocess", ["raserec INFO preprocessed toy.txt: 24 users, 15 items"]) + _task("pretrain", [
        "raserec.train INFO epoch 1  loss 2.0000  train 0.1s  valid 0.0s  mrr@10 0.1000  (best 0.1000 @1)",
        "raserec.train INFO epoch 2  loss 1.5000  train 0.1s  valid 0.0s  mrr@10 0.2000  (best 0.2000 @2)",
        "raserec.tracking WARNING the parent run was reopened",
    ])
    shown = _run(text).splitlines()
    assert shown[0] == "[1/6] preprocess ..."
    assert "      preprocessed toy.txt: 24 users, 15 items" in shown
    assert shown[2].startswith("[1/6] preprocess: done in ")
    assert "      epoch 1/3  loss 2.0000  train 0.1s  valid 0.0s  mrr@10 0.1000  (best 0.1000 @1)" in shown
    assert "      WARNING: the parent run was reopened" in shown
    assert shown[-1].startswith("[2/6] pretrain: done in ")
    assert len(shown) == 8
    joined = "\n".join(shown)
    assert "executor_input" not in joined and "parameterValues" not in joined and "mlflow.store" not in joined


def test_a_failed_task_shows_its_whole_log():
    text = _task("finetune", ["raserec.finetune INFO encoding", "Traceback (most recent call last):"], "FAILURE")
    shown = _run(text)
    assert "[4/6] finetune: FAILURE after" in shown and "its log:" in shown
    assert "Traceback (most recent call last):" in shown and "Got executor_input" in shown


def test_verbose_passes_everything_through():
    text = _task("index", ["raserec.memory INFO built"])
    assert _run(text, verbose=True) == text


def test_kfp_cache_hits_and_our_records_through_the_root_logger(monkeypatch):
    monkeypatch.delenv("MLFLOW_LOGGING_LEVEL", raising=False)
    out = io.StringIO()
    console = RunConsole(STEPS, {}, out)
    restore = route_logs(console)
    try:
        logging.getLogger().info("Task pretrain cache hit (key=0123456789ab); skipping execution.")
        logging.getLogger("alembic.runtime.migration").info("Running upgrade")
        logging.getLogger("raserec.cli").info("pipeline steps preload /x/libmimalloc.so")
        warnings.warn("Task 'index': settings ['cpu_limit'] have no effect in the local runner", UserWarning, stacklevel=1)
        assert os.environ["MLFLOW_LOGGING_LEVEL"] == "WARNING"  # also for the step processes
    finally:
        restore()
    assert out.getvalue().splitlines() == ["[2/6] pretrain: from the cache", "      pipeline steps preload /x/libmimalloc.so"]
    assert "MLFLOW_LOGGING_LEVEL" not in os.environ


def test_summary_names_metrics_version_and_where_to_look():
    text = summary({
        "test_metrics": {"test/ndcg@10": 0.25, "test/hr@5": 0.5, "test/hr@10": 0.625},
        "registration": {"name": "raserec", "version": "3", "alias": "champion", "reason": "first version"},
        "mlflow_tracking_uri": "sqlite:///r/mlflow.db", "mlflow_experiment": "raserec", "mlflow_run_id": "abc",
        "artifacts": "/r/raserec-1",
    })
    assert text.splitlines() == [
        "test metrics:",
        "  test/hr@5     0.5000",
        "  test/hr@10    0.6250",
        "  test/ndcg@10  0.2500",
        "registered: raserec version 3 as @champion (first version)",
        "MLflow: sqlite:///r/mlflow.db  experiment raserec  run abc",
        "artifacts: /r/raserec-1",
    ]
