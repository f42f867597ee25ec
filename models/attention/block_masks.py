"""FlexAttention's BlockMasks, built from tile bounds: the causal or full structure (cached per
shape and device) and one whose mask_mod reads a bool mask. Shapes: B,H,T,S.

Every call of `flex` gets a `BlockMask` over 128 x 128 tiles: causal skips the tiles above the
diagonal and runs its mask_mod on diagonal tiles only; without a mask every tile is full (with no
BlockMask at all, CPU flex builds an O(T*S) structure: 2 GiB at T=S=16384). The masks equal
`create_block_mask`'s (tested), which would evaluate the mask_mod on all T*S pairs.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor

SPARSE_BLOCK = 128  # FlexAttention's BlockMask granularity (its default)


def _causal_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
    return kv_idx <= q_idx  # top-left aligned, as torch SDPA


def _tile_lists(tiles: Tensor) -> tuple[Tensor, Tensor]:
    """(nq, nk) bool -> kv_num_blocks (1,1,nq), kv_indices (1,1,nq,nk) int32, listed tiles first."""
    num = tiles.sum(-1).to(torch.int32)  # (nq,)
    idx = tiles.to(torch.int8).sort(dim=-1, descending=True, stable=True).indices.to(torch.int32)
    return num[None, None], idx[None, None]


@functools.cache
@torch.inference_mode(False)
def tile_structure(causal: bool, t: int, s: int) -> tuple[Tensor, Tensor]:
    """(partial, full), each (nq, nk) bool over SPARSE_BLOCK tiles: the tiles attention visits
    that need the mask_mod and those that do not. Built from the tile bounds in O(nq * nk),
    where create_block_mask evaluates a mask_mod on all T*S pairs.

    Cached, so never built as inference tensors (inference_mode off), whatever mode the first
    caller runs in: a later call with gradients saves the block mask for backward, which
    inference tensors refuse (measured on CUDA: every flex forward+backward failed after an
    inference-mode forward had filled the cache)."""
    nq, nk = -(-t // SPARSE_BLOCK), -(-s // SPARSE_BLOCK)
    first = torch.arange(max(nq, nk)) * SPARSE_BLOCK  # first index of each tile
    last_q, last_k = first[:nq] + SPARSE_BLOCK - 1, first[:nk] + SPARSE_BLOCK - 1
    # A ragged last tile holds padding positions, which no mask attends: it is partial.
    inside = (last_q < t)[:, None] & (last_k < s)[None, :]  # (nq, nk)
    if not causal:
        return ~inside, inside
    visited = first[None, :nk] <= last_q.clamp(max=t - 1)[:, None]  # some key j <= some query i
    full = inside & (last_k[None, :] <= first[:nq, None])  # every key j <= every query i
    return visited & ~full, full


@functools.cache
@torch.inference_mode(False)
def structural_block_mask(causal: bool, t: int, s: int, device: torch.device) -> Any:
    """The BlockMask of causal (diagonal tiles partial, lower tiles full) or full attention:
    equal to create_block_mask's (tested), cached per (causal, T, S, device), and like
    `tile_structure` never made of inference tensors."""
    from torch.nn.attention.flex_attention import BlockMask, noop_mask

    partial, full = tile_structure(causal, t, s)
    num, idx = (x.to(device) for x in _tile_lists(partial))
    full_num, full_idx = (x.to(device) for x in _tile_lists(full))
    return BlockMask.from_kv_blocks(
        num, idx, full_num, full_idx, BLOCK_SIZE=SPARSE_BLOCK,
        mask_mod=_causal_mod if causal else noop_mask, seq_lengths=(t, s),
    )  # fmt: skip


def masked_block_mask(attend: Tensor, causal: bool, t: int, s: int) -> Any:
    """A BlockMask whose mask_mod reads `attend` (B|1,H|1,T|1,S) on every visited tile.

    The tiles are those causal (or full) attention visits, all marked partial so that the
    mask_mod runs on each of them; nothing (T, S)-sized is built for a key-padding mask.
    """
    from torch.nn.attention.flex_attention import BlockMask

    full = attend.expand(attend.shape[0], attend.shape[1], t, s)  # a view: stride 0 where 1
    per_batch, per_head = full.shape[0] > 1, full.shape[1] > 1

    def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        ok = full[b if per_batch else 0, h if per_head else 0, q_idx, kv_idx]
        return ok & (kv_idx <= q_idx) if causal else ok

    partial, whole = tile_structure(causal, t, s)
    num, idx = (x.to(attend.device) for x in _tile_lists(partial | whole))
    return BlockMask.from_kv_blocks(
        num, idx, BLOCK_SIZE=SPARSE_BLOCK, mask_mod=mask_mod, seq_lengths=(t, s)
    )


def block_mask_for(
    attend: Tensor | None, causal: bool, t: int, s: int, device: torch.device
) -> Any:
    """The cached causal or full BlockMask, or one whose mask_mod reads `attend`.

    Never None: flex_attention without a block mask builds an O(T*S) structure on CPU
    (measured: 2 GiB at T=S=16384, B=1, H=4) and runs 2x slower than with a full BlockMask.
    """
    if attend is None:
        return structural_block_mask(causal, t, s, device)
    return masked_block_mask(attend, causal, t, s)
