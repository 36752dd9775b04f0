"""Stage 2, retrieval-augmented fine-tuning (docs/method.md §4): frozen encoder and item table, only the RAM trains.

The encoder is frozen and runs without dropout, so every query representation and every retrieval is
fixed: both are computed once (``Recommender.precompute``, as the reference's bank is), and an epoch is
RAM forward/backward only. Test queries retrieve from the training memories plus the validation ones,
as the reference code's test setting does (``Recommender.for_test``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, replace
from pathlib import Path

import torch

from ..config import Config
from ..data import SeqDataset
from ..data.batching import InstanceTensors
from ..evaluation.split import evaluate_split, recommender_scores
from ..memory.bank import MemoryBank
from ..models.checkpoint import file_sha256
from ..models.full_softmax import seen_log_odds
from ..models.objectives import next_item_ce
from ..models.seen import calibrate_offset
from ..recommender import Recommender
from ..storage import atomic_write_text
from . import distributed
from .loop import LoopConfig, fit, write_model_folder
from .resume import read_weights, save_weights

log = logging.getLogger("raserec.finetune")


def finetune(ds: SeqDataset, encoder, encoder_manifest: dict, bank: MemoryBank, cfg: Config, out_dir: Path, device) -> dict:
    f = cfg.finetune
    for p in encoder.parameters():
        p.requires_grad_(False)
    encoder.eval()
    torch.manual_seed(cfg.seed)
    rec = Recommender.from_config(cfg, encoder, bank, device)
    ram = rec.ram
    train, valid = InstanceTensors(ds.splits["train"]), InstanceTensors(ds.splits["valid"])
    log.info("encoding and retrieving for %d training and %d validation queries", len(train), len(valid))
    train_q, valid_q = rec.precompute(train, device), rec.precompute(valid, device)
    targets = train.target

    learned = ram.cfg.history_bias == "learned"  # a calibrated offset stays 0 until the RAM is trained

    def loss_fn(rows: torch.Tensor, generator: torch.Generator):
        h, table = rec.fused_rows(train_q, rows, device), rec.encoder.item_table.detach()
        history = train_q.history(rows) if learned else None
        loss = next_item_ce(h, table, targets[rows].to(device), history, rec.seen_offset if learned else None)
        return loss, {"rec": loss.detach()}

    loop_cfg = LoopConfig(
        epochs=f.epochs, batch_size=f.batch_size, lr=f.lr, weight_decay=f.weight_decay, patience=f.patience,
        valid_metric=f"valid/{f.valid_metric}", seed=cfg.seed,
    )

    def on_epoch(history: list[dict]) -> None:
        atomic_write_text(out_dir / "history.json", json.dumps(history, indent=1) + "\n")

    def validate() -> dict[str, float]:
        return evaluate_split(recommender_scores(rec, valid_q, device), valid, "valid/", cfg.eval, protocols=False)[0]

    state = fit(ram, loss_fn, len(train), validate, loop_cfg, out_dir, on_epoch=on_epoch)

    def finish() -> dict:  # rank 0 (or the one process): evaluate the best epoch, write the model folder
        ram.load_state_dict(read_weights(out_dir / "best.pt"))
        ram.eval()
        selection = select_over_encoder(ram, validate, loop_cfg.valid_metric, state.best) if f.encoder_fallback else None
        calibration = calibrate_seen_offset(rec, train_q, targets, device) if ram.cfg.history_bias == "calibrated" else None
        test = InstanceTensors(ds.splits["test"])
        test_rec = rec.for_test(ds, device)
        metrics = {
            **evaluate_split(recommender_scores(rec, valid_q, device), valid, "valid/", cfg.eval)[0],
            **evaluate_split(recommender_scores(test_rec, test_rec.precompute(test, device), device), test, "test/", cfg.eval)[0],
            "eval.mask_history": cfg.eval.mask_history,
        }
        save_weights(ram, out_dir / "ram.pt")  # the best epoch's weights, with a calibrated offset set
        manifest = {
            "kind": "raserec",
            "encoder": encoder_manifest["encoder"],
            "encoder_sha256": encoder_manifest["encoder_sha256"],
            "ram": asdict(ram.cfg),
            "ram_sha256": file_sha256(out_dir / "ram.pt"),
            "retrieval": rec.manifest(),
            "dataset_fingerprint": ds.fingerprint,
            "memory": {"index_type": bank.index.kind, "entries": len(bank)},
            "n_trainable_parameters": sum(p.numel() for p in ram.parameters()),
            "encoder_fallback": selection,
            "seen_offset": rec.seen_offset.item() if rec.seen_offset is not None else None,
            "seen_calibration": calibration,
        }
        return write_model_folder(out_dir, manifest, metrics, state)

    return distributed.on_main(finish)


def select_over_encoder(ram, validate, metric: str, ram_best: float) -> dict:
    """Keep the fine-tuned RAM only if its best validation score beats the encoder alone; otherwise set its
    alpha to 1, which makes h_aug = h exactly, so the model ranks as its encoder does (its seen-item
    offset, if any, kept). Returns the record of the comparison for the manifest (the RAM's configuration,
    alpha included, is saved with it)."""
    trained = ram.cfg
    ram.cfg = replace(trained, alpha=1.0)
    encoder_score = validate()[metric]
    used = encoder_score >= ram_best
    if used:
        log.warning("fine-tuning did not beat the encoder alone on validation (%s %.4f against %.4f): the model "
                    "ranks by the encoder (RAM alpha 1)", metric, ram_best, encoder_score)
    else:
        ram.cfg = trained
    return {"used": used, "metric": metric, "encoder": encoder_score, "ram": ram_best}


@torch.no_grad()
def calibrate_seen_offset(rec: Recommender, train_q, targets: torch.Tensor, device, block: int = 1024) -> dict:
    """Set the RAM's calibrated seen-item offset from the training queries (``models.seen.calibrate_offset``),
    everything else frozen; returns what it was fitted on, for the manifest. Training data only: validation
    selects."""
    table = rec.encoder.item_table.detach()
    log_odds, repeats = [], 0
    for rows in torch.arange(len(targets)).split(block):
        history = train_q.history(rows)
        log_odds.append(seen_log_odds(rec.fused_rows(train_q, rows, device), table, history).cpu())
        repeats += int((history == targets[rows][:, None]).any(1).sum())
    log_odds = torch.cat(log_odds)
    offset = calibrate_offset(log_odds, repeats)
    rec.seen_offset.fill_(offset)
    seen_mass = torch.sigmoid(log_odds.double()).mean().item()
    log.info("calibrated the seen-item offset to %.3f on %d training queries (%d repeat targets; the model put "
             "%.4f of its mass on seen items)", offset, len(log_odds), repeats, seen_mass)
    return {"queries": len(log_odds), "repeat_targets": repeats, "seen_mass": seen_mass}  # the offset: seen_offset
