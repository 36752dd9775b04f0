"""Stage 2, retrieval-augmented fine-tuning (SPEC §4): frozen encoder and item table, only the RAM trains.

The encoder is frozen and runs without dropout, so every query representation and every retrieval is
fixed: both are computed once (as the reference's bank is), and an epoch is RAM forward/backward only.
Test queries retrieve from the training memories plus the validation ones (SPEC §3).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict
from pathlib import Path

import torch

from ..config import Config
from ..data import SeqDataset
from ..data.batching import InstanceTensors
from ..evaluation import rank_all
from ..memory.bank import MemoryBank
from ..memory.build import extend_with_splits
from ..memory.retrieval import Retrieved, gather_memories, retrieve_all
from ..models.checkpoint import file_sha256
from ..models.configs import from_section
from ..models.encoder import encode_instances
from ..models.objectives import next_item_ce
from ..models.ram import RAM, RAMConfig
from ..storage import atomic_write_text
from .loop import LoopConfig, fit

log = logging.getLogger("raserec.finetune")


def ram_config(cfg: Config, hidden_size: int) -> RAMConfig:
    return from_section(RAMConfig, cfg.finetune, hidden_size=hidden_size)


class Queries:
    """A split's fixed query representations and retrieved memories."""

    def __init__(self, encoder, split: InstanceTensors, bank: MemoryBank, cfg: Config, device):
        f = cfg.finetune
        self.split = split
        self.h = encode_instances(encoder, split, device)
        self.retrieved = retrieve_all(bank.retriever(f.candidate_factor), self.h, split.user, split.lengths, f.top_k)
        self.second = None
        if f.channel2_retrieval == "target" and f.beta != 1.0:
            self.second = retrieve_all(bank.target_retriever(f.candidate_factor), self.h, split.user, split.lengths, f.top_k)
        self.keys, self.values = bank.entries.keys, bank.entries.values

    def fused(self, ram: RAM, rows: torch.Tensor, device) -> torch.Tensor:
        gather = lambda r: gather_memories(self.keys, self.values, Retrieved(r.ids[rows], r.mask[rows]), device)
        S, T, mask = gather(self.retrieved)
        second = gather(self.second) if self.second is not None else None
        return ram(self.h[rows].to(device), S, T, mask, self.split.lengths[rows].to(device), second)


def evaluate_queries(q: Queries, ram: RAM, item_table: torch.Tensor, cfg: Config, prefix: str, device, topk: int = 0):
    ram.eval()
    score = lambda rows: q.fused(ram, rows, device) @ item_table.T
    result = rank_all(score, q.split.target, cfg.eval.batch_size, topk)
    return result.metrics(tuple(cfg.eval.ks), prefix), result


def test_view(bank: MemoryBank, encoder, ds: SeqDataset, device) -> MemoryBank:
    """Training memories plus the validation ones, with a rebuilt index (the reference's test setting)."""
    return extend_with_splits(bank, encoder, ds, ("valid",), device)


def finetune(ds: SeqDataset, encoder, encoder_manifest: dict, bank: MemoryBank, cfg: Config, out_dir: Path, device) -> dict:
    f = cfg.finetune
    for p in encoder.parameters():
        p.requires_grad_(False)
    encoder.eval()
    item_table = encoder.item_table.detach()
    train = InstanceTensors(ds.splits["train"])
    log.info("encoding and retrieving for %d training and %d validation queries", len(train), len(ds.splits["valid"]))
    train_q = Queries(encoder, train, bank, cfg, device)
    valid_q = Queries(encoder, InstanceTensors(ds.splits["valid"]), bank, cfg, device)
    torch.manual_seed(cfg.seed)
    ram = RAM(ram_config(cfg, item_table.shape[1])).to(device)
    targets = train.target

    def loss_fn(rows: torch.Tensor, generator: torch.Generator):
        out = train_q.fused(ram, rows, device)
        loss = next_item_ce(out, item_table, targets[rows].to(device))
        return loss, {"rec": loss.detach()}

    loop_cfg = LoopConfig(
        epochs=f.epochs, batch_size=f.batch_size, lr=f.lr, weight_decay=f.weight_decay, patience=f.patience,
        valid_metric=f"valid/{f.valid_metric}", seed=cfg.seed,
    )

    def on_epoch(history: list[dict]) -> None:
        atomic_write_text(out_dir / "history.json", json.dumps(history, indent=1) + "\n")

    state = fit(
        ram, loss_fn, len(train), lambda: evaluate_queries(valid_q, ram, item_table, cfg, "valid/", device)[0],
        loop_cfg, out_dir, on_epoch=on_epoch,
    )
    ram.load_state_dict(torch.load(out_dir / "best.pt", map_location=device, weights_only=True))
    test_q = Queries(encoder, InstanceTensors(ds.splits["test"]), test_view(bank, encoder, ds, device), cfg, device)
    metrics = {
        **evaluate_queries(valid_q, ram, item_table, cfg, "valid/", device)[0],
        **evaluate_queries(test_q, ram, item_table, cfg, "test/", device)[0],
    }
    shutil.copyfile(out_dir / "best.pt", out_dir / "ram.pt")
    manifest = {
        "kind": "raserec",
        "encoder": encoder_manifest["encoder"],
        "encoder_sha256": encoder_manifest["encoder_sha256"],
        "ram": asdict(ram_config(cfg, item_table.shape[1])),
        "ram_sha256": file_sha256(out_dir / "ram.pt"),
        "retrieval": {"top_k": f.top_k, "candidate_factor": f.candidate_factor, "channel2_retrieval": f.channel2_retrieval},
        "dataset_fingerprint": ds.fingerprint,
        "memory": {k: bank.meta[k] for k in ("index_type_requested", "nlist", "nprobe")} | {"entries": len(bank)},
        "best_epoch": state.best_epoch,
        "epochs_run": state.epoch,
        "train_seconds": sum(r["train_time"] for r in state.history),
        "n_trainable_parameters": sum(p.numel() for p in ram.parameters()),
    }
    atomic_write_text(out_dir / "model.json", json.dumps(manifest, indent=2) + "\n")
    atomic_write_text(out_dir / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics
