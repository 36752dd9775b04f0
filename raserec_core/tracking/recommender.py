"""What the served model does: raw item-id histories in, ranked raw item ids and scores out.

A *recommender folder* is self-describing: ``recommender.json`` names its ``kind``, and ``load``
dispatches on it. The pyfunc model (``tracking.pyfunc``) carries one such folder as its artifact and
does nothing but call ``recommend``, so a new kind of model needs a packer and a loader here, not a new
pyfunc. Kinds:

- ``encoder``: a stage-1 model (``raserec pretrain``): ``encoder/`` (encoder.pt + model.json) and
  ``items.parquet``; scores are ``h · Eᵀ`` over every item, as in the stage-1 evaluation.

A history is cut to its last ``max_len`` known items; unknown item ids are skipped; a history with no
known item gets empty lists. Ties are broken as in evaluation (``evaluation.ranking.stable_topk``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

FORMAT_VERSION = 1
MANIFEST = "recommender.json"


class Recommender(Protocol):
    def recommend(
        self, histories: Sequence[Sequence[str]], user_ids: Sequence[str | None] | None, k: int
    ) -> tuple[list[list[str]], list[list[float]]]:
        """Top-``k`` raw item ids and their scores for each history, best first."""
        ...


class EncoderRecommender:
    """Next-item scores ``h · Eᵀ`` of a stage-1 encoder (SPEC §2), over every item but padding."""

    def __init__(self, encoder, item_ids: np.ndarray, max_len: int, mask_history: bool = False):
        self.encoder = encoder.eval()
        self.item_ids = item_ids  # (n_items,) raw ids; index 0 is padding
        self.index = {raw: i for i, raw in enumerate(item_ids.tolist()) if i > 0}
        self.max_len = max_len
        self.mask_history = mask_history

    @classmethod
    def load(cls, folder: Path, spec: dict[str, Any], device: str = "cpu") -> EncoderRecommender:
        from ..data.artifact import read_ids
        from ..models.checkpoint import load_encoder

        encoder, manifest = load_encoder(folder / "encoder", device)
        item_ids = read_ids(folder / "items.parquet")
        if len(item_ids) != manifest["encoder"]["n_items"]:
            raise ValueError(f"{folder}: items.parquet has {len(item_ids)} rows, the encoder {manifest['encoder']['n_items']}")
        return cls(encoder, item_ids, manifest["encoder"]["max_len"], bool(spec.get("mask_history", False)))

    def _batch(self, histories: Sequence[Sequence[str]]):
        import torch

        rows = [[self.index[i] for i in h if i in self.index][-self.max_len :] for h in histories]
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        seqs = torch.zeros(len(rows), max([1, *map(len, rows)]), dtype=torch.long)
        for b, r in enumerate(rows):  # ragged -> right-padded (B, L); at most max_len per row
            seqs[b, : len(r)] = torch.tensor(r, dtype=torch.long)
        return seqs, lengths

    def recommend(self, histories, user_ids=None, k: int = 10):
        import torch

        from ..evaluation.ranking import stable_topk

        if not len(histories):
            return [], []
        seqs, lengths = self._batch(histories)
        known = lengths > 0
        items: list[list[str]] = [[] for _ in histories]
        scores: list[list[float]] = [[] for _ in histories]
        if not bool(known.any()):
            return items, scores
        device = self.encoder.item_table.device
        with torch.no_grad():
            s_seqs, s_len = seqs[known].to(device), lengths[known].to(device)
            h = self.encoder(s_seqs, s_len)  # (B', D)
            s = (h @ self.encoder.item_table.T).float()  # (B', n_items)
            s[:, 0] = float("-inf")
            if self.mask_history:
                s.scatter_(1, s_seqs, float("-inf"))
            top_items, top_scores = stable_topk(s, max(1, min(int(k), s.shape[1] - 1)))
        top_items, top_scores = top_items.cpu().numpy(), top_scores.cpu().double().numpy()
        for j, b in enumerate(torch.nonzero(known).flatten().tolist()):
            keep = np.isfinite(top_scores[j])
            items[b] = self.item_ids[top_items[j][keep]].tolist()
            scores[b] = top_scores[j][keep].tolist()
        return items, scores


def _pack_encoder(model: Path, data: Path, out: Path, memory: Path | None, options: dict[str, Any]) -> dict[str, Any]:
    shutil.copytree(model, out / "encoder", ignore=shutil.ignore_patterns("checkpoint.pt", "best.pt", "history.json"))
    shutil.copyfile(data / "items.parquet", out / "items.parquet")
    return {"mask_history": bool(options.get("mask_history", False))}


Packer = Callable[[Path, Path, Path, "Path | None", dict[str, Any]], dict[str, Any]]
Loader = Callable[[Path, dict[str, Any], str], Recommender]
# model.json "kind" -> how to pack such a model folder; recommender.json "kind" -> how to load it.
PACKERS: dict[str, Packer] = {"encoder": _pack_encoder}
LOADERS: dict[str, Loader] = {"encoder": EncoderRecommender.load}


def pack(model: str | Path, data: str | Path, out: str | Path, memory: str | Path | None = None,
         options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the recommender folder ``out`` for a model folder (its kind read from ``model.json``)."""
    model, data, out = Path(model), Path(data), Path(out)
    manifest = json.loads((model / "model.json").read_text())
    kind = manifest.get("kind", "encoder")
    if kind not in PACKERS:
        raise ValueError(f"{model}: no recommender for model kind {kind!r} (known: {', '.join(sorted(PACKERS))})")
    out.mkdir(parents=True, exist_ok=False)
    spec = {
        "kind": kind,
        "format_version": FORMAT_VERSION,
        "dataset_fingerprint": manifest.get("dataset_fingerprint", ""),
        **PACKERS[kind](model, data, out, Path(memory) if memory else None, dict(options or {})),
    }
    (out / MANIFEST).write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
    return spec


def load(folder: str | Path, device: str = "cpu") -> Recommender:
    folder = Path(folder)
    spec = json.loads((folder / MANIFEST).read_text())
    if spec.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{folder / MANIFEST}: format_version {spec.get('format_version')!r}, expected {FORMAT_VERSION}")
    if spec["kind"] not in LOADERS:
        raise ValueError(f"{folder}: unknown recommender kind {spec['kind']!r}")
    return LOADERS[spec["kind"]](folder, spec, device)
