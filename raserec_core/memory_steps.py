"""``raserec memory add``, both forms: new interactions into a bank folder (``memory_add``) or into a
registered model's bank as a new version (``memory_add_registered``), through one way of adding
(``_grow_bank``: no retraining, no index rebuild)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from .config import Config
from .errors import StepError
from .steps import _load_memory, _recommender_split

log = logging.getLogger("raserec")


def _grow_bank(memory: str | Path, model: str | Path, inter, source: str, cfg: Config, device, strict: bool):
    """The bank of ``memory`` with the interactions ``inter`` added by ``model``'s encoder (no retraining,
    no index rebuild), and the report: the one way both forms of ``memory add`` add."""
    from .memory.dynamic import add_interactions
    from .models.checkpoint import load_encoder

    encoder, manifest = load_encoder(model, device)
    bank = _load_memory(memory, manifest, cfg, model)
    return add_interactions(bank, encoder, inter, device, strict=strict, source=source)


def _read_new_interactions(interactions: str | Path, cfg: Config):
    from .data import read_interactions

    d = cfg.data
    return read_interactions(interactions, d.format, d.user_col, d.item_col, d.time_col)


def memory_add(
    memory: str | Path, model: str | Path, interactions: str | Path, output: str | Path, cfg: Config, device,
    strict: bool = False, overwrite: bool = False,
) -> dict[str, Any]:
    """Append new interactions to a bank (no retraining, no index rebuild); writes a new bank folder
    (``output`` as for ``index``; it may be ``memory`` itself)."""
    from .memory.bank import is_bank, save_bank
    from .storage import may_replace

    replace = may_replace(output, is_bank, "a memory bank", overwrite)
    inter = _read_new_interactions(interactions, cfg)
    new_bank, report = _grow_bank(memory, model, inter, str(interactions), cfg, device, strict)
    save_bank(new_bank, output, replace_existing=replace)
    return report


SCORE_SOURCE = "memory add: valid split, queries reading the training and the added memories"


def memory_add_registered(
    model_uri: str, interactions: str | Path, data: str | Path, cfg: Config, device, tracking_uri: str,
    strict: bool = False,
) -> dict[str, Any]:
    """``memory_add`` for a registered model (``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``): its bank
    grown by ``interactions`` becomes a new version of the same model, gated like any registration.

    The gate's score is measured, never inherited: the new version's validation NDCG@10 on ``data`` (the
    dataset the model was trained on), as the evaluate step measures it (validation queries read the
    training memories), with the added memories too. The serving bank also holds the validation and
    test memories; ``memory.build.validation_view`` takes them out, over a rebuilt index for this
    measurement only (the registered bank keeps its trained index). Adding the same interactions to the
    same version again returns the version made then (``reused``), without downloading anything."""
    import tempfile

    from .data import read_dataset
    from .data.batching import InstanceTensors
    from .memory.bank import save_bank
    from .memory.build import validation_view
    from .memory.dynamic import interactions_sha256
    from .recommender import Recommender
    from .storage import atomic_write_text
    from .tracking import live
    from .tracking.registry import TAG_FINGERPRINT, example_history

    inter = _read_new_interactions(interactions, cfg)
    sha = interactions_sha256(inter)
    parent = live.resolve(tracking_uri, model_uri)
    same = live.find_addition(tracking_uri, parent, sha)
    if same is not None:
        log.info("%s: these interactions were added already, as version %s", model_uri, same.version)
        return {**live.reused(tracking_uri, same), "interactions_sha256": sha}
    ds = read_dataset(data)
    if parent.tags.get(TAG_FINGERPRINT) != ds.fingerprint:
        raise StepError(f"{data}: not the dataset {model_uri} was trained on (fingerprint differs); its validation "
                        f"split measures the new version for the gate")
    with tempfile.TemporaryDirectory(prefix="raserec-memory-add-") as tmp:
        folder = live.download(tracking_uri, parent, Path(tmp) / "parent")
        spec = json.loads((folder / "recommender.json").read_text())
        if spec.get("kind") != "raserec":
            raise StepError(f"{model_uri}: a stage-1 model ({spec.get('kind')}) has no memory bank to add to")
        grown = Path(tmp) / "grown" / folder.name  # logged under its own name: artifacts/recommender again
        shutil.copytree(folder, grown, ignore=shutil.ignore_patterns("memory"))
        bank, report = _grow_bank(folder / "memory", folder / "model", inter, str(interactions), cfg, device, strict)
        if report["entries_added"] == 0:
            raise StepError(f"{interactions}: adds no memory to {model_uri} (unknown items or new users' first items "
                            f"only); nothing registered")
        save_bank(bank, grown / "memory")
        atomic_write_text(grown / "recommender.json", json.dumps({**spec, "entries": len(bank)}, indent=2, sort_keys=True) + "\n")
        rec = Recommender.load(grown / "model", grown / "memory", device)  # what serving will load
        view = rec.over(validation_view(rec.bank, ds))
        metrics, _ = _recommender_split(view, InstanceTensors(ds.splits["valid"]), "valid/", cfg, device)
        score = float(metrics["valid/ndcg@10"])
        lineage = {live.TAG_PARENT: str(parent.version), live.TAG_INTERACTIONS: sha,
                   live.TAG_ADDED: str(report["entries_added"]), live.TAG_BANK: str(len(bank)),
                   live.TAG_SCORE_SOURCE: SCORE_SOURCE}
        result = live.register_grown(tracking_uri, parent, grown, example=example_history(data), score=score,
                                     fingerprint=ds.fingerprint, metrics=metrics, lineage=lineage, device=device)
    return {**result, **report, "interactions_sha256": sha, "valid/ndcg@10": score}
