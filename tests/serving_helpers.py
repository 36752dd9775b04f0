"""A logged recommender model on disk, and ``mlflow models serve`` on a free port of 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path


def logged_model(packed: Path, tracking_uri: str, artifact_root: Path, out: Path, example: list[str]) -> Path:
    """Log the packed recommender folder as the project logs it, then download it to ``out``."""
    import mlflow

    from raserec_core.tracking import runs
    from raserec_core.tracking.pyfunc import log_recommender

    mlflow.set_tracking_uri(tracking_uri)
    step = runs.start_step(tracking_uri, "serving", "pipe-serve", "register", params={},
                           artifact_location=(artifact_root / "serving").as_uri())
    with mlflow.start_run(run_id=step.run_id):
        info = log_recommender(packed, example_history=example)
    step.end()
    return Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(out)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict, timeout: float = 60) -> tuple[int, dict]:
    """POST JSON to ``url``; (status, decoded body) for success and HTTP errors alike."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


@contextlib.contextmanager
def mlflow_serve(python: str | Path, model_dir: Path, env: dict[str, str], log: Path, workers: int = 1,
                 startup_s: float = 240):
    """Run ``mlflow models serve --env-manager local`` of ``python``'s environment on 127.0.0.1; yields
    (base URL, process).

    MLflow starts the server as ``uvicorn`` found on PATH, so the environment's bin folder goes first
    (as an activated environment would have it); otherwise another environment's uvicorn would serve.
    """
    port = free_port()
    env = {**env, "PATH": f"{Path(python).parent}{os.pathsep}{env.get('PATH', '')}"}
    cmd = [str(python), "-m", "mlflow", "models", "serve", "-m", str(model_dir), "--env-manager", "local",
           "-h", "127.0.0.1", "-p", str(port), "--workers", str(workers)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow models serve exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url + "/ping", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"mlflow models serve not up after {startup_s} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)  # uvicorn's workers are in the server's own session
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()
