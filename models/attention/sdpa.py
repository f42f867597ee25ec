"""`sdpa`: torch's fused F.scaled_dot_product_attention. Shapes: B, H, T, S, Dh."""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor

from ..registry import register_kernel
from .base import AttentionKernel, combine_masks, explicit_weights


@register_kernel("sdpa")
class SdpaAttention(AttentionKernel):
    """torch's fused F.scaled_dot_product_attention (flash / memory-efficient / math backends).

    On CPU it dispatches to a fused FlashAttention-style kernel for forward and backward. Fused
    kernels never materialise the weights; `need_weights=True` recomputes them explicitly (only
    the plots ask for them, never the timed path).
    """

    color = "C1"

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
        """x = one (B,H,T,Dh) tensor. Forward: the output plus per-thread tiles; backward: also
        the saved logsumexp and dq, dk, dv."""
        x, kv = b * h * t * dh * dtype_bytes, b * h * s * dh * dtype_bytes
        if backward:
            return 2 * x + 2 * kv
        return x + 2 * 2**20

    def forward(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        mask: Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        t, s = q.shape[-2], k.shape[-2]
        if mask is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # (B, H, T, Dh)
        else:
            attend = combine_masks(mask, causal, t, s, q.device)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)  # (B, H, T, Dh)
        scale = 1.0 / math.sqrt(q.shape[-1])
        return out, (explicit_weights(q, k, mask, causal, scale) if need_weights else None)
