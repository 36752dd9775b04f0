"""Data-parallel training over the processes torch's own launcher starts (``torch.distributed.run``,
a.k.a. torchrun, locally or in a Kubeflow Trainer job): gloo on the CPU, nccl on GPUs.

Every rank draws the same global batches from the same seeded batch-order generator that one process
uses; each trains its contiguous shard of every batch (``shard``) through ``DistributedDataParallel``,
which averages the gradients. A shard's loss is weighted by its share of the batch, so the averaged
gradient is that of the global batch's mean loss, as in one process, also when a batch does not split
evenly. Rank 0 validates (the others receive its metrics, so every rank takes the same early-stopping
decision) and writes checkpoints, history and records (``on_main``); every rank resumes from the same
checkpoint.

What is identical to one process and what is not:

- identical (to float tolerance: the gradient sum runs in another order): the batches of every epoch,
  the losses and the weights, for a run that draws no random numbers while training, i.e. dropout off
  and an objective without sampling (``ce`` with the full softmax; stage 2);
- not identical: dropout masks and the objective's draws (sampled negatives, DuoRec partners, CL4SRec
  augmentations). Each rank draws them from its own streams, seeded by (seed, epoch, rank) at the start
  of every epoch, so that ranks do not repeat each other's masks and a resumed run draws what an
  uninterrupted one does without saving every rank's RNG state. The batch-order generator serves the
  batches only, so for a sampling objective the batches after epoch 1 also differ from one process's
  (where the objective's draws advance it);
- contrastive objectives use in-batch negatives of the rank's shard, not of the global batch.

The process group is joined once at the command-line or component edge (``process_group``); below it,
code asks ``world_size()``/``rank()``, and a run outside torchrun is the one-process case.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch

T = TypeVar("T")

# Rank 0 validates and writes while the others wait in a collective; a validation pass over a large
# split outlasts gloo's default 30-minute timeout.
TIMEOUT = datetime.timedelta(hours=2)


def launched() -> bool:
    """True in a process torchrun started for a run of more than one worker."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def world_size() -> int:
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    dist = torch.distributed
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[torch.device]:
    """Join torchrun's process group (if launched by it) for the block; yields this rank's device.

    On CUDA each rank takes the GPU of its ``LOCAL_RANK`` and the group uses nccl; on the CPU, gloo.
    Outside torchrun it yields ``device`` unchanged and joins nothing.
    """
    if not launched():
        yield device
        return
    from ..device import collective_backend, worker_device

    device = worker_device(device, int(os.environ.get("LOCAL_RANK", "0")))
    torch.distributed.init_process_group(collective_backend(device), timeout=TIMEOUT)
    try:
        yield device
    finally:
        torch.distributed.destroy_process_group()


def launch_command(nproc_per_node: int, module: str, args: list[str]) -> list[str]:
    """The command line that runs ``python -m module args`` as ``nproc_per_node`` workers on this machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc_per_node}",
            "-m", module, *args]


def on_main(fn: Callable[[], T]) -> T:
    """``fn()`` run on rank 0 only; every rank returns its result (or raises its exception)."""
    if world_size() == 1:
        return fn()
    box: list[Any] = [None]
    if is_main():
        try:
            box[0] = (True, fn())
        except Exception as exc:  # noqa: BLE001 - re-raised below on every rank, rank 0 included
            box[0] = (False, exc)
    torch.distributed.broadcast_object_list(box, src=0)
    ok, value = box[0]
    if not ok:
        raise value
    return value


def barrier() -> None:
    if world_size() > 1:
        torch.distributed.barrier()


def shard(rows: torch.Tensor) -> tuple[torch.Tensor, float]:
    """This rank's contiguous part of a global batch and the weight of its mean loss (its share times
    the world size, so that DDP's gradient average is the gradient of the global mean loss).

    A rank left without rows (a last batch smaller than the world) computes the loss of the batch's first
    row with weight 0: DDP needs every rank's backward pass, and it adds nothing."""
    world = world_size()
    local = rows.tensor_split(world)[rank()]
    if len(local) == 0:
        return rows[:1], 0.0
    return local, world * len(local) / len(rows)


def seed_rank_streams(seed: int, epoch: int, generator: torch.Generator) -> None:
    """Seed the global RNG (dropout) and ``generator`` (the objective's draws) for this rank's ``epoch``."""
    value = (seed * 1_000_003 + epoch) * 1_009 + rank()
    torch.manual_seed(value)
    generator.manual_seed(value)


class _ShardLoss(torch.nn.Module):
    """The loss of this rank's shard of a batch, as a module's forward so DDP can see it through."""

    def __init__(self, module: torch.nn.Module, loss_fn: Callable):
        super().__init__()
        self.module = module  # registers the parameters the loss uses with DDP
        self.loss_fn = loss_fn

    def forward(self, rows: torch.Tensor, generator: torch.Generator):
        local, weight = shard(rows)
        loss, parts = self.loss_fn(local, generator)
        return loss * weight, {k: v * weight for k, v in parts.items()}


def data_parallel(module: torch.nn.Module, loss_fn: Callable) -> Callable:
    """``loss_fn(rows, generator)`` trained data-parallel: each rank runs its shard of ``rows``, DDP
    averages the gradients in the backward pass. Rank 0's weights are copied to the others here."""
    # device_ids stays None: DDP would otherwise move the batch's row ids onto the GPU, and the rows
    # index CPU tensors; the module's device is taken from its parameters. static_graph: every step
    # uses the same parameters, but not always all of them (the RAM's second channel is idle at β = 1),
    # and a static graph lets DDP learn that once instead of searching the graph every step.
    return torch.nn.parallel.DistributedDataParallel(_ShardLoss(module, loss_fn), static_graph=True)


def global_mean(values: list[float], device: torch.device) -> list[float]:
    """The mean over ranks of each of ``values`` (one collective for all of them)."""
    if world_size() == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return (t / world_size()).tolist()
