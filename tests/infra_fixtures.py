"""Fixtures for the infrastructure tests (storage, tracking, components, pipeline), imported explicitly.

Everything they start listens on 127.0.0.1 and writes under pytest's temporary folders only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

SECRET_VALUE = "s3cr3t-do-not-log-4f1c9a"  # planted in the environment; must never appear in outputs
DUMMY_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def moto_endpoint():
    """A moto S3 server on a free port of 127.0.0.1 for the whole session; yields its URL."""
    from moto.server import ThreadedMotoServer

    saved = {k: os.environ.get(k) for k in DUMMY_AWS}
    os.environ.update(DUMMY_AWS)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture()
def s3_bucket(moto_endpoint, monkeypatch, request):
    """A fresh bucket on the moto server; AWS_ENDPOINT_URL points at it for the test's duration."""
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    for k, v in DUMMY_AWS.items():
        monkeypatch.setenv(k, v)
    name = "raserec-" + "".join(c for c in request.node.name.lower() if c.isalnum())[:40]
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=name)
    return name


_MIGRATED: dict[str, Path] = {}


def _migrated_db(tmp_path_factory) -> Path:
    """An empty, migrated SQLite MLflow store, made once per session (migrations take ~5-15 s)."""
    if "db" not in _MIGRATED:
        from mlflow import MlflowClient

        root = tmp_path_factory.mktemp("mlflow-template")
        MlflowClient(f"sqlite:///{root / 'mlflow.db'}").search_experiments()
        _MIGRATED["db"] = root / "mlflow.db"
    return _MIGRATED["db"]


@pytest.fixture(scope="session")
def mlflow_store(tmp_path_factory):
    """A SQLite MLflow store in a temp folder, copied from a session-wide migrated template.

    Yields ``(tracking_uri, artifact_root)``; experiments must be created with an artifact location
    under ``artifact_root`` (``tracking.store.ensure_experiment`` does) so nothing lands in ./mlruns.
    MLFLOW_TRACKING_URI points at it while it lives.
    """
    import shutil

    root = tmp_path_factory.mktemp("mlflow")
    shutil.copyfile(_migrated_db(tmp_path_factory), root / "mlflow.db")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        yield uri, root / "artifacts"
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved


def write_toy_interactions(path: Path, n_users: int = 24, n_items: int = 15, length: int = 8, seed: int = 0) -> Path:
    """A sequence file (``user item item ...`` per line) that survives a 5-core filter."""
    import random

    rng = random.Random(seed)
    lines = []
    for u in range(n_users):
        start = rng.randrange(n_items)
        items = [f"i{(start + j * (1 + u % 3)) % n_items}" for j in range(length)]
        lines.append(" ".join([f"u{u}", *items]))
    path.write_text("\n".join(lines) + "\n")
    return path


TINY_OVERRIDES = {
    "seed": 7,
    "device": "cpu",
    "data": {"max_len": 10},
    "model": {"hidden_size": 16, "n_layers": 1, "n_heads": 1, "inner_size": 32},
    "pretrain": {"epochs": 1, "batch_size": 64, "objective": "ce", "length_chunks": 1},
    "finetune": {"epochs": 1, "batch_size": 64, "top_k": 4, "encoder_fallback": False},  # the RAM, as TINY
    "memory": {"index_type": "brute"},
    "eval": {"ks": [5, 10], "topk": 5},
}


def tiny_config():
    from raserec_core.config import from_dict

    return from_dict(json.loads(json.dumps(TINY_OVERRIDES)))


@pytest.fixture(scope="session")
def toy_dataset(tmp_path_factory):
    """A preprocessed toy dataset folder (``raserec preprocess`` output)."""
    from raserec_core import steps

    root = tmp_path_factory.mktemp("toy")
    src = write_toy_interactions(root / "toy.txt")
    steps.preprocess(src, root / "dataset", tiny_config())
    return root / "dataset"


@pytest.fixture(scope="session")
def toy_encoder(toy_dataset, tmp_path_factory):
    """A stage-1 model folder (encoder.pt + model.json) for the toy dataset, with untrained weights."""
    import torch

    from raserec_core.data import read_dataset
    from raserec_core.models.checkpoint import encoder_spec, file_sha256
    from raserec_core.models.encoder import build_encoder

    cfg = tiny_config()
    ds = read_dataset(toy_dataset)
    torch.manual_seed(0)
    encoder = build_encoder(cfg.model.backbone, ds.n_items, cfg.data.max_len, cfg.model)
    out = tmp_path_factory.mktemp("encoder")
    torch.save(encoder.state_dict(), out / "encoder.pt")
    manifest = {
        "kind": "encoder",
        "encoder": encoder_spec(cfg.model.backbone, ds.n_items, cfg.data.max_len, 0, cfg.model),
        "encoder_sha256": file_sha256(out / "encoder.pt"),
        "dataset_fingerprint": ds.fingerprint,
    }
    (out / "model.json").write_text(json.dumps(manifest))
    return out
