"""The attention-kernel contract, its cost model, and the mask helpers every kernel shares.

Shapes: B batch, H heads, T queries, S keys, Dh head width.
Every kernel is an `AttentionKernel` (an nn.Module) called as
    kernel(q (B,H,T,Dh), k (B,H,S,Dh), v (B,H,S,Dh), mask=None, causal=False, need_weights=False)
        -> (out (B,H,T,Dh), weights (B,H,T,S) | None)
`mask` is bool, broadcastable to (B,H,T,S), True = attend (torch SDPA's convention).
`causal` is top-left aligned like torch SDPA: query i attends keys j <= i.

Beside the call, each kernel class declares what the benchmarks read through the registry
(`models.registry.kernel_class(name)`), so that a new kernel is one file:
  color                 its matplotlib colour in every plot;
  flops(...)            FlashAttention's FLOP count of one call (None: not a matmul kernel);
  peak_bytes(...)       predicted peak bytes of one call above its inputs (q, k, v, and the
                        output gradient when `backward`), for a fresh process;
  unavailable_reason()  why the kernel cannot run on this platform, or None.

Peak memory on CPU is the resident-set high-water mark (VmHWM) of one call in a fresh process
after a small warm-up call (`benchmarks/kernels.py: measure_one`; flex: after `warm_up` on the
same shapes, which compiles them). Each predictor adds up the buffers alive at the call's
busiest moment, in fp32, under glibc's default allocator; the measurements behind each model,
under glibc's defaults and with every freed block returned to the kernel
(`MALLOC_MMAP_THRESHOLD_=65536 MALLOC_TRIM_THRESHOLD_=0`), are in its docstring.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

MiB = 2**20
# The memory models (`peak_bytes`) leave out BLAS's per-process GEMM workspace: MKL allocates
# 2.5-4.4 MiB of it on a process's first matmul that is large enough, and what is large enough
# depends on the CPU (measured: any size on one machine, only large ones on another). The
# measurement warms it up before reading its baseline (benchmarks/timing/memory.py), as cuBLAS's
# workspace is on a GPU.


def causal_mask(t: int, s: int, device: torch.device | None = None) -> Tensor:
    """(T, S) bool, True where key j <= query i (top-left aligned, as torch SDPA)."""
    return torch.ones(t, s, dtype=torch.bool, device=device).tril()


def combine_masks(
    mask: Tensor | None, causal: bool, t: int, s: int, device: torch.device
) -> Tensor | None:
    """One bool attend-mask from a padding/attention mask and the causal switch."""
    if not causal:
        return mask
    tri = causal_mask(t, s, device)  # (T, S)
    return tri if mask is None else mask & tri


def as_4d_mask(mask: Tensor | None, s: int) -> Tensor | None:
    """A mask broadcastable to (B,H,T,S) as a 4-D (B|1, H|1, T|1, S) view (no copy)."""
    if mask is None:
        return None
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be bool (True = attend); got {mask.dtype}")
    mask = mask.reshape((1,) * (4 - mask.dim()) + tuple(mask.shape))  # (B|1, H|1, T|1, S|1)
    return mask.expand(*mask.shape[:-1], s)  # (B|1, H|1, T|1, S) a view if S was 1


def masked_softmax(scores: Tensor, mask: Tensor | None, dim: int = -1) -> Tensor:
    """softmax of `scores` over `dim`, exactly 0 where `mask` (bool, broadcastable) is False.

    exp(-inf) is exactly 0, so masked positions get no weight at all; a row with no attended
    position is NaN (0/0), which callers rule out where their data comes in.
    """
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(dim=dim)


def explicit_weights(
    q: Tensor, k: Tensor, mask: Tensor | None, causal: bool, scale: float
) -> Tensor:
    """softmax(scale * QK^T) over attended keys, (B,H,T,S): only for `need_weights`, never timed."""
    t, s = q.shape[-2], k.shape[-2]
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale  # (B, H, T, S)
    return masked_softmax(scores, combine_masks(mask, causal, t, s, q.device))


def attended_pairs(t: int, s: int, causal: bool) -> float:
    """(query, key) pairs one head scores: T*S, or with `causal` FlashAttention's T*S/2 when
    T = S (its benchmark convention) and the exact top-left count sum_i min(i+1, S) otherwise."""
    if not causal:
        return float(t * s)
    if t == s:
        return t * s / 2
    if t <= s:
        return t * (t + 1) / 2
    return s * (s + 1) / 2 + (t - s) * s


class AttentionKernel(nn.Module):
    """Base of every registered kernel: the call signature plus the cost model benchmarks read."""

    color: ClassVar[str]  # matplotlib colour of this kernel in every plot

    @classmethod
    def flops(
        cls, b: int, h: int, t: int, s: int, dh: int, causal: bool, backward: bool
    ) -> float | None:
        """Nominal FLOPs: FlashAttention's count (Dao et al. 2022, benchmarks), QK^T and PV are
        2*T*S*Dh each, so 4*B*H*T*S*Dh forward, half of it causal; the backward is 2.5x the
        forward (it recomputes the scores), so forward+backward is 3.5x. The same unit for every
        kernel, whatever it executes (dot computes all T*S scores when causal, and its backward
        is 2x): rates are reported as nominal (report/kernels.py, FLOP_ACCOUNTING). None: not a
        matmul kernel (additive)."""
        fwd = 4.0 * b * h * attended_pairs(t, s, causal) * dh
        return fwd * (3.5 if backward else 1.0)

    @classmethod
    def peak_bytes(
        cls,
        b: int,
        h: int,
        t: int,
        s: int,
        dh: int,
        causal: bool,
        backward: bool,
        dtype_bytes: int = 4,
        **cfg: object,
    ) -> int:
        """Predicted peak bytes of one call above q, k, v (and the output gradient when
        `backward`) in a fresh process; `cfg` are the kernel's constructor options."""
        raise NotImplementedError(f"{cls.__name__} has no memory model")

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why this kernel cannot run here (compiler missing, ...), or None when it can."""
        return None

    def forward(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        mask: Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError
