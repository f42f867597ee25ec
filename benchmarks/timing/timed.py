"""One timed benchmark with pytest-benchmark, the same on every device: warm up, size the
rounds to the profile's time budget, record the CUDA peak, time.

CPU kernels return finished, so one call per round is exact. A CUDA call returns at launch, so a
round there is k back-to-back calls ending in one synchronise (k sized to CUDA_ROUND_S) and
pytest-benchmark reports the round divided by k: the per-call time with the pipeline full, not
one launch plus one sync. (CUDA events around the k calls would give the same quantity; the
host clock keeps pytest-benchmark's statistics.) The functions timed never synchronise
themselves.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import Any

import torch

from benchmarks.timing.cases import Profile
from benchmarks.timing.devices import (
    current_memory,
    peak_memory_read,
    peak_memory_reset,
    synchronize,
)

CUDA_WARMUP = 5  # warm-up rounds on CUDA (kernel selection, allocator growth)
CUDA_ROUND_S = 0.01  # CUDA: a timed round is at least this long, in back-to-back calls ...
CUDA_MAX_CALLS = 1000  # ... up to this many


def _estimate(
    fn: Callable[..., Any], setup: Callable[[], tuple] | None, budget_s: float, device: torch.device
) -> float:
    """Seconds per synchronised call: the fastest of up to 3 warm-up calls (one, if a call
    exceeds budget_s). The fastest, because on a shared machine a single call can stall for a
    scheduler slice. On CUDA at least 2: the first call pays the lazy set-up (cuBLAS handles,
    kernel selection; measured: a 13 ms training step sized as if it took over 0.25 s, so it
    was timed in one round)."""
    times: list[float] = []
    least = 2 if device.type == "cuda" else 1
    while len(times) < 3 and (len(times) < least or sum(times) < budget_s):
        args = setup()[0] if setup else ()
        start = time.perf_counter()
        fn(*args)
        synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times)


def cuda_peak_above_baseline(
    fn: Callable[..., Any],
    setup: Callable[[], tuple] | None,
    release: Callable[[], None] | None,
    device: torch.device,
) -> float:
    """MiB one call allocates above what exists before it (its inputs), on CUDA: what the
    kernels' memory models predict. In this order, so that neither side is off: the previous
    call's leftovers are released (`release`: gradients) and the call's own inputs built
    (`setup`) BEFORE the baseline is read and the peak counter reset."""
    if release is not None:
        release()
    args = setup()[0] if setup else ()
    synchronize(device)
    base = current_memory(device)
    peak_memory_reset(device)
    fn(*args)
    synchronize(device)
    return round((peak_memory_read(device) - base) / 2**20, 1)


def calls_per_round(per_call_s: float, device: torch.device, with_setup: bool) -> int:
    """Back-to-back calls per timed round. CUDA: enough for CUDA_ROUND_S, so a round measures
    the kernels and not one launch and one sync; CPU (calls return finished) and cases that
    need a fresh setup per call (pytest-benchmark then allows one call per round): one."""
    if device.type != "cuda" or with_setup:
        return 1
    return max(1, min(CUDA_MAX_CALLS, math.ceil(CUDA_ROUND_S / max(per_call_s, 1e-9))))


def synced_every(fn: Callable[..., Any], calls: int, device: torch.device) -> Callable[..., Any]:
    """`fn`, followed by a device sync on every `calls`-th call: pytest-benchmark runs `calls`
    iterations per round, so each round is `calls` queued calls and one sync at its end, and
    the round time it divides by `calls` is the per-call time with the pipeline kept full."""
    count = 0

    def call(*args: Any) -> None:
        nonlocal count
        fn(*args)
        count += 1
        if count % calls == 0:
            synchronize(device)

    return call


def run_timed(
    benchmark: Any,
    fn: Callable[..., Any],
    device: torch.device,
    profile: Profile,
    setup: Callable[[], tuple] | None = None,
    release: Callable[[], None] | None = None,
) -> float | None:
    """Warm up, size the rounds, record the CUDA peak, time; returns the median seconds per
    call. `fn` does not synchronise: the timing does (`synced_every`).

    Every record keeps the 1-minute load average seen after it: a shared machine's contention
    is then visible next to the number it distorted.
    """
    if benchmark.disabled:  # --benchmark-disable: run once, so the benchmark cannot rot
        benchmark.pedantic(synced_every(fn, 1, device), setup=setup)
        return None
    per_call = _estimate(fn, setup, profile.target_s, device)
    if device.type == "cuda":
        peak = cuda_peak_above_baseline(fn, setup, release, device)
        benchmark.extra_info["peak_mem_mb"] = peak
    calls = calls_per_round(per_call, device, setup is not None)
    wanted = math.ceil(profile.target_s / max(per_call * calls, 1e-9))
    rounds = min(profile.max_rounds, max(profile.min_rounds, wanted))
    warmup = CUDA_WARMUP if device.type == "cuda" else 0
    timed = synced_every(fn, calls, device)
    if calls == 1:
        benchmark.pedantic(timed, setup=setup, rounds=rounds, warmup_rounds=warmup)
    else:
        benchmark.pedantic(timed, rounds=rounds, iterations=calls, warmup_rounds=warmup)
    benchmark.extra_info["calls_per_round"] = calls
    benchmark.extra_info["load_1m"] = round(os.getloadavg()[0], 2)
    return benchmark.stats.stats.median
