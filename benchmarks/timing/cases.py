"""Attention-kernel cases: sizes per profile, one case per kernel x N x causal x mode, the FLOP
count, the predicted peak memory, why a case must be skipped, and one synchronised call.

Shapes: B batch, H heads, N sequence length (T = S = N, self-attention), Dh head width.
Following FlashAttention's benchmarks (Dao et al. 2022), tokens per call B*N stay constant across
N, so a kernel's time grows with N only through its N^2 work, and FLOPs are counted as
4*B*H*N^2*Dh forward (halved when causal) and 3.5x that for forward+backward.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

import models  # noqa: F401  (registers every kernel)
from benchmarks.timing.devices import memory_available, memory_capacity, synchronize
from models.errors import ConfigError
from models.registry import create_kernel

Mode = Literal["fwd", "fwd_bwd"]
KERNELS = ("dot", "sdpa", "chunked", "additive")
MODES: tuple[Mode, ...] = ("fwd", "fwd_bwd")
MEMORY_FRACTION = 0.6  # skip a case predicted above this share of RAM / GPU memory
AVAILABLE_FRACTION = 0.8  # ... or above this share of what other processes leave free now


@dataclass(frozen=True)
class Profile:
    """One preset of every size the attention benchmarks sweep."""

    ns: tuple[int, ...]  # kernel sequence lengths N
    tokens: int  # B * N per kernel call, constant across N
    heads: int  # H
    head_dim: int  # Dh
    additive_max_n: int  # additive materialises (B, H, T, S, A): longer N are skipped
    memory_ns: tuple[int, ...]  # N whose peak memory is measured in fresh processes
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
    ns=(128, 256), tokens=512, heads=2, head_dim=16, additive_max_n=128, memory_ns=(128,),
    gemm_n=256, target_s=0.05, min_rounds=2, max_rounds=5, batch=2, d_model=32, vocab=50,
    mem_len=8, decode_ts=(1, 4), decode_total=8, train_ts=(8,),
)  # fmt: skip
DEFAULT = Profile(
    ns=(128, 256, 512, 1024, 2048, 4096), tokens=4096, heads=4, head_dim=64, additive_max_n=128,
    memory_ns=(256, 1024, 4096), gemm_n=2048, target_s=0.4, min_rounds=3, max_rounds=30,
    batch=8, d_model=128, vocab=1000, mem_len=49, decode_ts=(1, 16, 32, 64, 128),
    decode_total=128, train_ts=(16, 32, 64, 128),
)  # fmt: skip
FULL = Profile(
    ns=(128, 256, 512, 1024, 2048, 4096, 8192, 16384), tokens=16384, heads=8, head_dim=64,
    additive_max_n=512, memory_ns=(256, 1024, 4096, 16384), gemm_n=2048, target_s=1.0,
    min_rounds=5, max_rounds=50, batch=16, d_model=256, vocab=5000, mem_len=196,
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


def kernel_cases(profile: Profile, ns: tuple[int, ...] | None = None) -> list[KernelCase]:
    """Every kernel x N x causal x mode at constant tokens per call (B = tokens // N)."""
    return [
        KernelCase(kernel, n, max(1, profile.tokens // n), profile.heads, profile.head_dim, c, m)
        for kernel in KERNELS
        for n in (profile.ns if ns is None else ns)
        for c in (False, True)
        for m in MODES
    ]


def memory_cases(profile: Profile) -> list[KernelCase]:
    """Fewer, representative N for the memory sweep: `memory_ns`, plus additive's capped N.

    Non-causal only: causal masking changes no buffer size (measured within 2 % at N <= 2048).
    """
    additive_ns = {n for n in profile.ns if n <= profile.additive_max_n}
    ns = tuple(sorted(set(profile.memory_ns) | additive_ns))
    return [
        c
        for c in kernel_cases(profile, ns)
        if not c.causal
        if c.n in profile.memory_ns or (c.kernel == "additive" and c.n in additive_ns)
    ]


def attention_flops(case: KernelCase) -> float | None:
    """FlashAttention's count: 4*B*H*N^2*Dh forward, /2 causal, x3.5 fwd+bwd; None for additive."""
    if case.kernel == "additive":
        return None  # its cost is the (B,H,T,S,A) MLP, not matmuls: reported as pairs/s
    flops = 4.0 * case.b * case.h * case.n * case.n * case.dh
    flops *= 0.5 if case.causal else 1.0
    return flops * (3.5 if case.mode == "fwd_bwd" else 1.0)


def query_key_pairs(case: KernelCase) -> int:
    """Scored (query, key) pairs per call, halved when causal like the FLOPs."""
    pairs = case.b * case.h * case.n * case.n
    return pairs // 2 if case.causal else pairs


def input_bytes(case: KernelCase, dtype_bytes: int = 4) -> int:
    """q, k, v (and the output gradient for fwd_bwd): what exists before the call."""
    return (4 if case.mode == "fwd_bwd" else 3) * case.b * case.h * case.n * case.dh * dtype_bytes


def predict_peak_bytes(case: KernelCase, dtype_bytes: int = 4, block_size: int = 256) -> int:
    """Analytic peak of one call above its inputs, fitted to fresh-process measurements (fp32,
    2 threads: within ~15 %, erring high; the memory CSV keeps both for every case).

    x = one (B,H,N,Dh) tensor; s = one (B,H,N,N) score matrix. dot holds 2 s forward (scores and
    weights), 3 s forward+backward; sdpa only its output (and gradients); chunked ~4-6
    (B,H,N,block) blocks; additive its (B,H,N,N,A) tanh input and output (A = Dh, its default).
    """
    b, h, n, dh, e = case.b, case.h, case.n, case.dh, dtype_bytes
    x, s = b * h * n * dh * e, b * h * n * n * e
    bwd = case.mode == "fwd_bwd"
    if case.kernel == "dot":
        return 3 * s + 3 * x if bwd else 2 * s + x
    if case.kernel == "sdpa":
        return 5 * x if bwd else x + 2 * 2**20  # out + per-thread tiles
    if case.kernel == "chunked":
        block = b * h * n * min(block_size, n) * e
        return 6 * block + 9 * x if bwd else 4 * block + 3 * x
    if case.kernel == "additive":
        return 3 * s * dh + 4 * s + 3 * x if bwd else 2 * s * dh + 2 * s + x
    raise ValueError(f"unknown kernel '{case.kernel}'; choose from {list(KERNELS)}")


def skip_reason(
    case: KernelCase, profile: Profile, device: torch.device, dtype_bytes: int
) -> str | None:
    """Why `case` must not run here (the OOM killer cannot be caught), or None."""
    if case.kernel == "additive" and case.n > profile.additive_max_n:
        return f"additive materialises (B,H,T,S,A): N capped at {profile.additive_max_n}"
    need = input_bytes(case, dtype_bytes) + predict_peak_bytes(case, dtype_bytes)
    total, avail = memory_capacity(device), memory_available(device)
    where = "GPU memory" if device.type == "cuda" else "RAM"
    if need > MEMORY_FRACTION * total:
        return f"predicted peak {need / 2**30:.1f} GiB > 60% of {total / 2**30:.1f} GiB {where}"
    if need > AVAILABLE_FRACTION * avail:
        return f"predicted peak {need / 2**30:.1f} GiB > 80% of {avail / 2**30:.1f} GiB free now"
    return None


def build_call(
    case: KernelCase, device: torch.device, dtype: torch.dtype, seed: int
) -> Callable[[], None]:
    """Allocate the inputs of `case` and return one synchronised call of it.

    `fwd` runs under inference_mode (no autograd graph kept: the inference cost); `fwd_bwd`
    backpropagates a fixed random output gradient into fresh q, k, v (and kernel) gradients.
    """
    gen = torch.Generator().manual_seed(seed)
    shape = (case.b, case.h, case.n, case.dh)
    grad = case.mode == "fwd_bwd"
    q, k, v = (torch.randn(shape, generator=gen).to(device, dtype) for _ in range(3))
    q, k, v = (t.requires_grad_(grad) for t in (q, k, v))  # (B, H, N, Dh)
    cfg = {"head_dim": case.dh} if case.kernel == "additive" else {}
    kernel = create_kernel(case.kernel, **cfg).to(device, dtype)
    if not grad:

        def fwd() -> None:
            with torch.inference_mode():
                kernel(q, k, v, causal=case.causal)
            synchronize(device)

        return fwd
    dout = torch.randn(shape, generator=gen).to(device, dtype)  # (B, H, N, Dh)

    def fwd_bwd() -> None:
        q.grad = k.grad = v.grad = None  # fresh gradients, like zero_grad(set_to_none=True)
        kernel.zero_grad(set_to_none=True)
        out, _ = kernel(q, k, v, causal=case.causal)  # (B, H, N, Dh)
        out.backward(dout)
        synchronize(device)

    return fwd_bwd
