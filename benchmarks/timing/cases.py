"""Attention-kernel cases: sizes per profile, one case per kernel x N x causal x mode, and what
the registry says about each (FLOPs, predicted peak memory, why it cannot run), plus one
synchronised call.

Shapes: B batch, H heads, N sequence length (T = S = N, self-attention), Dh head width.
Following FlashAttention's benchmarks (Dao et al. 2022), tokens per call B*N stay constant across
N (B = 1 once N exceeds them), so a kernel's time grows with N only through its N^2 work. Every
kernel, its FLOP count and its memory model come from `models.registry`: a kernel registered
anywhere (a test's toy included) is swept, priced and skipped like the others, with no edit here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch

import models  # noqa: F401  (registers every kernel)
from benchmarks.timing.devices import memory_available, memory_capacity, synchronize
from models.attention.base import attended_pairs
from models.errors import ConfigError
from models.registry import accepted_keys, create_kernel, kernel_class, list_kernels

Mode = Literal["fwd", "fwd_bwd"]
MODES: tuple[Mode, ...] = ("fwd", "fwd_bwd")
MEMORY_FRACTION = 0.6  # skip a case predicted above this share of RAM / GPU memory
AVAILABLE_FRACTION = 0.8  # ... or above this share of what other processes leave free now


@dataclass(frozen=True)
class Profile:
    """One preset of every size the attention benchmarks sweep."""

    ns: tuple[int, ...]  # kernel sequence lengths N
    tokens: int  # B * N per kernel call, constant across N (B >= 1)
    heads: int  # H
    head_dim: int  # Dh
    call_cap_mb: float  # a call predicted to need more MiB (inputs included) is a recorded skip
    causal_bwd_max_n: int  # causal forward+backward is timed up to this N (forward: every N)
    compiled_ns: tuple[int, ...]  # the N of kernels that compile per shape (`warm_up`)
    memory_ns: tuple[int, ...]  # N whose peak memory is measured in fresh processes
    returned_ns: tuple[int, ...]  # ... also with freed memory returned to the OS (allocator)
    gemm_n: int  # square fp32 GEMM for the CPU peak (CUDA: 2x, in bf16)
    target_s: float  # timed seconds per case; rounds = target_s / warm-up call, clamped
    min_rounds: int
    max_rounds: int
    batch: int  # sequences per decode / training step
    d_model: int  # decoder width (= memory width)
    vocab: int
    mem_len: int  # S of the random encoder memory
    decode_ts: tuple[int, ...]  # prefix lengths at which one decode step is timed
    decode_total: int  # T for the time-to-decode-T-tokens record
    train_ts: tuple[int, ...]  # target lengths of the training-step benchmark


QUICK = Profile(
    ns=(128, 256), tokens=512, heads=2, head_dim=16, call_cap_mb=64, causal_bwd_max_n=256,
    compiled_ns=(128,), memory_ns=(128,), returned_ns=(), gemm_n=256, target_s=0.05,
    min_rounds=2, max_rounds=5, batch=2, d_model=32, vocab=50, mem_len=8, decode_ts=(1, 4),
    decode_total=8, train_ts=(8,),
)  # fmt: skip
DEFAULT = Profile(
    ns=(256, 512, 1024, 2048, 4096, 8192, 16384), tokens=4096, heads=4, head_dim=64,
    call_cap_mb=512, causal_bwd_max_n=4096, compiled_ns=(1024, 4096, 16384),
    memory_ns=(256, 1024, 2048, 8192, 16384), returned_ns=(256, 1024), gemm_n=2048,
    target_s=0.25, min_rounds=1, max_rounds=20, batch=8, d_model=128, vocab=1000, mem_len=49,
    decode_ts=(1, 32, 128), decode_total=128, train_ts=(32, 128),
)  # fmt: skip
FULL = Profile(
    ns=(128, 256, 512, 1024, 2048, 4096, 8192, 16384), tokens=16384, heads=8, head_dim=64,
    call_cap_mb=8192, causal_bwd_max_n=16384, compiled_ns=(256, 1024, 4096, 16384),
    memory_ns=(256, 1024, 4096, 16384), returned_ns=(256, 1024, 4096), gemm_n=2048,
    target_s=1.0, min_rounds=5, max_rounds=50, batch=16, d_model=256, vocab=5000, mem_len=196,
    decode_ts=(1, 32, 64, 128, 256, 512), decode_total=512, train_ts=(16, 32, 64, 128, 256),
)  # fmt: skip
PROFILES = {"quick": QUICK, "default": DEFAULT, "full": FULL}


@dataclass(frozen=True)
class KernelCase:
    """One attention call: kernel x shape x causal x mode."""

    kernel: str
    n: int
    b: int
    h: int
    dh: int
    causal: bool
    mode: Mode

    @property
    def id(self) -> str:
        return f"{self.kernel}-n{self.n}-{'causal' if self.causal else 'full'}-{self.mode}"


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise ConfigError(f"unknown profile '{name}'; choose from {list(PROFILES)}")
    return PROFILES[name]


def compiles_per_shape(kernel: str) -> bool:
    """A kernel that compiles each new shape declares `warm_up` (flex): each N costs a compile."""
    return callable(getattr(kernel_class(kernel), "warm_up", None))


def kernel_ns(kernel: str, profile: Profile) -> tuple[int, ...]:
    """The N a kernel is timed at: `ns`, or `compiled_ns` if it compiles each shape."""
    return profile.compiled_ns if compiles_per_shape(kernel) else profile.ns


def kernel_cases(profile: Profile) -> list[KernelCase]:
    """Every registered kernel x N x causal x mode at constant tokens per call (B = tokens // N),
    N-major, so that the kernels compared at one N run minutes apart at most.

    Causal forward+backward stops at `causal_bwd_max_n`: causal forward shows the saving at
    every N, and each causal backward at long N would cost seconds of the time budget.
    """
    return [
        KernelCase(kernel, n, max(1, profile.tokens // n), profile.heads, profile.head_dim, c, m)
        for n in sorted(set(profile.ns) | set(profile.compiled_ns))
        for kernel in list_kernels()
        if n in kernel_ns(kernel, profile)
        for c in (False, True)
        for m in MODES
        if not (c and m == "fwd_bwd" and n > profile.causal_bwd_max_n)
    ]


def memory_cases(profile: Profile, ns: tuple[int, ...] | None = None) -> list[KernelCase]:
    """Every kernel at `ns` (default `memory_ns`), forward and forward+backward, non-causal:
    causal masking changes no buffer size of a full-attention kernel (measured within 2 % at
    N <= 2048). A kernel that compiles per shape is measured at those of `compiled_ns`."""
    ns = profile.memory_ns if ns is None else ns
    return [
        KernelCase(kernel, n, max(1, profile.tokens // n), profile.heads, profile.head_dim,
                   False, m)
        for kernel in list_kernels()
        for n in ns
        if not compiles_per_shape(kernel) or n in profile.compiled_ns
        for m in MODES
    ]  # fmt: skip


def kernel_options(kernel: str, dh: int) -> dict[str, Any]:
    """What a case builds its kernel with: `head_dim` where the constructor takes one."""
    return {"head_dim": dh} if "head_dim" in accepted_keys(kernel_class(kernel)) else {}


def kernel_config(kernel: str, dh: int) -> dict[str, Any]:
    """Every constructor option of the case's kernel, defaults filled in (chunked's block sizes,
    additive's widths): recorded with each result and handed to the kernel's memory model."""
    params = inspect.signature(kernel_class(kernel)).parameters.values()
    defaults = {p.name: p.default for p in params if p.default is not p.empty}
    return defaults | kernel_options(kernel, dh)


def attention_flops(case: KernelCase) -> float | None:
    """The kernel's own FLOP count (FlashAttention's convention); None: not a matmul kernel."""
    return kernel_class(case.kernel).flops(
        case.b, case.h, case.n, case.n, case.dh, case.causal, case.mode == "fwd_bwd"
    )


def query_key_pairs(case: KernelCase) -> float:
    """Scored (query, key) pairs per call, FlashAttention's half when causal, like the FLOPs."""
    return case.b * case.h * attended_pairs(case.n, case.n, case.causal)


