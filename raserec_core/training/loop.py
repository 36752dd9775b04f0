"""The training loop both stages share: Adam, shuffled batches, validation every epoch, an optional
step-down of the learning rate on a plateau, early stopping, a checkpoint after every epoch, and resume
that ends bit-identical to an uninterrupted run (CPU).

What is checkpointed: weights, optimizer, the batch-order generator, the global RNG (dropout) and the
loop state. Validation runs in eval mode and draws no random numbers, so it cannot shift the stream.

Under torchrun the same loop trains data-parallel (``distributed``): the module is wrapped in
DistributedDataParallel, each rank trains its shard of every batch, rank 0 validates and writes.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..data.sampling import random_batches
from ..device import replays_graphs
from . import distributed
from .cuda_graph import GraphedSteps, GraphPlan
from .resume import load_checkpoint, save_checkpoint, save_weights

log = logging.getLogger("raserec.train")

LossFn = Callable[[torch.Tensor, torch.Generator], tuple[torch.Tensor, dict[str, torch.Tensor]]]


@dataclass(frozen=True)
class LoopConfig:
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    patience: int
    valid_metric: str  # e.g. "valid/mrr@10"; higher is better
    seed: int
    # After every lr_patience epochs without a gain the learning rate is multiplied by lr_decay (1: constant).
    lr_decay: float = 1.0
    lr_patience: int = 2


@dataclass
class LoopState:
    epoch: int = 0  # epochs completed
    best: float = -math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    lr_scale: float = 1.0  # the learning rate is cfg.lr times this (lr_decay steps taken so far)
    stopped: bool = False
    history: list[dict] = field(default_factory=list)


def fit(
    module: torch.nn.Module,
    loss_fn: LossFn,
    n_rows: int,
    validate: Callable[[], dict[str, float]],
    cfg: LoopConfig,
    out_dir: Path,
    batches: Callable[[torch.Generator], list[torch.Tensor]] | None = None,
    params: list[torch.nn.Parameter] | None = None,
    on_epoch: Callable[[list[dict]], None] | None = None,
    graph: GraphPlan | None = None,
) -> LoopState:
    """Train ``module`` until ``cfg.epochs`` or early stop; the best weights go to ``out_dir/best.pt``.

    ``loss_fn(rows, generator)`` computes the loss of a batch of training rows; ``batches(generator)``
    gives an epoch's batches of rows (default: a random permutation cut into ``batch_size`` pieces).
    If ``out_dir`` holds a checkpoint, training resumes from it. With ``graph``, on one CUDA device the
    batches the plan accepts train as a replayed CUDA graph (``cuda_graph``); elsewhere it is ignored.
    """
    from tqdm import tqdm

    out_dir.mkdir(parents=True, exist_ok=True)
    params = [p for p in (params or module.parameters()) if p.requires_grad]
    device = params[0].device
    graphed = graph is not None and replays_graphs(device) and distributed.world_size() == 1
    # The fused kernel is 10x faster than the default per-tensor loop on CPU; capturable keeps its step
    # count on the device, as a CUDA graph needs.
    optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True, capturable=graphed)
    generator = torch.Generator().manual_seed(cfg.seed)
    state = LoopState()
    ckpt_path = out_dir / "checkpoint.pt"
    if ckpt_path.exists():  # every rank loads the one checkpoint rank 0 wrote
        state = LoopState(**load_checkpoint(ckpt_path, module, optimizer, generator))
        log.info("resuming after epoch %d (best %s %.4f at epoch %d)", state.epoch, cfg.valid_metric, state.best, state.best_epoch)
        for group in optimizer.param_groups:  # a checkpoint written by an uncaptured run says otherwise
            group["capturable"] = graphed
    else:
        torch.manual_seed(cfg.seed)
    parallel = distributed.world_size() > 1
    step = distributed.data_parallel(module, loss_fn) if parallel else loss_fn
    # Data-parallel, the batch-order generator serves the batches only (identical on every rank); the
    # objective draws from a per-rank stream (see distributed.py).
    loss_generator = torch.Generator() if parallel else generator
    main = distributed.is_main()
    if batches is None:
        batches = lambda g: random_batches(n_rows, cfg.batch_size, g)
    # A captured step reads the learning rate from device memory, so a graphed run that decays it holds
    # it in a tensor updated in place; elsewhere it stays a float.
    lr_device = device if graphed and cfg.lr_decay < 1.0 else None
    set_lr(optimizer, cfg.lr * state.lr_scale, lr_device)
    graphed_steps = GraphedSteps(graph, params, optimizer, device) if graphed else None
    while not state.stopped and state.epoch < cfg.epochs:
        epoch = state.epoch + 1
        if parallel:
            distributed.seed_rank_streams(cfg.seed, epoch, loss_generator)
        module.train()
        t0 = time.perf_counter()
        epoch_batches = batches(generator)
        n_batches = len(epoch_batches)
        # Summed on the device and read once an epoch: a read per step would make the host wait for the
        # device every step.
        total, parts_sum = torch.zeros((), dtype=torch.float64, device=device), {}
        for rows in tqdm(epoch_batches, desc=f"epoch {epoch}", leave=False, disable=None if main else True, mininterval=2.0):
            out = graphed_steps(rows) if graphed_steps is not None else None
            if out is None:
                loss, parts = step(rows, loss_generator)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            else:
                loss, parts = out
            total += loss.detach()
            for k, v in parts.items():
                parts_sum[k] = parts_sum.get(k, 0.0) + torch.as_tensor(v, dtype=torch.float64)
        total, parts_sum = float(total), {k: float(v) for k, v in parts_sum.items()}
        if parallel:  # each rank's sum holds its weighted shard losses: their mean is the global batch's
            names = sorted(parts_sum)
            total, *sums = distributed.global_mean([total, *(parts_sum[k] for k in names)], params[0].device)
            parts_sum = dict(zip(names, sums))
        train_time = time.perf_counter() - t0
        module.eval()
        t1 = time.perf_counter()
        metrics = distributed.on_main(validate)
        valid_time = time.perf_counter() - t1
        score = metrics[cfg.valid_metric]
        record = {
            "epoch": epoch,
            "lr": cfg.lr * state.lr_scale,
            "loss": total / n_batches,
            **{f"loss_{k}": v / n_batches for k, v in parts_sum.items()},
            "train_time": train_time,
            "valid_time": valid_time,
            **metrics,
        }
        if graphed_steps is not None:
            record["graph_replays"] = graphed_steps.replays  # so far; 0: every step ran eagerly
        state.history.append(record)
        if score > state.best:
            state.best, state.best_epoch, state.bad_epochs = score, epoch, 0
            if main:
                save_weights(module, out_dir / "best.pt")
        else:
            state.bad_epochs += 1
            state.stopped = state.bad_epochs >= cfg.patience
            if cfg.lr_decay < 1.0 and not state.stopped and state.bad_epochs % cfg.lr_patience == 0:
                state.lr_scale *= cfg.lr_decay
                set_lr(optimizer, cfg.lr * state.lr_scale, lr_device)
                log.info("no gain for %d epochs: learning rate now %.3g", state.bad_epochs, cfg.lr * state.lr_scale)
        state.epoch = epoch
        log.info(
            "epoch %d  loss %.4f  train %.1fs  valid %.1fs  %s %.4f  (best %.4f @%d)",
            epoch, record["loss"], train_time, valid_time, cfg.valid_metric, score, state.best, state.best_epoch,
        )
        if main:
            save_checkpoint(ckpt_path, module, optimizer, generator, asdict(state))
            if on_epoch is not None:
                on_epoch(state.history)
        distributed.barrier()  # a rank killed from here on resumes from this epoch's checkpoint
    if on_epoch is not None and main:  # also after a resume that had nothing left to train
        on_epoch(state.history)
    return state


def set_lr(optimizer: torch.optim.Optimizer, lr: float, device: torch.device | None) -> None:
    """Every group's learning rate to ``lr``: a float, or with ``device`` a tensor there, updated in place
    once it is one (a CUDA graph captured the tensor's memory, not its value)."""
    for group in optimizer.param_groups:
        if device is None:
            group["lr"] = lr
        elif isinstance(group["lr"], torch.Tensor) and group["lr"].device == device:
            group["lr"].fill_(lr)
        else:
            group["lr"] = torch.tensor(lr, dtype=torch.float32, device=device)


def write_model_folder(out_dir: Path, manifest: dict, metrics: dict, state: LoopState) -> dict:
    """Finish a training folder: ``model.json`` (``manifest`` plus what the loop knows of the training),
    then ``metrics.json``, whose presence marks a finished run. Returns ``metrics``."""
    import json

    from ..storage import atomic_write_text

    training = {"best_epoch": state.best_epoch, "epochs_run": state.epoch,
                "train_seconds": sum(r["train_time"] for r in state.history)}
    atomic_write_text(out_dir / "model.json", json.dumps({**manifest, **training}, indent=2) + "\n")
    atomic_write_text(out_dir / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics
