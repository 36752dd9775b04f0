"""``mlflow models serve`` of a logged model on a free port of 127.0.0.1, for as long as a ``with`` block
runs: what the serving tests and the latency benchmark talk to (the real scoring server, not a stand-in)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
