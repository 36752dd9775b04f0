"""Resume state of a training run (``checkpoint.pt``) and the best weights (``best.pt``).

Both are written to a temporary name and renamed, so a crash never leaves half a file. They hold tensors
and plain data only and are read with ``weights_only=True``: a crafted file in a shared checkpoint folder
cannot run code. Each one's sha256 is recorded next to it (``checkpoint.pt.sha256``, ``best.pt.sha256``)
and checked before it is read, so a truncated or overwritten file is refused rather than trained on.
"""

from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..storage import atomic_write_bytes, atomic_write_text

log = logging.getLogger("raserec.train")

_FIX = "pass --restart to train from scratch (or delete the folder)"


def _serialize(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _recorded_digests(path: Path) -> list[str] | None:
    sidecar = digest_path(path)
    if not sidecar.exists():
        return None
    return sidecar.read_text(encoding="utf-8").split()


def _write_recorded(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and its sha256 to ``path.sha256``, both atomically.

    They are two files, renamed one after the other. While ``path`` is replaced the record names the old
    digests and the new one, so a crash between the renames leaves a file that still verifies; afterwards
    it names the new one only.
    """
    digest = hashlib.sha256(data).hexdigest()
    previous = (_recorded_digests(path) or []) if path.exists() else []
    atomic_write_text(digest_path(path), "\n".join([*previous, digest]) + "\n")
    atomic_write_bytes(path, data)
    atomic_write_text(digest_path(path), digest + "\n")


def _read_recorded(path: Path, what: str):
    """The object saved at ``path`` by ``_write_recorded``, checked against its digest, tensors and plain
    data only."""
    data = path.read_bytes()
    recorded = _recorded_digests(path)
    if recorded is None:
        # Files written before digests were recorded: still safe to read (weights_only below).
        log.warning("%s: no recorded sha256 next to it; reading it without the integrity check", path)
    elif hashlib.sha256(data).hexdigest() not in recorded:
        raise CheckpointError(
            f"{path}: content does not match its recorded sha256 ({digest_path(path).name}); the file "
            f"is truncated or was modified; {_FIX}"
        )
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError or EOFError here
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable {what} of tensors and plain data ({reason}); {_FIX}") from None


def save_weights(module: torch.nn.Module, path: Path) -> None:
    _write_recorded(path, _serialize({k: v.detach().cpu() for k, v in module.state_dict().items()}))


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A state dict written by ``save_weights`` (``best.pt``), verified; on CPU."""
    return _read_recorded(path, "weights file")


def save_checkpoint(path: Path, module, optimizer, generator: torch.Generator, state: dict) -> None:
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["accelerator"] = torch.cuda.get_rng_state_all()
    data = _serialize(
        {
            "module": module.state_dict(),
            "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(),
            "rng": rng,
            "state": state,
        }
    )
    _write_recorded(path, data)


def _read_checkpoint(path: Path) -> dict:
    ckpt = _read_recorded(path, "training checkpoint")
    if not isinstance(ckpt, dict) or not {"module", "optimizer", "generator", "rng", "state"} <= set(ckpt):
        raise CheckpointError(f"{path}: not a training checkpoint of this version; {_FIX}")
    return ckpt


def load_checkpoint(path: Path, module, optimizer, generator: torch.Generator) -> dict:
    """Restore ``module``, ``optimizer``, ``generator`` and the global RNG; returns the loop state dict."""
    ckpt = _read_checkpoint(path)
    try:
        module.load_state_dict(ckpt["module"])
        optimizer.load_state_dict(ckpt["optimizer"])
        generator.set_state(ckpt["generator"])
        torch.set_rng_state(ckpt["rng"]["torch"])
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: does not fit this run's model ({str(exc).splitlines()[0]}); {_FIX}") from None
    if "accelerator" in ckpt["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ckpt["rng"]["accelerator"])
    return ckpt["state"]
