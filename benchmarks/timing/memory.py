"""Peak memory of one attention call, measured where it means something.

CPU: one case per freshly forked process (VmHWM above the memory held once the inputs exist),
because an allocator's cached pages make in-process numbers meaningless; the forks come from a
clean worker interpreter (`python -m benchmarks.timing.memory --measure-worker`, internal) that
imported torch and ran nothing else. Before the measured call a child runs a small call of the
same kernel (thread pool, small buffers), or, for a kernel that compiles per shape, its `warm_up`
on the case's own inputs (the compiler's memory is not the kernel's), then one small GEMM (BLAS's
workspace), then trims glibc's freed heap (`malloc_trim(0)`). glibc keeps freed blocks
below its (adaptive) mmap threshold for reuse, so the CPU rows come in two allocator regimes:
glibc's defaults, and, at `profile.returned_ns`, with every freed block returned to the OS
(RETURNED_ENV in the worker's environment). CUDA: the caching allocator's own peak counter.
"""

from __future__ import annotations

import ctypes
import gc
import json
import multiprocessing as mp
import os
import subprocess
import sys
from dataclasses import asdict
from typing import Any

import torch

from benchmarks.lifeline import preexec_die_with_parent, set_parent_death_signal
from benchmarks.timing.cases import (
    KernelCase,
    Profile,
    build_call,
    compiles_per_shape,
    kernel_config,
    predict_peak_bytes,
    skip_reason,
)
from benchmarks.timing.devices import (
    REPO_ROOT,
    allocator,
    current_memory,
    git_commit,
    peak_memory_read,
    peak_memory_reset,
    synchronize,
)
from models.errors import one_line

CSV_COLUMNS = (
    "kernel", "n", "b", "h", "dh", "causal", "mode", "allocator", "peak_mem_mb",
    "predicted_mem_mb", "status", "reason", "kernel_cfg", "dtype", "seed", "torch", "device",
    "git_commit",
)  # fmt: skip
# glibc: serve every block >= 64 KiB by mmap (freed = unmapped) and trim the heap on every free,
# so no freed memory is kept for reuse (mallopt(3): M_MMAP_THRESHOLD, M_TRIM_THRESHOLD).
RETURNED_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
RETURNED = "returned"  # the allocator column's suffix for that regime: "glibc-returned"


# (M, K) of the warm-up GEMM's operands: each under 128 KiB in fp32, glibc's initial mmap
# threshold. Freeing a larger (mmapped) block raises glibc's threshold to its size, after which
# the measured call's blocks up to that size come from the heap (measured: sdpa forward+backward
# at N=1024 then peaked at 31.4 MiB instead of 22.1, after a 1024-square warm-up GEMM).
WARM_GEMM = (120, 256)


def warm_blas(device: torch.device, dtype: torch.dtype) -> None:
    """One GEMM, so that BLAS's per-process workspace exists before the baseline is read: MKL
    allocates 2.5-4.4 MiB on the first matmul that is large enough, and what is large enough
    depends on the CPU (measured: any size on one machine, which moved every measured peak by
    4 MiB against another). The memory models leave it out, like the thread pool."""
    a = torch.ones(WARM_GEMM, device=device, dtype=dtype)  # (M, K)
    torch.mm(a, a.t())  # (M, M)


def return_freed_memory() -> None:
    """glibc: hand the heap's freed blocks back to the OS (malloc_trim(0)), so that the measured
    call cannot be served from what the warm-up freed (measured: flex's 16 MiB output at
    N=16384 read as 0 MiB, the warm-up's own output reused). Other allocators: nothing."""
    if allocator() != "glibc":
        return
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc after all (musl has no malloc_trim)
        pass


def measure_one(case: KernelCase, device: torch.device, dtype: torch.dtype, seed: int) -> float:
    """Peak extra MiB of one call over the memory held once inputs exist (run it fresh)."""
    if compiles_per_shape(case.kernel):
        call = build_call(case, device, dtype, seed)
        inputs = (x.detach() for x in call.inputs)  # CPU flex refuses inputs that need grad
        call.kernel.warm_up(*inputs, causal=case.causal)  # compiles these shapes
    else:
        warm = KernelCase(case.kernel, 64, 1, case.h, case.dh, case.causal, case.mode)
        build_call(warm, device, dtype, seed)()  # thread pool and small buffers: not the kernel's
        call = build_call(case, device, dtype, seed)
    warm_blas(device, dtype)
    gc.collect()
    if device.type == "cpu":
        return_freed_memory()
    synchronize(device)
    base = current_memory(device)
    peak_memory_reset(device)
    call()
    peak = peak_memory_read(device)
    if base is None or peak is None:
        raise RuntimeError(f"peak memory is not readable on {device.type} here")
    return max(0, peak - base) / 2**20


Row = tuple[str, float | None, str]  # status, peak MiB, reason


