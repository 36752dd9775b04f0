"""Stage 1, collaborative pre-training (docs/method.md §2): wire encoder + objective + loop, then evaluate the best."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch

from ..config import Config, ConfigError
from ..data import SeqDataset
from ..data.batching import InstanceTensors
from ..data.packing import pack_rows, prefix_windows, window_batches
from ..data.sampling import length_bucketed_batches, random_batches
from ..models.checkpoint import encoder_spec, file_sha256
from ..models.encoder import build_encoder
from ..models.objectives import (
    Batch,
    CL4SRecObjective,
    CrossEntropyObjective,
    DuoRecObjective,
    Packed,
    SameTargetSampler,
    next_item_loss,
)
from ..storage import atomic_write_text
from . import distributed
from .cuda_graph import GraphPlan
from .loop import LoopConfig, fit, write_model_folder
from .resume import read_weights

log = logging.getLogger("raserec.pretrain")


def build_objective(cfg: Config, train: InstanceTensors, n_items: int):
    p = cfg.pretrain
    next_item = next_item_loss(p.softmax, p.n_negatives)
    if p.objective == "ce":
        return CrossEntropyObjective(p.length_chunks, next_item)
    if p.objective == "duorec":
        return DuoRecObjective(
            SameTargetSampler(train.target), train.fetch, p.contrast, p.lmd, p.lmd_sem, p.tau, p.sim, p.length_chunks,
            next_item,
        )
    if p.objective == "cl4srec":
        return CL4SRecObjective(
            mask_token=n_items, crop=p.crop_ratio, mask=p.mask_ratio, reorder=p.reorder_ratio, lmd=p.lmd,
            tau=p.tau, sim=p.sim, length_chunks=p.length_chunks, next_item=next_item,
        )
    raise ValueError(f"unknown objective {p.objective!r}")


def packed_windows(train: InstanceTensors, window_of: torch.Tensor, rows: torch.Tensor):
    """(window sequences cut to the longest, each row's window, each row's slot) of a packed batch."""
    windows, inverse, slot = pack_rows(window_of, train.lengths, rows)
    return train.fetch(windows)[0], inverse, slot


def training_batch(
    train: InstanceTensors, rows: torch.Tensor, window_of: torch.Tensor | None, device: torch.device
) -> Batch:
    """The training rows ``rows`` on ``device``; with ``window_of`` (sequence packing) also their windows."""
    seqs, lengths = train.fetch(rows)
    packed = None
    if window_of is not None:
        packed = Packed(*(t.to(device) for t in packed_windows(train, window_of, rows)))
    return Batch(
        rows=rows, seqs=seqs.to(device), lengths=lengths.to(device), target=train.target[rows].to(device),
        packed=packed,
    )


def cuda_graph_plan(cfg: Config, train: InstanceTensors, window_of: torch.Tensor | None, objective, encoder):
    """The capturable form of a step (``training.cuda_graph``) for packed cross-entropy over all items:
    every full batch padded to ``batch_size`` windows of ``max_len`` items (right padding, which a causal
    encoder never reads at a prefix's own position); None for other set-ups."""
    p = cfg.pretrain
    if not (p.cuda_graph and window_of is not None and p.objective == "ce" and p.softmax == "full"):
        return None
    shape = (p.batch_size, cfg.data.max_len)

    def prepare(rows: torch.Tensor):
        if len(rows) != p.batch_size:
            return None
        w_seqs, inverse, slot = packed_windows(train, window_of, rows)
        windows = torch.zeros(shape, dtype=torch.long)
        windows[: w_seqs.shape[0], : w_seqs.shape[1]] = w_seqs
        return {"windows": windows, "inverse": inverse, "slot": slot, "target": train.target[rows]}

    def loss(x: dict[str, torch.Tensor]):
        packed = Packed(x["windows"], x["inverse"], x["slot"])
        return objective(encoder, Batch(rows=None, seqs=None, lengths=None, target=x["target"], packed=packed))

    return GraphPlan(prepare, loss)


def pretrain(ds: SeqDataset, cfg: Config, out_dir: Path, device: torch.device, evaluate_split) -> dict:
    """Train, keep the best epoch by ``pretrain.valid_metric``, write the model folder; returns metrics."""
    p = cfg.pretrain
    n_extra = 1 if p.objective == "cl4srec" else 0
    torch.manual_seed(cfg.seed)  # the initial weights are part of the seeded run
    encoder = build_encoder(cfg.model.backbone, ds.n_items, cfg.data.max_len, cfg.model, n_extra).to(device)
    train = InstanceTensors(ds.splits["train"])
    valid = InstanceTensors(ds.splits["valid"])
    objective = build_objective(cfg, train, ds.n_items)

    packing = p.batching == "sequence"
    if packing and not getattr(encoder, "causal", True):
        raise ConfigError("pretrain.batching=sequence reads every prefix off one pass, which needs a causal "
                          "encoder; model.filter_scope=window is not: set pretrain.batching=random")
    window_of = prefix_windows(train.user, train.position, train.lengths) if packing else None

    def loss_fn(rows: torch.Tensor, generator: torch.Generator):
        return objective(encoder, training_batch(train, rows, window_of, device), generator)

    def validate() -> dict[str, float]:
        return evaluate_split(encoder, valid, "valid/", protocols=False)[0]

    loop_cfg = LoopConfig(
        epochs=p.epochs, batch_size=p.batch_size, lr=p.lr, weight_decay=p.weight_decay, patience=p.patience,
        valid_metric=f"valid/{p.valid_metric}", seed=cfg.seed, lr_decay=p.lr_decay, lr_patience=p.lr_patience,
    )
    def on_epoch(history: list[dict]) -> None:
        atomic_write_text(out_dir / "history.json", json.dumps(history, indent=1) + "\n")

    def batches(generator: torch.Generator) -> list[torch.Tensor]:
        if packing:
            return window_batches(window_of, train.lengths, p.batch_size, generator)
        if p.batching == "bucket":
            return length_bucketed_batches(train.lengths, p.batch_size, generator)
        return random_batches(len(train), p.batch_size, generator)

    graph = cuda_graph_plan(cfg, train, window_of, objective, encoder)
    state = fit(encoder, loss_fn, len(train), validate, loop_cfg, out_dir, batches=batches, on_epoch=on_epoch, graph=graph)

    def finish() -> dict:  # rank 0 (or the one process): evaluate the best epoch, write the model folder
        encoder.load_state_dict(read_weights(out_dir / "best.pt"))
        encoder.eval()
        metrics = {
            **evaluate_split(encoder, valid, "valid/")[0],
            **evaluate_split(encoder, InstanceTensors(ds.splits["test"]), "test/")[0],
            "eval.mask_history": cfg.eval.mask_history,
        }
        shutil.copyfile(out_dir / "best.pt", out_dir / "encoder.pt")
        manifest = {
            "kind": "encoder",
            "encoder": encoder_spec(cfg.model.backbone, ds.n_items, cfg.data.max_len, n_extra, cfg.model),
            "encoder_sha256": file_sha256(out_dir / "encoder.pt"),
            "dataset_fingerprint": ds.fingerprint,
            "n_parameters": sum(p.numel() for p in encoder.parameters()),
        }
        return write_model_folder(out_dir, manifest, metrics, state)

    return distributed.on_main(finish)
