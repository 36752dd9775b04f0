"""The retrieval-augmented recommender, assembled once: encoder -> retrieve -> gather -> RAM -> scores.

RaSeRec's second stage, retrieval-augmented fine-tuning (Zhao et al., arXiv 2412.18378): the frozen
encoder's representation h of a sequence queries the memory bank, the leakage-filtered top-K memories
are gathered, and the RAM fuses them with h; the scores are h_aug · Eᵀ over the frozen item table.
Fine-tuning, evaluation and serving all call ``Recommender``:

- fine-tuning and evaluation: ``precompute`` once per split (the frozen encoder makes every query
  representation and every retrieval a constant), then ``fused_rows`` per batch;
- serving: ``recommend`` on raw item-id histories.

The recommender receives its memory bank as an object (``Memory``) and asks it for retrievers
(``Retriever``): it knows the retrieval interface, not the index behind it.

A fine-tuned model owns its retrieval settings (``RetrievalSettings`` and the RAM's β), recorded in
``model.json`` at fine-tuning; ``load`` reads them from there, and an override is applied only when
passed explicitly (``overrides``, dotted config keys such as ``memory.nprobe``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from .memory.retrieval import Retrieved, gather_memories, retrieve_all
from .models.seen import offset_seen


class Retriever(Protocol):
    def __call__(self, queries: torch.Tensor, user: torch.Tensor, length: torch.Tensor, k: int) -> Retrieved:
        """(B, D) queries, (B,) user indices (-1 = unknown) and lengths -> the top-k admissible memories."""
        ...


class Memory(Protocol):
    """What the recommender reads of a memory bank (``memory.bank.MemoryBank`` is one)."""

    entries: Any  # .keys, .values: (E, D) tensors
    user_ids: np.ndarray  # (U,) raw user ids: the user index of the leakage filter
    item_ids: np.ndarray

    def retriever(self, candidate_factor: int) -> Retriever: ...

    def target_retriever(self, candidate_factor: int) -> Retriever: ...


@dataclass(frozen=True)
class RetrievalSettings:
    """How a fine-tuned model reads its memories; fixed at fine-tuning and recorded in ``model.json``."""

    top_k: int = 20
    candidate_factor: int = 4  # the index is asked for candidate_factor * top_k before the leakage filter
    channel2_retrieval: str = "shared"  # shared | target (see models.ram)
    index_type: str = "ivf"  # the bank's requested index type; indexes built from it follow it
    nlist: int = 128
    nprobe: int = 1
    pq_m: int = 8

    @classmethod
    def from_config(cls, cfg) -> RetrievalSettings:
        f, m = cfg.finetune, cfg.memory
        return cls(f.top_k, f.candidate_factor, f.channel2_retrieval, m.index_type, m.nlist, m.nprobe, m.pq_m)

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> RetrievalSettings:
        # Model folders written before the settings moved into "retrieval" kept the index ones in "memory".
        old = manifest.get("memory", {})
        legacy = {"index_type": old.get("index_type_requested"), "nlist": old.get("nlist"), "nprobe": old.get("nprobe")}
        merged = {k: v for k, v in legacy.items() if v is not None} | manifest.get("retrieval", {})
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in merged.items() if k in known})


# Config keys an explicit override may change at evaluation or serving: setting -> field (RAM's β aside).
OVERRIDABLE = {
    "finetune.top_k": "top_k",
    "finetune.candidate_factor": "candidate_factor",
    "finetune.channel2_retrieval": "channel2_retrieval",
    "memory.nprobe": "nprobe",
    "finetune.beta": "beta",
}


def apply_overrides(settings: RetrievalSettings, ram_cfg, overrides: Mapping[str, Any]):
    """(settings, RAM config) with the overrides applied; an unknown key is an error."""
    from .errors import ConfigError

    unknown = sorted(set(overrides) - set(OVERRIDABLE))
    if unknown:
        raise ConfigError(f"{unknown[0]}: not a retrieval setting of a fine-tuned model (known: {', '.join(OVERRIDABLE)})")
    fields_ = {OVERRIDABLE[k]: v for k, v in overrides.items()}
    beta = fields_.pop("beta", None)
    if ram_cfg is not None and beta is not None:
        ram_cfg = replace(ram_cfg, beta=float(beta))
    return replace(settings, **fields_), ram_cfg


def load_memory(memory_dir: str | Path, manifest: Mapping[str, Any], settings: RetrievalSettings, model_dir=""):
    """The bank of ``memory_dir`` searched with ``settings.nprobe``; refused if another encoder built it
    or its index was built with other settings than the model's."""
    from .errors import MemoryBankError
    from .memory.bank import load_bank

    bank = load_bank(memory_dir, nprobe=settings.nprobe)
    if bank.meta["encoder_sha256"] != manifest["encoder_sha256"]:
        raise MemoryBankError(f"{memory_dir}: built by another encoder than {model_dir}")
    built = (bank.meta["index_type_requested"], bank.meta["nlist"], bank.meta["pq_m"])
    wanted = (settings.index_type, settings.nlist, settings.pq_m)
    if built != wanted:
        raise MemoryBankError(
            f"{memory_dir}: index built as (index_type, nlist, pq_m) = {built}, the model {model_dir} was fine-tuned "
            f"over {wanted}; rebuild the bank with 'raserec index' and those settings"
        )
    return bank