def _child(case: KernelCase, seed: int, conn: Any) -> None:
    """Forked worker: one measurement in a process that has run nothing else."""
    set_parent_death_signal(os.getppid())  # a SIGKILLed worker takes its measuring child along
    try:
        conn.send(("ok", measure_one(case, torch.device("cpu"), torch.float32, seed), ""))
    except Exception as err:  # a row with a status, never a crashed sweep
        conn.send(("error", None, one_line(err, limit=200)))
    conn.close()


def _fork_measure(case: KernelCase, seed: int) -> Row:
    """Fork a child for one case: this process only imported torch, so forking is safe and cheap."""
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(case, seed, child))
    proc.start()
    child.close()
    try:
        result = parent.recv() if parent.poll(timeout=600) else None
    except EOFError:  # the child died before sending (the OOM killer sends SIGKILL)
        result = None
    proc.join(timeout=60)
    if result is None:
        proc.kill()
        code = proc.exitcode
        why = f"killed by signal {-code} (out of memory?)" if code and code < 0 else "no result"
        return "crashed", None, why
    return result


def _measure_worker(seed: int) -> None:
    """`--measure-worker`: cases as JSON on stdin -> one JSON [status, MiB, reason] per line."""
    for fields in json.load(sys.stdin):
        print(json.dumps(_fork_measure(KernelCase(**fields), seed)), flush=True)


def _measure_cpu(
    cases: list[KernelCase], seed: int, env: dict[str, str] | None = None
) -> list[Row]:
    """Measure in a clean worker process that forks one child per case (fresh-process peaks).

    The caller may have run torch code already (its allocator is warm, its OpenMP pool started:
    forking it is unsafe), so a new interpreter imports torch once and forks from there. `env`
    is added to the worker's environment (malloc settings are read when a process starts).
    """
    cmd = [sys.executable, "-m", "benchmarks.timing.memory", "--measure-worker", f"--seed={seed}"]
    payload = json.dumps([asdict(c) for c in cases])
    proc = subprocess.run(
        cmd, input=payload, capture_output=True, text=True, cwd=REPO_ROOT,
        env=None if env is None else os.environ | env, preexec_fn=preexec_die_with_parent(),
    )  # fmt: skip
    lines = proc.stdout.splitlines()
    if proc.returncode != 0 or len(lines) != len(cases):
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"memory worker failed (exit {proc.returncode}): {tail[0]}")
    return [tuple(json.loads(line)) for line in lines]


def _measure_inline(case: KernelCase, device: torch.device, seed: int) -> Row:
    """GPU: the caching allocator's own peak counter is exact, so no subprocess is needed."""
    try:
        return "ok", measure_one(case, device, torch.bfloat16, seed), ""
    except torch.OutOfMemoryError as err:
        return "oom", None, one_line(err, limit=200)
    except Exception as err:  # a row with a status, never a crashed sweep
        return "error", None, one_line(err, limit=200)
    finally:
        gc.collect()
        torch.cuda.empty_cache()


def measure_memory(
    cases: list[KernelCase],
    profile: Profile,
    device: torch.device,
    seed: int = 0,
    env: dict[str, str] | None = None,
    returned: bool = False,
) -> list[dict[str, Any]]:
    """One CSV row per case: peak MiB above the inputs, or a status (skipped|error|crashed|oom).

    `env`: added to the CPU worker's environment. `returned`: measure with freed memory returned
    to the OS (CPU under glibc only; elsewhere there is no such regime and no row).
    """
    if returned and (device.type != "cpu" or allocator() != "glibc"):
        return []
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    ebytes = torch.finfo(dtype).bits // 8
    reasons = [skip_reason(c, profile, device, ebytes) for c in cases]
    todo = [c for c, r in zip(cases, reasons, strict=True) if r is None]
    if device.type == "cpu":
        env = (env or {}) | (RETURNED_ENV if returned else {})
        measured = iter(_measure_cpu(todo, seed, env) if todo else [])
    else:
        measured = iter([_measure_inline(c, device, seed) for c in todo])
    common = dict(dtype=str(dtype).removeprefix("torch."), seed=seed, torch=torch.__version__)
    common.update(device=device.type, git_commit=git_commit())
    name = allocator() if device.type == "cpu" else "cuda-caching"
    rows = []
    for case, reason in zip(cases, reasons, strict=True):
        status, peak, why = ("skipped", None, reason) if reason else next(measured)
        rows.append(
            {**asdict(case), "allocator": f"{name}-{RETURNED}" if returned else name,
             "peak_mem_mb": None if peak is None else round(peak, 1),
             "predicted_mem_mb": round(predict_peak_bytes(case, ebytes) / 2**20, 1),
             "status": status, "reason": why,
             "kernel_cfg": json.dumps(kernel_config(case.kernel, case.dh), sort_keys=True),
             **common}
        )  # fmt: skip
    return rows


if __name__ == "__main__":  # the clean worker interpreter of _measure_cpu, never a user command
    if sys.argv[1:2] != ["--measure-worker"]:
        raise SystemExit("internal: use `python -m benchmarks kernels`")
    _measure_worker(int(sys.argv[2].removeprefix("--seed=")))
