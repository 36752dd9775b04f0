"""The recommender folder the pyfunc model carries: packed from pipeline artifacts, loaded for serving.

Layout (``recommender.json`` names the kind, so the pyfunc glue never changes with the model)::

    recommender.json   kind, format_version, dataset_fingerprint, entries
    model/             the model folder: encoder.pt + model.json (+ ram.pt, items.parquet, users.parquet)
    memory/            kind "raserec" only: the serving memory bank

Kinds, from the model folder's ``model.json``:

- ``encoder`` (``raserec pretrain``): the encoder alone; ``items.parquet`` is copied in from the dataset.
- ``raserec`` (``raserec finetune``): encoder + RAM, and a memory bank holding *everything known*:
  the training memories of the ``index`` step plus the validation and test interactions, encoded by the
  same frozen encoder (the evaluation's test view, extended by the test split). Serving queries then
  retrieve from every known interaction.

Serving itself is ``raserec_core.recommender.Recommender``; anything with its ``recommend`` method fits
``RecommenderLike``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

FORMAT_VERSION = 1
MANIFEST = "recommender.json"
NOT_PACKED = ("checkpoint.pt", "best.pt", "history.json", "config.yaml", "metrics.json")  # training leftovers


class RecommenderLike(Protocol):
    def recommend(
        self, histories: Sequence[Sequence[str]], user_ids: Sequence[str | None] | None, k: int
    ) -> tuple[list[list[str]], list[list[float]]]:
        """Top-``k`` raw item ids and their scores for each history, best first."""
        ...


def serving_bank(model: Path, data: Path, memory: Path, out: Path, device) -> dict[str, Any]:
    """The index step's training bank plus validation and test memories, saved to ``out``."""
    from ..data import read_dataset
    from ..memory.bank import load_bank, save_bank
    from ..memory.build import extend_with_splits
    from ..models.checkpoint import load_encoder

    ds = read_dataset(data)
    encoder, _ = load_encoder(model, device)
    return save_bank(extend_with_splits(load_bank(memory), encoder, ds, ("valid", "test"), device), out)


def pack(model: str | Path, data: str | Path, out: str | Path, memory: str | Path | None, device) -> dict[str, Any]:
    """Write the recommender folder ``out`` for a model folder (its kind read from ``model.json``)."""
    model, data, out = Path(model), Path(data), Path(out)
    manifest = json.loads((model / "model.json").read_text())
    kind = manifest.get("kind", "encoder")
    if kind not in ("encoder", "raserec"):
        raise ValueError(f"{model}: no recommender for model kind {kind!r}")
    out.mkdir(parents=True, exist_ok=False)
    shutil.copytree(model, out / "model", ignore=shutil.ignore_patterns(*NOT_PACKED))
    if not (out / "model" / "items.parquet").exists():
        shutil.copyfile(data / "items.parquet", out / "model" / "items.parquet")
    spec = {"kind": kind, "format_version": FORMAT_VERSION, "dataset_fingerprint": manifest.get("dataset_fingerprint", "")}
    if kind == "raserec":
        if memory is None:
            raise ValueError(f"{model}: a fine-tuned model needs its memory bank")
        spec["entries"] = serving_bank(model, data, Path(memory), out / "memory", device)["entries"]
    (out / MANIFEST).write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
    return spec


def load(folder: str | Path, device) -> RecommenderLike:
    from ..recommender import Recommender

    folder = Path(folder)
    spec = json.loads((folder / MANIFEST).read_text())
    if spec.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{folder / MANIFEST}: format_version {spec.get('format_version')!r}, expected {FORMAT_VERSION}")
    if spec.get("kind") not in ("encoder", "raserec"):
        raise ValueError(f"{folder}: unknown recommender kind {spec.get('kind')!r}")
    memory = folder / "memory"
    return Recommender.load(folder / "model", memory if memory.is_dir() else None, device)
