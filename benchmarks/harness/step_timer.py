"""Training-step time without a device sync per step.

A CUDA call returns at launch, so timing a step on the host needs a sync after it, and a sync per
step stalls the pipeline it measures. On CUDA each step is bracketed by a pair of events instead,
and the events are read at `collect`, once per evaluation (which syncs anyway). Elsewhere the
host clock is exact: CPU kernels return finished (MPS synchronises per step, as before).
Only the bracketed region counts: batching and evaluation stay outside `train_s`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from benchmarks.timing.devices import synchronize


class StepTimer:
    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self.host_s = 0.0

    @contextmanager
    def step(self) -> Iterator[None]:
        """Time the enclosed training step."""
        if self.device.type == "cuda":
            start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
            start.record()
            yield
            end.record()
            self.events.append((start, end))
            return
        t0 = time.perf_counter()
        yield
        synchronize(self.device)
        self.host_s += time.perf_counter() - t0

    def collect(self) -> float:
        """Seconds of the steps timed since the last collect (waits for CUDA to finish them)."""
        if self.events:
            self.events[-1][1].synchronize()
        seconds = self.host_s + sum(a.elapsed_time(b) for a, b in self.events) / 1000.0
        self.events, self.host_s = [], 0.0
        return seconds


def warm_up(model: torch.nn.Module, loss_of: Callable[[torch.nn.Module], Tensor]) -> None:
    """One untimed forward and backward (`loss_of(module)`) on a throwaway copy of `model`, so
    that CUDA's lazy set-up (cuBLAS and cuDNN handles, kernel selection) is not billed to the
    first timed step of every run (train.py calls this on CUDA only). The random state is
    forked: the real run draws exactly what it would have drawn without this, and its weights
    and optimiser are untouched."""
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        clone = copy.deepcopy(model).train()
        for rnn in (m for m in clone.modules() if isinstance(m, torch.nn.RNNBase)):
            rnn.flatten_parameters()  # a deep copy leaves cuDNN's weights un-fused (a warning)
        loss_of(clone).backward()
    del clone
    synchronize(device)
