"""Save and rebuild encoders from a model folder (``encoder.pt`` + ``model.json``)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from ..errors import CheckpointError
from .encoder import build_encoder


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def encoder_spec(backbone: str, n_items: int, max_len: int, n_extra_tokens: int, model_cfg) -> dict:
    return {
        "backbone": backbone,
        "n_items": n_items,
        "max_len": max_len,
        "n_extra_tokens": n_extra_tokens,
        "model": dict(model_cfg.__dict__),
    }


def load_encoder(model_dir: str | Path, device: torch.device | str):
    """The frozen-ready encoder of a stage-1 model folder, in eval mode, plus its manifest."""
    from ..config import ModelConfig

    model_dir = Path(model_dir)
    manifest_path = model_dir / "model.json"
    if not manifest_path.exists():
        raise CheckpointError(f"{model_dir}: no model.json (not a finished 'raserec pretrain' output)")
    manifest = json.loads(manifest_path.read_text())
    spec = manifest["encoder"]
    encoder = build_encoder(
        spec["backbone"], spec["n_items"], spec["max_len"], ModelConfig(**spec["model"]), spec["n_extra_tokens"]
    )
    weights = model_dir / "encoder.pt"
    digest = file_sha256(weights)
    if digest != manifest["encoder_sha256"]:
        raise CheckpointError(f"{weights}: sha256 {digest[:12]}… does not match model.json ({manifest['encoder_sha256'][:12]}…)")
    encoder.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return encoder.to(device).eval(), manifest
