"""Attention kernels behind one signature, selectable by name: one kernel per module.

Shapes: B batch, H heads, T queries, S keys, Dh head width. The contract and the cost model are
in `base.py`. Kernels never check data: a query row with no valid key gives NaN (0/0) in every
kernel but `flex` (0, FlexAttention's convention); refusing such rows is the caller's job (see
models.base.validate_encoder_output).

Kernels: `dot` (explicit, Vaswani et al. 2017), `sdpa` (torch fused), `chunked` (FlashAttention-2
in plain PyTorch, Dao et al. 2022 / Dao 2023), `flex` (compiled FlexAttention), `additive` (MLP
alignment, Bahdanau et al. 2015, blocked over queries).
"""

from .additive import AdditiveAttention, additive_scores
from .base import (
    AttentionKernel,
    as_4d_mask,
    attended_pairs,
    causal_mask,
    combine_masks,
    explicit_weights,
    masked_softmax,
)
from .chunked import ChunkedAttention
from .dot import DotAttention
from .flex import FlexAttention
from .sdpa import SdpaAttention

__all__ = [
    "AdditiveAttention",
    "AttentionKernel",
    "ChunkedAttention",
    "DotAttention",
    "FlexAttention",
    "SdpaAttention",
    "additive_scores",
    "as_4d_mask",
    "attended_pairs",
    "causal_mask",
    "combine_masks",
    "explicit_weights",
    "masked_softmax",
]
