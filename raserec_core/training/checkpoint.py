"""Checkpoints: written to a temporary name and renamed, so a crash never leaves half a file."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from ..storage import atomic_write_bytes


def _save(obj, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def save_weights(module: torch.nn.Module, path: Path) -> None:
    _save({k: v.detach().cpu() for k, v in module.state_dict().items()}, path)


def save_checkpoint(path: Path, module, optimizer, generator: torch.Generator, state: dict) -> None:
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["accelerator"] = torch.cuda.get_rng_state_all()
    _save(
        {
            "module": module.state_dict(),
            "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(),
            "rng": rng,
            "state": state,
        },
        path,
    )


def load_checkpoint(path: Path, module, optimizer, generator: torch.Generator) -> dict:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    module.load_state_dict(ckpt["module"])
    optimizer.load_state_dict(ckpt["optimizer"])
    generator.set_state(ckpt["generator"])
    torch.set_rng_state(ckpt["rng"]["torch"])
    if "accelerator" in ckpt["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ckpt["rng"]["accelerator"])
    return ckpt["state"]