def input_bytes(case: KernelCase, dtype_bytes: int = 4) -> int:
    """q, k, v (and the output gradient for fwd_bwd): what exists before the call."""
    return (4 if case.mode == "fwd_bwd" else 3) * case.b * case.h * case.n * case.dh * dtype_bytes


def predict_peak_bytes(case: KernelCase, dtype_bytes: int = 4) -> int:
    """The kernel's memory model: peak bytes of one call above its inputs, in a fresh process."""
    return kernel_class(case.kernel).peak_bytes(
        case.b, case.h, case.n, case.n, case.dh, case.causal, case.mode == "fwd_bwd",
        dtype_bytes, **kernel_config(case.kernel, case.dh),
    )  # fmt: skip


def unavailable_reason(kernel: str, device: torch.device) -> str | None:
    """Why the kernel cannot run on `device` (its own check), or None."""
    check = kernel_class(kernel).unavailable_reason
    takes_device = "device" in inspect.signature(check).parameters
    return check(device.type) if takes_device else check()


def skip_reason(
    case: KernelCase, profile: Profile, device: torch.device, dtype_bytes: int
) -> str | None:
    """Why `case` must not run here, or None: the kernel cannot run on this platform, or its
    predicted peak is above the profile's cap or what this machine can hold (the OOM killer
    cannot be caught)."""
    why = unavailable_reason(case.kernel, device)
    if why is not None:
        return f"{case.kernel} unavailable: {why}"
    need = (input_bytes(case, dtype_bytes) + predict_peak_bytes(case, dtype_bytes)) / 2**20
    total, avail = memory_capacity(device) / 2**20, memory_available(device) / 2**20
    where = "GPU memory" if device.type == "cuda" else "RAM"
    if need > profile.call_cap_mb:
        return (
            f"predicted peak {need:,.0f} MiB > the profile's cap of {profile.call_cap_mb:,.0f} MiB"
        )
    if need > MEMORY_FRACTION * total:
        return f"predicted peak {need / 1024:.1f} GiB > 60% of {total / 1024:.1f} GiB {where}"
    if need > AVAILABLE_FRACTION * avail:
        return f"predicted peak {need / 1024:.1f} GiB > 80% of {avail / 1024:.1f} GiB free now"
    return None


