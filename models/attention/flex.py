"""`flex`: compiled FlexAttention (torch.nn.attention.flex_attention; Dong et al. 2024, "Flex
Attention: A Programming Model for Generating Optimized Attention Kernels"). Shapes: B,H,T,S,Dh.

`flex_attention` is compiled once per process (inductor, dynamic=False: one specialisation per
shape; dynamic=True fails to compile a mask_mod on CPU in torch 2.13 with a C++ error) and cached.
Every call gets a `BlockMask` from `block_masks.py`: the causal or full tile structure, cached
per (causal, T, S, device), or one whose mask_mod reads a bool mask (key padding (B,1,1,S) or a
general (B|1,H|1,T|1,S)) on every tile the causal (or full) structure visits.

CPU: torch 2.13's FlexAttention has no CPU backward ("FlexAttention does not support backward
on CPU") and returns no logsumexp there, so when gradients are needed the forward output comes
from the compiled kernel and the backward is FlashAttention-2's tiled recompute (`flash.py`),
after one tiled pass that recomputes the logsumexp. On CUDA flex's own backward runs.
Compilation costs seconds per new shape; `compile_seconds` records each first call apart from
the steady state, and `warm_up` compiles a shape ahead of timing.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..registry import register_kernel
from .base import AttentionKernel, as_4d_mask, explicit_weights
from .block_masks import SPARSE_BLOCK, block_mask_for, structural_block_mask
from .chunked import BLOCK_K, BLOCK_Q
from .flash import flash_backward, flash_backward_bytes, flash_forward, flash_forward_bytes, fold

RECOMPILE_LIMIT = 256  # shapes per process; past it dynamo would silently fall back to eager


@functools.cache
def compiled_flex() -> Callable[..., Tensor]:
    """torch.compile(flex_attention), built once per process (the compiled code is cached)."""
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def flex_call(q: Tensor, k: Tensor, v: Tensor, block_mask: Any) -> Tensor:
    """One compiled flex_attention call; a shape past RECOMPILE_LIMIT raises instead of running
    the unfused (T, S)-materialising fallback."""
    limits = dict(recompile_limit=RECOMPILE_LIMIT, fail_on_recompile_limit_hit=True)
    with torch._dynamo.config.patch(**limits):
        return compiled_flex()(q, k, v, block_mask=block_mask)  # (B, H, T, Dh)


@functools.cache
def probe(device_type: str) -> str | None:
    """Why compiled flex_attention cannot run on `device_type`, or None: static checks, then one
    small compiled causal call checked against sdpa (costs one compile, once per process)."""
    try:
        import torch.nn.attention.flex_attention  # noqa: F401
    except ImportError as err:
        return f"torch {torch.__version__} has no flex_attention: {err}"
    if device_type == "cpu":
        try:
            from torch._inductor.cpp_builder import get_cpp_compiler

            get_cpp_compiler()
        except Exception as err:  # inductor raises its own InvalidCxxCompiler
            return f"no C++ compiler for inductor: {_first_line(err)}"
    try:
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(1, 1, SPARSE_BLOCK, 16, generator=g).to(device_type) for _ in "qkv")
        with torch.no_grad():
            causal = structural_block_mask(True, SPARSE_BLOCK, SPARSE_BLOCK, q.device)
            out = flex_call(q, k, v, causal)
            ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    except Exception as err:  # any compile or runtime failure is a reason to skip
        return f"compiled flex_attention fails here: {_first_line(err)}"
    if not torch.allclose(out, ref, rtol=1e-4, atol=1e-5):
        return "compiled flex_attention disagrees with sdpa on a probe call"
    return None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200] if text else ''}"


class _FlexCpuFn(torch.autograd.Function):
    """Compiled flex forward; FlashAttention-2 backward (CPU flex has none in torch 2.13)."""

    @staticmethod
    def forward(
        ctx: Any,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        attend: Tensor | None,
        causal: bool,
        block_mask: Any,
    ) -> Tensor:
        out = flex_call(q.detach(), k.detach(), v.detach(), block_mask)  # (B, H, T, Dh)
        ctx.causal = causal
        ctx.save_for_backward(q, k, v, out, attend)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dout: Tensor) -> tuple[Tensor | None, ...]:
        q, k, v, out, attend = ctx.saved_tensors
        b, h, t, dh = q.shape
        acc = torch.promote_types(q.dtype, torch.float32)
        q3, k3, v3 = fold(q, acc), fold(k, acc), fold(v, acc)
        block, scale = (BLOCK_Q, BLOCK_K), dh**-0.5
        _, lse = flash_forward(q3, k3, None, attend, (b, h), ctx.causal, block, scale)
        grads = flash_backward(
            q3, k3, v3, fold(out, acc), lse, fold(dout, acc), attend, (b, h), ctx.causal,
            block, scale,
        )  # fmt: skip
        dq, dk, dv = (g.view(x.shape).to(x.dtype) for g, x in zip(grads, (q, k, v), strict=True))
        return dq, dk, dv, None, None, None


def _warm_cpu_backward(dh: int, causal: bool) -> None:
    """Run CPU flex's backward (FA-2's tiled recompute, `flash.py`) once on one tiny tile, so
    that its code pages, thread pool and BLAS buffers are in place before a timed or measured
    call, as a small call of the same mode does for the kernels that do not compile (measured
    at N=1024: 2.6 MiB of libtorch code paged in by the first backward, billed to its peak).
    The tile is small: glibc keeps freed blocks, and large ones would serve the measured call."""
    n, block = BLOCK_Q, (BLOCK_Q, BLOCK_K)
    q, k, v, out, dout = (torch.randn(1, n, dh) for _ in range(5))  # (1, N, Dh) each
    _, lse = flash_forward(q, k, None, None, (1, 1), causal, block, dh**-0.5)
    flash_backward(q, k, v, out, lse, dout, None, (1, 1), causal, block, dh**-0.5)


@register_kernel("flex")
class FlexAttention(AttentionKernel):
    """Compiled FlexAttention: causal via a cached BlockMask, any bool mask via a mask_mod.

    A query row with no valid key gives 0 here (FlexAttention's convention), not NaN.
    """

    color = "C4"
    # Seconds of the first call of each (shapes, dtype, device, mask, causal, autograd mode)
    # signature: compilation plus one run, kept apart from steady-state timings. Process-wide,
    # like the compiled code.
    compile_seconds: ClassVar[dict[tuple, float]] = {}

    @classmethod
    def unavailable_reason(cls, device: str | torch.device = "cpu") -> str | None:
        return probe(torch.device(device).type)

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
    ) -> int:
        """For a call after `warm_up` on the same shapes (compilation excluded; BLAS's workspace
        left out, attention/base.py). Forward: the output; the compiled kernel's per-thread
        buffers are negligible. Forward+backward (CPU): the FA-2 backward of `flash.py` with
        chunked's default tiles, after its logsumexp pass (whose buffers are freed first).

        glibc keeps the warm-up's freed blocks and would serve the measured call from them (N=256
        fwd+bwd: 24 MiB measured against 60 fresh), so the measurement runs `malloc_trim(0)`
        first (benchmarks/timing/memory.py). Measured against it:
        `results/tables/kernel_memory_<device>.md` (`make bench`).
        """
        n, block = b * h, (BLOCK_Q, BLOCK_K)
        if backward:
            lse_pass = n * t * dh * dtype_bytes + flash_forward_bytes(n, t, s, dh, block, causal, 4)
            return max(lse_pass, flash_backward_bytes(n, t, s, dh, block, causal, dtype_bytes))
        return n * t * dh * dtype_bytes

    @staticmethod
    def signature(q: Tensor, k: Tensor, attend: Tensor | None, causal: bool, mode: str) -> tuple:
        """What a compiled specialisation depends on (dynamic=False); `mode` is the autograd
        state dynamo guards on: "inference", "no_grad" or "grad" (CUDA only)."""
        mask = None if attend is None else (tuple(attend.shape), attend.stride())
        return (tuple(q.shape), tuple(k.shape), q.dtype, q.device.type, mask, causal, mode)

    def warm_up(
        self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, causal: bool = False
    ) -> float:
        """Compile these shapes now, for inference_mode calls and for no_grad ones (the forward
        of a CPU training step) and, off the CPU, for calls with gradients (flex's own forward
        and backward); returns the first one's seconds (compile + one run)."""
        attend = as_4d_mask(mask, k.shape[-2])
        with torch.inference_mode():
            self(q, k, v, mask=mask, causal=causal)
        with torch.no_grad():
            self(q, k, v, mask=mask, causal=causal)
        if q.device.type != "cpu":
            leaves = [x.detach().requires_grad_() for x in (q, k, v)]
            self(*leaves, mask=mask, causal=causal)[0].sum().backward()
        else:
            _warm_cpu_backward(q.shape[-1], causal)
        return self.compile_seconds[self.signature(q, k, attend, causal, "inference")]

    def forward(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        mask: Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        reason = self.unavailable_reason(q.device)
        if reason is not None:
            raise RuntimeError(f"kernel 'flex' is unavailable here: {reason}")
        t, s = q.shape[-2], k.shape[-2]
        attend = as_4d_mask(mask, s)  # (B|1, H|1, T|1, S) or None
        block_mask = block_mask_for(attend, causal, t, s, q.device)
        cpu = q.device.type == "cpu"
        grad = torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, v))
        inference = torch.is_inference_mode_enabled()
        mode = "inference" if inference else "grad" if grad and not cpu else "no_grad"
        start = time.perf_counter()
        if grad and cpu:
            out = _FlexCpuFn.apply(q, k, v, attend, causal, block_mask)  # (B, H, T, Dh)
        else:  # on CPU always without autograd: one compiled graph serves both
            with torch.no_grad() if cpu else contextlib.nullcontext():
                out = flex_call(q, k, v, block_mask)  # (B, H, T, Dh)
        key = self.signature(q, k, attend, causal, mode)
        self.compile_seconds.setdefault(key, time.perf_counter() - start)
        scale = 1.0 / math.sqrt(q.shape[-1])
        return out, (explicit_weights(q, k, mask, causal, scale) if need_weights else None)
