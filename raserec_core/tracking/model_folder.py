"""The recommender folder the pyfunc model carries: packed from pipeline artifacts, loaded for serving.

Layout (``recommender.json`` names the kind, so the pyfunc glue never changes with the model)::

    recommender.json   kind, format_version, dataset_fingerprint, entries
    model/             the model folder: encoder.pt + model.json (+ ram.pt, items.parquet, users.parquet)
    memory/            kind "raserec" only: the serving memory bank
    popularity.parquet raw_id (string), count (int64): how often each item is a next item in the
                       dataset's splits, most popular first; the answer to a history with no known item

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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

FORMAT_VERSION = 2  # 2: popularity.parquet
READABLE = (1, 2)  # 1 (no popularity): models registered before; their cold starts get no items
MANIFEST = "recommender.json"
POPULARITY = "popularity.parquet"
NOT_PACKED = ("checkpoint.pt*", "best.pt*", "history.json", "config.yaml", "metrics.json")  # training leftovers


class RecommenderLike(Protocol):
    item_ids: np.ndarray  # (n_items + 1,) raw ids as str; item_ids[0] is padding
    item_index: Mapping[str, int]  # raw id -> index of every item but the padding, built once

    def recommend(
        self, histories: Sequence[Sequence[str]], user_ids: Sequence[str | None] | None, k: int,
        exclude_history: bool = True,
    ) -> tuple[list[list[str]], list[list[float]]]:
        """Top-``k`` raw item ids and their scores for each history, best first; with ``exclude_history``
        never an item of the history."""
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


def write_popularity(data: Path, out: Path) -> None:
    """Every item's count as a next item over the dataset's splits (each interaction but users' first)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..data import read_dataset
    from .serving import Popularity

    ds = read_dataset(data)
    targets = np.concatenate([inst.target for inst in ds.splits.values()])
    counts = np.bincount(targets, minlength=ds.n_items)
    pop = Popularity.from_counts(ds.item_ids[1:], counts[1:])  # index 0 is padding
    pq.write_table(pa.table({"raw_id": pa.array(pop.item_ids.tolist(), pa.string()), "count": pa.array(pop.counts)}), out)


def load_popularity(folder: str | Path):
    """The folder's ``Popularity`` (most popular first); none for a format-1 folder, which has no file."""
    import pyarrow.parquet as pq

    from .serving import Popularity

    path = Path(folder) / POPULARITY
    if not path.exists() and json.loads((Path(folder) / MANIFEST).read_text()).get("format_version") == 1:
        return Popularity(np.zeros(0, dtype=str), np.zeros(0, dtype=np.int64))
    table = pq.read_table(path)
    return Popularity(np.asarray(table.column("raw_id").to_pylist(), dtype=str), table.column("count").to_numpy().astype(np.int64))


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
    write_popularity(data, out / POPULARITY)
    (out / MANIFEST).write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
    return spec


def load(folder: str | Path, device) -> RecommenderLike:
    from ..errors import CheckpointError
    from ..recommender import Recommender
    from ..storage import read_json

    folder = Path(folder)
    spec = read_json(folder / MANIFEST, CheckpointError)
    if spec.get("format_version") not in READABLE:
        raise ValueError(f"{folder / MANIFEST}: format_version {spec.get('format_version')!r}, expected one of {READABLE}")
    if spec.get("kind") not in ("encoder", "raserec"):
        raise ValueError(f"{folder}: unknown recommender kind {spec.get('kind')!r}")
    memory = folder / "memory"
    return Recommender.load(folder / "model", memory if memory.is_dir() else None, device)
