"""`dot`: explicit softmax(QK^T / sqrt(Dh)) V (Vaswani et al. 2017, eq. 1). Shapes: B,H,T,S,Dh."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..registry import register_kernel
from .base import AttentionKernel, combine_masks, masked_softmax


@register_kernel("dot")
class DotAttention(AttentionKernel):
    """Explicit softmax(QK^T / sqrt(Dh)) V, the seed's formulation; materialises (B,H,T,S).

    `scaled=False` drops the 1/sqrt(Dh) for the ablation: logits then grow like sqrt(Dh) and the
    softmax saturates (Vaswani et al. §3.2.1).
    """

    color = "C0"

    def __init__(self, scaled: bool = True) -> None:
        super().__init__()
        self.scaled = scaled

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
        scaled: bool = True,
    ) -> int:
        """P = one (B,H,T,S) score matrix, x = one (B,H,T,Dh) output, kv = one (B,H,S,Dh).

        Forward: the scores and the weights (2 P), then the output; causal adds the masked
        copy (P) and two (T, S) bool masks. Forward+backward: the weights kept for backward,
        their gradient and the scores' gradient at once (3 P), with out, dq, dk, dv.
        BLAS's workspace is left out (attention/base.py). Measured against it:
        `results/tables/kernel_memory_<device>.md` (`make bench`).
        """
        e = dtype_bytes
        p, x, kv = b * h * t * s * e, b * h * t * dh * e, b * h * s * dh * e
        masks = p + 2 * t * s if causal else 0
        if backward:
            return 3 * p + masks + 2 * x + 2 * kv
        return max(2 * p + masks, 2 * p + x)

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
        scale = 1.0 / math.sqrt(q.shape[-1]) if self.scaled else 1.0
        scores = torch.matmul(q, k.transpose(-2, -1)) * scale  # (B, H, T, S)
        weights = masked_softmax(scores, combine_masks(mask, causal, t, s, q.device))  # (B,H,T,S)
        out = torch.matmul(weights, v)  # (B, H, T, Dh)
        return out, (weights if need_weights else None)
