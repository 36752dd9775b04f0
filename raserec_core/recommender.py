"""Serving: raw item-id histories in, retrieval-augmented top-K raw item ids out.

Loads a fine-tuned model folder (encoder + RAM + id maps) and a memory bank, or a stage-1 model folder
alone (no retrieval). Used by the MLflow pyfunc model and anything else that serves recommendations.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .evaluation.ranking import stable_topk


class Recommender:
    def __init__(
        self, encoder, item_ids: np.ndarray, max_len: int, ram=None, bank=None, top_k: int = 20, candidate_factor: int = 4,
        channel2_retrieval: str = "shared",
    ):
        self.encoder, self.ram, self.bank = encoder.eval(), (ram.eval() if ram is not None else None), bank
        self.item_ids = item_ids
        self.item_index = {raw: i for i, raw in enumerate(item_ids.tolist()) if i > 0}
        self.max_len, self.top_k, self.candidate_factor = max_len, top_k, candidate_factor
        self.user_index = {raw: i for i, raw in enumerate(bank.user_ids.tolist())} if bank is not None else {}
        self.retrievers = []
        if bank is not None:
            self.retrievers.append(bank.retriever(candidate_factor))
            if channel2_retrieval == "target" and ram.cfg.beta != 1.0:
                self.retrievers.append(bank.target_retriever(candidate_factor))

    @classmethod
    def load(
        cls, model_dir: str | Path, memory_dir: str | Path | None, device: torch.device | str, nprobe: int | None = None
    ) -> Recommender:
        from .data.artifact import read_ids
        from .memory.bank import MemoryBankError, load_bank
        from .models.checkpoint import load_encoder, load_ram

        model_dir = Path(model_dir)
        encoder, manifest = load_encoder(model_dir, device)
        ram = bank = None
        if manifest.get("kind") == "raserec":
            if memory_dir is None:
                raise ValueError(f"{model_dir}: a fine-tuned model needs its memory bank")
            ram = load_ram(model_dir, manifest, device)
            # Serve with the nprobe the model was fine-tuned and evaluated with, unless told otherwise.
            bank = load_bank(memory_dir, nprobe=nprobe if nprobe is not None else manifest["memory"]["nprobe"])
            if bank.meta["encoder_sha256"] != manifest["encoder_sha256"]:
                raise MemoryBankError(f"{memory_dir}: built by another encoder than {model_dir}")
        items_path = model_dir / "items.parquet"
        item_ids = read_ids(items_path) if items_path.exists() else bank.item_ids
        retrieval = manifest.get("retrieval", {})
        return cls(
            encoder, item_ids, manifest["encoder"]["max_len"], ram, bank, retrieval.get("top_k", 20),
            retrieval.get("candidate_factor", 4), retrieval.get("channel2_retrieval", "shared"),
        )

    def _encode_histories(self, histories: list[list[str]]) -> tuple[torch.Tensor, torch.Tensor]:
        mapped = [[self.item_index[i] for i in map(str, h) if i in self.item_index][-self.max_len :] for h in histories]
        lengths = torch.tensor([len(m) for m in mapped], dtype=torch.long)
        seqs = torch.zeros(len(mapped), max(int(lengths.max()) if len(mapped) else 1, 1), dtype=torch.long)
        for r, m in enumerate(mapped):
            seqs[r, : len(m)] = torch.tensor(m, dtype=torch.long)
        return seqs, lengths

    @torch.no_grad()
    def recommend(self, histories: list[list[str]], user_ids: list[str | None] | None = None, k: int = 10) -> tuple[list[list[str]], list[list[float]]]:
        """Top-k raw item ids and scores per history; a history with no known item gets empty lists."""
        from .memory.retrieval import gather_memories

        seqs, lengths = self._encode_histories(histories)
        ok = lengths > 0
        out_items: list[list[str]] = [[] for _ in histories]
        out_scores: list[list[float]] = [[] for _ in histories]
        if not ok.any():
            return out_items, out_scores
        device = self.encoder.item_table.device
        rows = ok.nonzero().flatten()
        h = self.encoder(seqs[rows].to(device), lengths[rows].to(device))
        if self.ram is not None:
            users = torch.tensor(
                [self.user_index.get(str(user_ids[r]), -1) if user_ids is not None and user_ids[r] is not None else -1 for r in rows.tolist()],
                dtype=torch.long,
            )
            e = self.bank.entries
            lists = [gather_memories(e.keys, e.values, ret(h, users, lengths[rows], self.top_k), device) for ret in self.retrievers]
            h = self.ram(h, *lists[0], lengths[rows].to(device), lists[1] if len(lists) > 1 else None)
        scores = h @ self.encoder.item_table.T
        scores[:, 0] = float("-inf")
        items, top = stable_topk(scores, min(k, scores.shape[1] - 1))
        items, top = items.cpu().numpy(), top.cpu().numpy()
        for j, r in enumerate(rows.tolist()):
            out_items[r] = self.item_ids[items[j]].tolist()
            out_scores[r] = top[j].astype(float).tolist()
        return out_items, out_scores
