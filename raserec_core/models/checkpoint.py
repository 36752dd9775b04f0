"""Rebuild the parts of a model folder (``model.json`` + ``encoder.pt`` [+ ``ram.pt``]), every weight file
checked against the sha256 recorded in ``model.json`` before it is read."""

from __future__ import annotations

import hashlib
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


def read_manifest(model_dir: str | Path) -> dict:
    """``model.json`` of a model folder; a missing or corrupt one is a ``CheckpointError`` naming it."""
    from ..storage import read_json

    model_dir = Path(model_dir)
    if not (model_dir / "model.json").exists():
        raise CheckpointError(f"{model_dir}: no model.json (not a finished 'raserec pretrain' output)")
    manifest = read_json(model_dir / "model.json", CheckpointError)
    if not isinstance(manifest, dict) or "encoder" not in manifest or "encoder_sha256" not in manifest:
        raise CheckpointError(f"{model_dir / 'model.json'}: not a model manifest (no encoder or encoder_sha256)")
    return manifest


def load_weights(module: torch.nn.Module, path: Path, sha256: str) -> torch.nn.Module:
    """Load the state dict at ``path`` into ``module`` after checking the file against ``sha256`` (from
    ``model.json``). Read with ``weights_only=True``: tensors only, no code runs."""
    if not path.exists():
        raise CheckpointError(f"{path}: missing from the model folder")
    digest = file_sha256(path)
    if digest != sha256:
        raise CheckpointError(
            f"{path}: sha256 {digest[:12]}… does not match model.json ({sha256[:12]}…); the file is truncated "
            f"or was modified: restore the model folder or train it again"
        )
    try:
        module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as exc:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError or EOFError here
        raise CheckpointError(f"{path}: cannot be loaded ({str(exc).strip().splitlines()[0]})") from None
    return module


def load_encoder(model_dir: str | Path, device: torch.device | str):
    """The frozen-ready encoder of a stage-1 model folder, in eval mode, plus its manifest."""
    from ..config import ModelConfig

    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    spec = manifest["encoder"]
    # A manifest without "layer" predates the option: its blocks are the published post-LN ones, whatever
    # the default is now.
    model_cfg = ModelConfig(**{"layer": "postln", **spec["model"]})
    encoder = build_encoder(spec["backbone"], spec["n_items"], spec["max_len"], model_cfg, spec["n_extra_tokens"])
    load_weights(encoder, model_dir / "encoder.pt", manifest["encoder_sha256"])
    return encoder.to(device).eval(), manifest


def load_ram(model_dir: str | Path, manifest: dict, device: torch.device | str, cfg=None):
    """The RAM of a fine-tuned model folder (``ram.pt``, checked against ``ram_sha256``), in eval mode;
    ``cfg`` (a ``RAMConfig``, e.g. with an explicit override) in place of the one model.json records."""
    from .ram import RAM, RAMConfig

    model_dir = Path(model_dir)
    if "ram" not in manifest or "ram_sha256" not in manifest:
        raise CheckpointError(f"{model_dir / 'model.json'}: no ram or ram_sha256 (not a 'raserec finetune' output)")
    ram = load_weights(RAM(cfg or RAMConfig.from_record(manifest["ram"])), model_dir / "ram.pt", manifest["ram_sha256"])
    return ram.to(device).eval()
