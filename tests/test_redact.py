"""Credentials in URIs are masked everywhere we write: log lines, result JSON, MLflow params and tags, and
the inputs of the pipeline's tasks. The end-to-end test runs ``raserec run`` against a real MLflow
server on 127.0.0.1 reached through ``http://user:password@127.0.0.1:<port>``."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from infra_fixtures import TINY_OVERRIDES, write_toy_interactions

from raserec_core.redact import RedactingFilter, install_log_filter, redact, redact_tree
from raserec_core.tracking.secrets import credentials_to_env

PASSWORD = "pa55-Do-Not-Log-93b1"


def test_redact_masks_userinfo_of_every_uri():
    assert redact("http://alice:pw@host:5000/x and s3://k:s@b/key") == "http://***@host:5000/x and s3://***@b/key"
    assert redact("postgresql://u:p@ss@db/mlflow") == "postgresql://***@db/mlflow"  # unescaped @ in a password
    assert redact("mail bob@example.com, see http://host/a@b") == "mail bob@example.com, see http://host/a@b"
    assert redact_tree({"uri": "http://u:p@h", "list": ["https://u:p@h/x", 3], "http://u:p@h": None}) == {
        "uri": "http://***@h", "list": ["https://***@h/x", 3], "http://***@h": None}


def test_log_filter_masks_messages_args_and_tracebacks():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("raserec.test_redact")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("tracking at %s", f"http://u:{PASSWORD}@127.0.0.1:5000")
        try:
            raise RuntimeError(f"cannot reach https://u:{PASSWORD}@host")
        except RuntimeError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert PASSWORD not in text and "http://***@127.0.0.1:5000" in text and "https://***@host" in text


def test_install_log_filter_reaches_handlers_of_non_propagating_loggers():
    own = logging.getLogger("raserec.test_redact.own")
    handler = logging.StreamHandler(io.StringIO())
    own.addHandler(handler)
    try:
        install_log_filter()
        install_log_filter()
        assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
    finally:
        own.removeHandler(handler)


def test_credentials_move_from_the_tracking_uri_to_the_environment(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    assert credentials_to_env("http://alice:p%40ss@127.0.0.1:5000/base") == "http://127.0.0.1:5000/base"
    assert (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]) == ("alice", "p@ss")
    assert credentials_to_env("sqlite:///x.db") == "sqlite:///x.db"
    assert credentials_to_env("postgresql://u:p@db/m") == "postgresql://u:p@db/m"  # a DB URI needs them inline


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def mlflow_server(tmp_path):
    """``mlflow server`` on 127.0.0.1 with a SQLite store and proxied artifacts in ``tmp_path``."""
    port = _free_port()
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination", str(tmp_path / "art")],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError((tmp_path / "server.log").read_text()[-3000:]) from None
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.mark.integration
def test_no_password_in_a_pipeline_run_through_a_credentialed_tracking_uri(mlflow_server, tmp_path):
    from mlflow import MlflowClient

    host = mlflow_server.removeprefix("http://")
    toy = write_toy_interactions(tmp_path / "toy.txt")
    (tmp_path / "config.yaml").write_text(json.dumps(TINY_OVERRIDES))
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"http://alice:{PASSWORD}@{host}", "OMP_NUM_THREADS": "1",
           "TMPDIR": str(tmp_path)}
    env.pop("MLFLOW_TRACKING_USERNAME", None)
    env.pop("MLFLOW_TRACKING_PASSWORD", None)
    proc = subprocess.run(
        [sys.executable, "-m", "raserec_core.cli.main", "run", "--data", str(toy), "--config", str(tmp_path / "config.yaml"),
         "--experiment", "secrets", "--model-name", "toy-secrets", "--artifact-root", str(tmp_path / "root"), "-v"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    # stdout is the run's summary for a reader (cli/console.py): the URI it names is the masked one
    assert f"MLflow: {mlflow_server}  " in proc.stdout and "registered: toy-secrets version 1 " in proc.stdout
    assert PASSWORD not in proc.stdout and PASSWORD not in proc.stderr
    assert "View run" in proc.stderr  # MLflow's own lines were printed, without the password

    c = MlflowClient(mlflow_server)
    exp = c.get_experiment_by_name("secrets").experiment_id
    recorded = [{**r.data.params, **r.data.tags} for r in c.search_runs([exp])]
    recorded += [dict(mv.tags) for mv in c.search_model_versions("name = 'toy-secrets'")]
    assert len(recorded) >= 7 and PASSWORD not in json.dumps(recorded)
    outputs = [p.read_text(errors="replace") for p in (tmp_path / "root").rglob("*") if p.is_file() and
               p.suffix in ("", ".json", ".yaml", ".txt", ".log")]
    assert outputs and not any(PASSWORD in text for text in outputs)  # kfp's executor inputs and outputs


def test_submit_refuses_credentials_in_the_tracking_uri(capsys):
    from raserec_core.cli.main import main

    rc = main(["pipeline", "submit", "--data", "s3://b/x.txt", "--host", "http://127.0.0.1:9",
               "--mlflow-tracking-uri", f"http://alice:{PASSWORD}@mlflow:5000"])
    err = capsys.readouterr().err
    assert rc == 2 and "no credentials in the URI" in err and PASSWORD not in err
