"""Trained models, banks and datasets an analysis needs, each made once in a cache folder named by all that
determines it (config sections and input identities), or taken from the command's own inputs when those
are the same thing: the fine-tuned model, its bank and its stage-1 model are never retrained."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..config import Config, flatten, from_dict

log = logging.getLogger("raserec.analysis")

PRETRAIN_SECTIONS = ("seed", "model", "pretrain", "data")
INDEX_SECTIONS = ("seed", "memory")
FINETUNE_SECTIONS = ("seed", "finetune", "memory")


@dataclass(frozen=True)
class Inputs:
    """The command's artifacts: dataset, fine-tuned model, its memory bank, its stage-1 model."""

    data: Path
    model: Path
    memory: Path
    baseline: Path


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _run_config(folder: Path) -> Config:
    import yaml

    return from_dict(yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8")))


def base_config(inputs: Inputs) -> dict[str, Any]:
    """The settings the inputs were made with: stage 1's sections from the stage-1 model, the rest from the
    fine-tuned one (whose ``memory`` section records the bank's index)."""
    fine = _run_config(inputs.model).to_dict()
    stage1 = _run_config(inputs.baseline).to_dict()
    return {**fine, **{k: stage1[k] for k in PRETRAIN_SECTIONS}}


def _digest(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def dataset_fingerprint(data: Path) -> str:
    return _read_json(Path(data) / "stats.json")["fingerprint"]


def encoder_sha(model: Path) -> str:
    return _read_json(Path(model) / "model.json")["encoder_sha256"]


def bank_digest(memory: Path) -> str:
    return hashlib.sha256((Path(memory) / "manifest.json").read_bytes()).hexdigest()


class Workspace:
    """Where an analysis finds or makes what it evaluates. ``cache`` is shared between analyses."""

    def __init__(self, inputs: Inputs, cfg: Config, cache: Path, output: Path, device):
        self.inputs, self.cfg, self.cache, self.output, self.device = inputs, cfg, Path(cache), Path(output), device

    def _identity(self, step: str, cfg: Config, sections: tuple[str, ...], **inputs: Any) -> str:
        """What determines a step's result: its config sections, the protocol early stopping selects by,
        and its inputs' identities (``steps`` records the same in the run's ``inputs.json``)."""
        inputs.setdefault("eval.mask_history", cfg.eval.mask_history)
        return _digest({"step": step, "config": flatten(cfg.section(*sections)), "inputs": inputs})

    def _folder(self, step: str, identity: str) -> Path:
        self.cache.mkdir(parents=True, exist_ok=True)
        return self.cache / f"{step}-{identity}"

    def pretrain(self, cfg: Config, data: Path | None = None) -> Path:
        """A stage-1 model of ``cfg`` on ``data`` (the command's dataset by default)."""
        from .. import steps

        data = Path(data or self.inputs.data)
        identity = self._identity("pretrain", cfg, PRETRAIN_SECTIONS, dataset=dataset_fingerprint(data))
        given = self.inputs.baseline
        recorded = _read_json(given / "inputs.json")  # a run records eval.mask_history only when true
        if identity == self._identity("pretrain", _run_config(given), PRETRAIN_SECTIONS, dataset=recorded.get("dataset", ""),
                                      **{"eval.mask_history": recorded.get("eval.mask_history", False)}):
            return given
        out = self._folder("pretrain", identity)
        steps.pretrain(data, out, cfg, self.device)
        return out

    def index(self, cfg: Config, model: Path, data: Path | None = None) -> Path:
        """A memory bank of ``model`` under ``cfg.memory`` (a too small bank falls back to an exact index)."""
        from .. import steps

        data = Path(data or self.inputs.data)
        cfg = replace(cfg, memory=replace(cfg.memory, allow_fallback=True))
        identity = self._identity("index", cfg, INDEX_SECTIONS, dataset=dataset_fingerprint(data),
                                  encoder=encoder_sha(model))
        base = replace(self.cfg, memory=replace(self.cfg.memory, allow_fallback=True))
        if model == self.inputs.baseline and data == self.inputs.data and cfg.section(*INDEX_SECTIONS) == base.section(*INDEX_SECTIONS):
            return self.inputs.memory
        out = self._folder("index", identity)
        if not (out / "manifest.json").exists():
            steps.index(data, model, out, cfg, self.device)
        return out

    def finetune(self, cfg: Config, model: Path, memory: Path, data: Path | None = None) -> Path:
        """RaSeRec fine-tuned over ``memory`` from the stage-1 ``model`` under ``cfg.finetune``."""
        from .. import steps

        data = Path(data or self.inputs.data)
        # The analyses measure the RAM itself: no fallback to the encoder alone (finetune.encoder_fallback), and
        # the given model stands for its settings only if it did not fall back.
        cfg = ram_always(cfg)
        given = (model, memory, data) == (self.inputs.baseline, self.inputs.memory, self.inputs.data)
        if (given and cfg.section("seed", "finetune") == ram_always(self.cfg).section("seed", "finetune")
                and not fell_back(self.inputs.model)):
            return self.inputs.model
        identity = self._identity("finetune", cfg, FINETUNE_SECTIONS, dataset=dataset_fingerprint(data),
                                  encoder=encoder_sha(model), memory=bank_digest(memory))
        out = self._folder("finetune", identity)
        steps.finetune(data, model, memory, out, cfg, self.device)
        return out

    def raserec(self) -> Path:
        """The fine-tuned model the analyses measure: the given one, or the same fine-tuning with the RAM kept
        where the given one fell back to its encoder."""
        return self.finetune(self.cfg, self.inputs.baseline, self.inputs.memory)

    def evaluate(self, label: str, model: Path, memory: Path | None = None, cfg: Config | None = None,
                 data: Path | None = None, inputs=None, overrides: dict | None = None) -> dict[str, Any]:
        """Test metrics of ``model`` (with ``memory``: RaSeRec) and its top-K dump ``dumps/<label>.parquet``.
        Returns HR@10, NDCG@10 and the dump's path relative to the output folder."""
        from .. import steps

        dump = self.output / "dumps" / f"{label}.parquet"
        dump.parent.mkdir(parents=True, exist_ok=True)
        metrics = steps.evaluate(Path(data or self.inputs.data), model, cfg or self.cfg, self.device, "test",
                                 topk_output=dump, memory=memory, overrides=overrides, inputs=inputs)
        return {"hr@10": metrics["test/hr@10"], "ndcg@10": metrics["test/ndcg@10"],
                "dump": str(dump.relative_to(self.output))}

    def retrieval_seconds(self, model: Path, memory: Path, overrides: dict | None = None) -> float:
        """Seconds to retrieve the memories of every test query (the queries encoded beforehand)."""
        import time

        import torch

        from ..data import read_dataset
        from ..data.batching import InstanceTensors
        from ..models.encoder import encode_instances
        from ..recommender import Recommender

        ds = read_dataset(self.inputs.data)
        rec = Recommender.load(model, memory, self.device, overrides).for_test(ds, self.device)
        split = InstanceTensors(ds.splits["test"])
        with torch.no_grad():
            h = encode_instances(rec.encoder, split, self.device)
            start = time.perf_counter()
            rec.retrieve(h, split.user, split.lengths)
        return time.perf_counter() - start


def ram_always(cfg: Config) -> Config:
    return replace(cfg, finetune=replace(cfg.finetune, encoder_fallback=False))


def fell_back(model: Path) -> bool:
    """Whether the fine-tuned ``model`` ranks by its encoder alone (finetune.encoder_fallback used)."""
    manifest = json.loads((Path(model) / "model.json").read_text())
    return bool((manifest.get("encoder_fallback") or {}).get("used"))


def with_settings(cfg: Config, settings: dict[str, Any]) -> Config:
    """``cfg`` with dotted keys replaced, validated as any config is."""
    from ..config import parse_set

    tree = parse_set([f"{k}={json.dumps(v)}" for k, v in settings.items()])
    merged = cfg.to_dict()
    for section, values in tree.items():
        merged[section] = {**merged[section], **values} if isinstance(values, dict) else values
    return from_dict(merged)