@dataclass
class Precomputed:
    """A split's fixed query representations and retrieved memories (frozen encoder: computed once)."""

    h: torch.Tensor  # (N, D) on the CPU
    lengths: torch.Tensor  # (N,)
    retrieved: tuple[Retrieved, ...]  # one list per channel that retrieves its own
    split: Any  # the ``InstanceTensors`` it was computed from: the queries' input sequences

    def history(self, rows: torch.Tensor) -> torch.Tensor:
        """(B, L) item indices of the rows' input sequences (0 = padding)."""
        return self.split.fetch(rows)[0]


class Recommender:
    """Encoder + memory bank + RAM; with ``ram`` None (a stage-1 model) it ranks by the encoder alone."""

    def __init__(
        self, encoder, item_ids: np.ndarray, max_len: int, ram=None, bank: Memory | None = None,
        settings: RetrievalSettings | None = None,
    ):
        settings = settings or RetrievalSettings()
        self.encoder, self.ram, self.bank = encoder.eval(), (ram.eval() if ram is not None else None), bank
        self.item_ids, self.max_len, self.settings = item_ids, max_len, settings
        self.retrievers: tuple[Retriever, ...] = ()
        if bank is not None and ram is not None and not ram.passes_through:
            cf = settings.candidate_factor
            # Channel tar->seq reads its own list only when it is computed at all (β < 1).
            second = settings.channel2_retrieval == "target" and ram.cfg.beta != 1.0
            self.retrievers = (bank.retriever(cf), bank.target_retriever(cf)) if second else (bank.retriever(cf),)

    @property
    def top_k(self) -> int:
        return self.settings.top_k

    @cached_property
    def item_index(self) -> dict[str, int]:
        return {raw: i for i, raw in enumerate(self.item_ids.tolist()) if i > 0}

    @cached_property
    def user_index(self) -> dict[str, int]:
        return {raw: i for i, raw in enumerate(self.bank.user_ids.tolist())} if self.bank is not None else {}

    @classmethod
    def from_config(cls, cfg, encoder, bank: Memory, device) -> Recommender:
        """A new (untrained) RAM from ``cfg.finetune`` over ``bank``: the start of fine-tuning."""
        from .models.ram import RAM

        ram = RAM(ram_config(cfg, encoder.item_table.shape[1])).to(device)
        return cls(encoder, bank.item_ids, cfg.data.max_len, ram, bank, RetrievalSettings.from_config(cfg))

    @classmethod
    def load(
        cls, model_dir: str | Path, memory_dir: str | Path | None, device: torch.device | str,
        overrides: Mapping[str, Any] | None = None,
    ) -> Recommender:
        """From a model folder (stage 1, or fine-tuned with its memory bank), with the model's own retrieval
        settings; ``overrides`` (keys of ``OVERRIDABLE``) replace them."""
        from .data.artifact import read_ids
        from .models.checkpoint import load_encoder, load_ram
        from .models.ram import RAMConfig

        model_dir = Path(model_dir)
        encoder, manifest = load_encoder(model_dir, device)
        ram = bank = None
        settings = RetrievalSettings()
        if manifest.get("kind") == "raserec":
            if memory_dir is None:
                raise ValueError(f"{model_dir}: a fine-tuned model needs its memory bank")
            settings, ram_cfg = apply_overrides(RetrievalSettings.from_manifest(manifest), RAMConfig.from_record(manifest["ram"]),
                                                overrides or {})
            ram = load_ram(model_dir, manifest, device, ram_cfg)
            bank = load_memory(memory_dir, manifest, settings, model_dir)
        items_path = model_dir / "items.parquet"
        item_ids = read_ids(items_path) if items_path.exists() else bank.item_ids
        return cls(encoder, item_ids, manifest["encoder"]["max_len"], ram, bank, settings)

    def over(self, bank: Memory) -> Recommender:
        """The same model reading another bank (e.g. the test view: training plus validation memories)."""
        return Recommender(self.encoder, self.item_ids, self.max_len, self.ram, bank, self.settings)

    def for_test(self, ds, device) -> Recommender:
        """Over the test view of the paper's protocol: the training memories plus the validation ones
        (``ds`` the dataset), with a rebuilt index, held in memory only."""
        from .memory.build import extend_with_splits

        return self.over(extend_with_splits(self.bank, self.encoder, ds, ("valid",), device))

    # The forward pass, in its four steps.

    def retrieve(self, h: torch.Tensor, user: torch.Tensor, lengths: torch.Tensor) -> tuple[Retrieved, ...]:
        """h (B, D), user (B,) (-1 = unknown), lengths (B,) -> one retrieved list per channel that reads its own."""
        return tuple(retrieve_all(r, h, user.cpu(), lengths.cpu(), self.settings.top_k) for r in self.retrievers)

    def fuse(self, h: torch.Tensor, retrieved: tuple[Retrieved, ...], lengths: torch.Tensor) -> torch.Tensor:
        """h (B, D) on the model's device -> the RAM's h_aug (B, D); h itself without a RAM."""
        if self.ram is None or self.ram.passes_through:
            return h
        e = self.bank.entries
        lists = [gather_memories(e.keys, e.values, r, h.device) for r in retrieved]
        return self.ram(h, *lists[0], lengths.to(h.device), lists[1] if len(lists) > 1 else None)

    @property
    def seen_offset(self) -> torch.Tensor | None:
        """The RAM's score offset for items of the query's own sequence (models.seen), if it has one."""
        return self.ram.seen_offset if self.ram is not None else None

    def scores(self, h: torch.Tensor, history: torch.Tensor | None) -> torch.Tensor:
        """(B, D) and the (B, L) input sequences -> (B, n_items) scores over the frozen item table (padding
        included), the history items offset by ``seen_offset`` when the model has one (only then is
        the history read: None will do without)."""
        s = h @ self.encoder.item_table.detach().T
        if self.seen_offset is None:
            return s
        if history is None:
            raise ValueError("a model with a seen-item offset needs the queries' history to score")
        return offset_seen(s, history, self.seen_offset)

    @torch.no_grad()
    def precompute(self, split, device) -> Precomputed:
        """Encode and retrieve every instance of ``split`` (an ``InstanceTensors``) once."""
        from .models.encoder import encode_instances

        h = encode_instances(self.encoder, split, device)
        return Precomputed(h, split.lengths, self.retrieve(h, split.user, split.lengths) if self.ram is not None else (), split)

    def fused_rows(self, pre: Precomputed, rows: torch.Tensor, device) -> torch.Tensor:
        """h_aug (B, D) of the precomputed rows ``rows``, on ``device``."""
        return self.fuse(pre.h[rows].to(device), tuple(r.rows(rows) for r in pre.retrieved), pre.lengths[rows])

    def scores_rows(self, pre: Precomputed, rows: torch.Tensor, device) -> torch.Tensor:
        """(B, n_items) scores of the precomputed rows ``rows``."""
        history = pre.history(rows) if self.seen_offset is not None else None  # not fetched when unused
        return self.scores(self.fused_rows(pre, rows, device), history)

    # Serving.

    def _mapped(self, histories) -> list[list[int]]:
        return [[self.item_index[i] for i in map(str, h) if i in self.item_index] for h in histories]

    @staticmethod
    def _pad(mapped: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = torch.tensor([len(m) for m in mapped], dtype=torch.long)
        seqs = torch.zeros(len(mapped), max(int(lengths.max()) if len(mapped) else 1, 1), dtype=torch.long)
        for r, m in enumerate(mapped):  # raw ids to indices: once per request, not on a training path
            seqs[r, : len(m)] = torch.tensor(m, dtype=torch.long)
        return seqs, lengths

    def _encode_histories(self, histories) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L) right-padded item indices of the last ``max_len`` known items, and their (B,) lengths."""
        return self._pad([m[-self.max_len :] for m in self._mapped(histories)])

    @torch.no_grad()
    def recommend(
        self, histories: list[list[str]], user_ids: list[str | None] | None = None, k: int = 10,
        exclude_history: bool = True,
    ) -> tuple[list[list[str]], list[list[float]]]:
        """Top-k raw item ids and scores per history; a history with no known item gets empty lists.

        ``exclude_history``: the items of the history (all of it, not only the last ``max_len``) are never
        recommended (their scores are masked before the top-k)."""
        from .evaluation.ranking import stable_topk

        mapped = self._mapped(histories)
        seqs, lengths = self._pad([m[-self.max_len :] for m in mapped])
        out_items: list[list[str]] = [[] for _ in histories]
        out_scores: list[list[float]] = [[] for _ in histories]
        ok = lengths > 0
        if not ok.any():
            return out_items, out_scores
        device = self.encoder.item_table.device
        rows = ok.nonzero().flatten()
        inputs = seqs[rows].to(device)
        h = self.encoder(inputs, lengths[rows].to(device))
        if self.ram is not None:
            known = lambda r: user_ids is not None and user_ids[r] is not None
            users = torch.tensor([self.user_index.get(str(user_ids[r]), -1) if known(r) else -1 for r in rows.tolist()])
            h = self.fuse(h, self.retrieve(h, users, lengths[rows]), lengths[rows])
        scores = self.scores(h, inputs)
        scores[:, 0] = float("-inf")
        if exclude_history:
            seen, _ = self._pad([mapped[r] for r in rows.tolist()])
            scores.scatter_(1, seen.to(device), float("-inf"))  # padding 0 is already -inf
        items, top = stable_topk(scores, min(k, scores.shape[1] - 1))
        items, top = items.cpu().numpy(), top.cpu().numpy()
        for j, r in enumerate(rows.tolist()):
            keep = np.isfinite(top[j])  # a masked item never fills a short list
            out_items[r] = self.item_ids[items[j][keep]].tolist()
            out_scores[r] = top[j][keep].astype(float).tolist()
        return out_items, out_scores

    def manifest(self) -> dict[str, Any]:
        """The retrieval settings as ``model.json`` records them."""
        return asdict(self.settings)


def ram_config(cfg, hidden_size: int):
    """The RAM's config from ``cfg.finetune``, its fields taken by name (models/configs.py)."""
    from .models.configs import from_section
    from .models.ram import RAMConfig

    return from_section(RAMConfig, cfg.finetune, hidden_size=hidden_size)
