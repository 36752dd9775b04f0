"""Device names and their resolution, used once at each edge: a CLI command, a pipeline step, a served
model's load; and the OpenMP wait policy those edges set before torch loads.

Everything below the edge receives the chosen ``torch.device`` as an argument or reads it off its input
tensors. Imports nothing of raserec_core, so ``config`` can validate names against ``DEVICES``.
"""

from __future__ import annotations

import os

DEVICES = ("auto", "cpu", "cuda")  # the names a user may choose
SERVING_ENV = "RASEREC_DEVICE"  # a served model's device (default auto); MLflow gives load_context no other input


def resolve_device(name: str):
    """The torch device for a ``device`` config value: ``auto`` is CUDA when present, else the CPU."""
    import torch

    if name not in DEVICES:
        raise ValueError(f"device: expected one of {', '.join(DEVICES)}, got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but no CUDA device is available")
    return torch.device(name)


def wait_passively() -> None:
    """OpenMP threads sleep, rather than spin, while they wait, unless the environment chooses otherwise.

    A laptop or a shared node is always shared. Threads that spin while a sibling waits for a core turn one
    busy neighbour into a 4x slower training epoch (1.1x when they wait passively, for 74% more time on an
    idle machine; benchmarks/RESULTS.md, "Shared CPU"); on a busy 2-core machine a served single-user
    request on 2 threads took a median 54 ms of CPU spinning, 6 ms waiting passively (in-process CPU time
    of benchmarks/serving_latency.py). OpenMP reads the policy when torch loads it, so each edge calls
    this before importing torch: the CLI (its pipeline steps inherit it) and a served model's load. A
    user's own value wins; an empty one keeps the runtime's default.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def serving_device():
    """The device a served model loads onto: ``$RASEREC_DEVICE``, else ``auto``."""
    return resolve_device(os.environ.get(SERVING_ENV, "auto"))


def worker_device(device, local_rank: int):
    """The device of one data-parallel worker (torchrun): its own GPU, ``cuda:local_rank``, made the
    process's current CUDA device, when the edge chose CUDA; the CPU otherwise."""
    import torch

    if device.type != "cuda":
        return device
    device = torch.device("cuda", local_rank)
    torch.cuda.set_device(device)
    return device


def collective_backend(device) -> str:
    """torch.distributed's backend for workers on ``device``: nccl between GPUs, gloo on the CPU."""
    return "nccl" if device.type == "cuda" else "gloo"


def replays_graphs(device) -> bool:
    """Whether training steps on ``device`` can be captured and replayed as CUDA graphs."""
    return device.type == "cuda"