def build_call(
    case: KernelCase, device: torch.device, dtype: torch.dtype, seed: int, sync: bool = True
) -> Callable[[], None]:
    """Allocate the inputs of `case` and return one call of it, synchronised unless `sync` is
    False (the timing then synchronises once per round of back-to-back calls: timed.py).

    `fwd` runs under inference_mode (no autograd graph kept: the inference cost); `fwd_bwd`
    backpropagates a fixed random output gradient into fresh q, k, v (and kernel) gradients.
    The callable's `kernel` and `inputs` attributes let a compiled kernel be warmed up first.
    """
    gen = torch.Generator().manual_seed(seed)
    shape = (case.b, case.h, case.n, case.dh)
    grad = case.mode == "fwd_bwd"
    q, k, v = (torch.randn(shape, generator=gen).to(device, dtype) for _ in range(3))
    q, k, v = (t.requires_grad_(grad) for t in (q, k, v))  # (B, H, N, Dh)
    kernel = create_kernel(case.kernel, **kernel_options(case.kernel, case.dh)).to(device, dtype)
    if not grad:

        def call() -> None:
            with torch.inference_mode():
                kernel(q, k, v, causal=case.causal)
            if sync:
                synchronize(device)

    else:
        dout = torch.randn(shape, generator=gen).to(device, dtype)  # (B, H, N, Dh)

        def call() -> None:
            q.grad = k.grad = v.grad = None  # fresh gradients, like zero_grad(set_to_none=True)
            kernel.zero_grad(set_to_none=True)
            out, _ = kernel(q, k, v, causal=case.causal)  # (B, H, N, Dh)
            out.backward(dout)
            if sync:
                synchronize(device)

    call.kernel, call.inputs = kernel, (q, k, v)  # type: ignore[attr-defined]
    return call
