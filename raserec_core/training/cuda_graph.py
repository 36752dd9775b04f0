"""Training steps replayed as one CUDA graph: forward, backward and the optimizer in a single launch.

On a GPU a stage-1 step of the default model is a few hundred tiny kernels, and launching them from
Python costs more than running them (benchmarks/RESULTS.md, "On a GPU"). A batch whose tensors have one
fixed shape (``GraphPlan.prepare``) is captured once and then replayed: the host copies the next batch
into the captured input buffers and launches the graph, with no synchronisation, so it prepares the
following batch while the device trains. Batches of another shape (an epoch's last, shorter one) and the
first ``warmup`` ones train eagerly, as the docs of ``torch.cuda.graph`` require before a capture. A
capture that fails is logged and the run goes on eagerly (the epoch records' ``graph_replays`` stay 0).

The captured step draws its dropout from the device's generator like an eager one; what it cannot hold
is host-side work, so the plan's loss must read only its device inputs (no ``.item()``, no shape that
depends on values, no CPU generator).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

log = logging.getLogger("raserec.train")

Inputs = dict[str, torch.Tensor]


@dataclass
class GraphPlan:
    """How a training step becomes capturable."""

    prepare: Callable[[torch.Tensor], Inputs | None]  # batch rows -> fixed-shape CPU tensors, None for another shape
    loss: Callable[[Inputs], tuple[torch.Tensor, dict[str, torch.Tensor]]]  # device inputs -> (loss, parts)
    warmup: int = 3  # eager steps on a side stream before the capture


class GraphedSteps:
    """Runs training steps of ``plan``: eagerly until warmed up, then captured and replayed.

    ``__call__(rows)`` trains on one batch and returns ``(loss, parts)`` as device tensors (read them
    once per epoch, not per step), or None when the batch does not fit the plan: the caller trains it
    eagerly.
    """

    def __init__(self, plan: GraphPlan, params: list[torch.nn.Parameter], optimizer: torch.optim.Optimizer,
                 device: torch.device):
        self.plan, self.params, self.optimizer, self.device = plan, params, optimizer, device
        self.steps = 0
        self.replays = 0  # steps trained by the graph, for the epoch records
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: Inputs = {}
        self.out: tuple[torch.Tensor, dict[str, torch.Tensor]] | None = None
        self.grads: list[torch.Tensor] = []
        self.failed = False  # the capture raised: every later step is left to the caller

    def _to_device(self, inputs: Inputs) -> Inputs:
        # Pinned staging (torch's caching host allocator keeps a buffer until its copy is done) lets the
        # copy run asynchronously behind the step in flight.
        return {k: v.pin_memory().to(self.device, non_blocking=True) for k, v in inputs.items()}

    def _eager(self, inputs: Inputs):
        self.optimizer.zero_grad(set_to_none=True)
        loss, parts = self.plan.loss(inputs)
        loss.backward()
        self.optimizer.step()
        return loss.detach(), {k: v.detach() for k, v in parts.items()}

    def _capture(self, inputs: Inputs) -> None:
        self.static = {k: v.clone() for k, v in inputs.items()}
        self.optimizer.zero_grad(set_to_none=True)  # the captured backward writes fresh gradient buffers
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            loss, parts = self.plan.loss(self.static)
            loss.backward()
            self.optimizer.step()
        self.graph = graph
        self.out = (loss.detach(), {k: v.detach() for k, v in parts.items()})
        self.grads = [p.grad for p in self.params]
        log.info("training steps captured as a CUDA graph after %d eager ones", self.steps - 1)

    def __call__(self, rows: torch.Tensor):
        prepared = None if self.failed else self.plan.prepare(rows)
        if prepared is None:
            return None
        inputs = self._to_device(prepared)
        self.steps += 1
        if self.graph is None and self.steps <= self.plan.warmup:
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                out = self._eager(inputs)
            torch.cuda.current_stream(self.device).wait_stream(side)
            return out
        if self.graph is None:
            try:
                self._capture(inputs)  # records the step without running it: the replay below trains on it
            except RuntimeError as e:  # an op the capture cannot hold: the run goes on, eagerly and slower
                log.warning("CUDA graph capture failed, training continues without it: %s", e)
                self.failed = True
                return None
        for p, g in zip(self.params, self.grads):
            p.grad = g  # an eager step in between (a shorter batch) may have replaced them
        for k, v in inputs.items():
            self.static[k].copy_(v, non_blocking=True)
        self.graph.replay()
        self.replays += 1
        loss, parts = self.out
        return loss.clone(), {k: v.clone() for k, v in parts.items()}
