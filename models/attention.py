"""Attention kernels behind one signature, selectable by name for the kernel benchmarks.

Shapes: B batch, H heads, T queries, S keys, Dh head width.
Every kernel is an nn.Module called as
    kernel(q (B,H,T,Dh), k (B,H,S,Dh), v (B,H,S,Dh), mask=None, causal=False, need_weights=False)
        -> (out (B,H,T,Dh), weights (B,H,T,S) | None)
`mask` is bool, broadcastable to (B,H,T,S), True = attend (torch SDPA's convention).
`causal` is top-left aligned like torch SDPA: query i attends keys j <= i.
Kernels never check data: a query row with no valid key gives NaN (0/0) in every kernel, and
refusing such rows is the caller's job (see base.validate_encoder_output).

Kernels: `dot` (explicit, Vaswani et al. 2017), `sdpa` (torch fused), `chunked` (FlashAttention's
online softmax in plain PyTorch, Dao et al. 2022 / Dao 2023), `additive` (MLP alignment,
Bahdanau et al. 2015).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from .registry import register_kernel


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


def explicit_weights(
    q: Tensor, k: Tensor, mask: Tensor | None, causal: bool, scale: float
) -> Tensor:
    """softmax(scale * QK^T) over attended keys, (B,H,T,S): only for `need_weights`, never timed."""
    t, s = q.shape[-2], k.shape[-2]
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale  # (B, H, T, S)
    attend = combine_masks(mask, causal, t, s, q.device)
    if attend is not None:
        scores = scores.masked_fill(~attend, float("-inf"))
    return scores.softmax(dim=-1)


@register_kernel("dot")
class DotAttention(nn.Module):
    """Explicit softmax(QK^T / sqrt(Dh)) V (Vaswani et al. 2017, eq. 1); materialises (B,H,T,S).

    `scaled=False` drops the 1/sqrt(Dh) for the ablation: logits then grow like sqrt(Dh) and the
    softmax saturates (Vaswani et al. §3.2.1).
    """

    def __init__(self, scaled: bool = True) -> None:
        super().__init__()
        self.scaled = scaled

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
        attend = combine_masks(mask, causal, t, s, q.device)
        if attend is not None:
            scores = scores.masked_fill(~attend, float("-inf"))
        weights = scores.softmax(dim=-1)  # (B, H, T, S)
        out = torch.matmul(weights, v)  # (B, H, T, Dh)
        return out, (weights if need_weights else None)


@register_kernel("sdpa")
class SdpaAttention(nn.Module):
    """torch's fused F.scaled_dot_product_attention (flash / memory-efficient / math backends).

    Fused kernels never materialise the weights; `need_weights=True` recomputes them explicitly
    (only the plots ask for them, never the timed path).
    """

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


def _key_blocks(t: int, s: int, causal: bool, block_size: int) -> list[tuple[int, int]]:
    """[j0, j1) key ranges; with `causal`, keys j >= T are never attended, so they are skipped."""
    stop = min(s, t) if causal else s
    return [(j0, min(j0 + block_size, stop)) for j0 in range(0, stop, block_size)]


def _block_scores(
    q: Tensor, kb: Tensor, mask: Tensor | None, causal: bool, j0: int, scale: float
) -> Tensor:
    """scale * q kb^T for keys [j0, j0 + bs), -inf where not attended: (B, H, T, bs)."""
    j1 = j0 + kb.shape[-2]
    scores = torch.matmul(q, kb.transpose(-2, -1)) * scale  # (B, H, T, bs)
    attend = None if mask is None else mask[..., j0:j1]  # (.., T|1, bs)
    if causal:
        rows = torch.arange(q.shape[-2], device=q.device)[:, None]  # (T, 1)
        tri = torch.arange(j0, j1, device=q.device) <= rows  # (T, bs) top-left aligned
        attend = tri if attend is None else attend & tri
    return scores if attend is None else scores.masked_fill(~attend, float("-inf"))


class _ChunkedAttentionFn(torch.autograd.Function):
    """Forward: FlashAttention alg. 1 (online softmax). Backward: FlashAttention-2 alg. 2.

    Saved for backward: q, k, v, out, lse (B,H,T) and the caller's mask; never a (T, S) tensor.
    Everything is computed in at least fp32 (low-precision inputs are upcast once).
    """

    @staticmethod
    def forward(
        ctx: Any,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        mask: Tensor | None,
        causal: bool,
        block_size: int,
    ) -> Tensor:
        dtype = q.dtype
        acc = torch.promote_types(dtype, torch.float32)
        qa, ka, va = q.to(acc), k.to(acc), v.to(acc)
        scale = 1.0 / math.sqrt(q.shape[-1])
        m = torch.full((*q.shape[:-1], 1), float("-inf"), dtype=acc, device=q.device)  # (B,H,T,1)
        l = torch.zeros_like(m)  # (B, H, T, 1) running sum of exp(score - m)
        o = torch.zeros(q.shape, dtype=acc, device=q.device)  # (B, H, T, Dh) unnormalised out
        for j0, j1 in _key_blocks(q.shape[-2], k.shape[-2], causal, block_size):
            scores = _block_scores(qa, ka[..., j0:j1, :], mask, causal, j0, scale)  # (B,H,T,bs)
            m_new = torch.maximum(m, scores.amax(dim=-1, keepdim=True))  # (B, H, T, 1)
            # A row with no attended key yet has m = -inf; shift by 0 so exp(-inf - 0) = 0, not NaN.
            shift = m_new.masked_fill(m_new == float("-inf"), 0.0)  # (B, H, T, 1)
            p = torch.exp(scores - shift)  # (B, H, T, bs)
            alpha = torch.exp(m - shift)  # (B, H, T, 1) rescales what was summed under the old max
            l.mul_(alpha).add_(p.sum(dim=-1, keepdim=True))
            o.mul_(alpha).add_(torch.matmul(p, va[..., j0:j1, :]))  # (B, H, T, Dh)
            m = m_new
        out = (o / l).to(dtype)  # (B, H, T, Dh)
        lse = (m + l.log()).squeeze(-1)  # (B, H, T) log sum_j exp(score_ij)
        ctx.causal, ctx.block_size, ctx.scale = causal, block_size, scale
        ctx.save_for_backward(q, k, v, out, lse, *([] if mask is None else [mask]))
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dout: Tensor) -> tuple[Tensor | None, ...]:
        q, k, v, out, lse, *rest = ctx.saved_tensors
        mask = rest[0] if rest else None
        acc = torch.promote_types(q.dtype, torch.float32)
        qa, ka, va, oa, da = (x.to(acc) for x in (q, k, v, out, dout))
        delta = (da * oa).sum(dim=-1, keepdim=True)  # (B, H, T, 1) D_i = rowsum(dO * O)
        dq, dk, dv = torch.zeros_like(qa), torch.zeros_like(ka), torch.zeros_like(va)
        for j0, j1 in _key_blocks(q.shape[-2], k.shape[-2], ctx.causal, ctx.block_size):
            kb, vb = ka[..., j0:j1, :], va[..., j0:j1, :]  # (B, H, bs, Dh)
            scores = _block_scores(qa, kb, mask, ctx.causal, j0, ctx.scale)  # (B, H, T, bs)
            p = torch.exp(scores - lse.unsqueeze(-1))  # (B, H, T, bs) recomputed probabilities
            dv[..., j0:j1, :] = torch.matmul(p.transpose(-2, -1), da)  # (B, H, bs, Dh)
            dp = torch.matmul(da, vb.transpose(-2, -1))  # (B, H, T, bs)
            ds = p * (dp - delta)  # (B, H, T, bs) softmax Jacobian-vector product
            dq.add_(torch.matmul(ds, kb), alpha=ctx.scale)  # (B, H, T, Dh)
            dk[..., j0:j1, :] = torch.matmul(ds.transpose(-2, -1), qa) * ctx.scale
        return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), None, None, None


@register_kernel("chunked")
class ChunkedAttention(nn.Module):
    """FlashAttention's algorithm in plain PyTorch: memory linear in S, forward and backward.

    Keys are visited in blocks of `block_size` with a running max and running sum (online
    softmax, Milakov & Gimelshein 2018; Dao et al. 2022); the backward recomputes each block's
    probabilities from the saved logsumexp (Dao 2023), so no (T, S) tensor is ever saved.
    Peak transient memory is one (B, H, T, block_size) block. The last block may be shorter.
    A query row with no valid key gives NaN (0/0); refusing such rows is the caller's job.
    """

    def __init__(self, block_size: int = 256) -> None:
        super().__init__()
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1; got {block_size}")
        self.block_size = block_size

    def forward(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        mask: Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        if mask is not None and mask.shape[-1] == 1:
            mask = mask.expand(*mask.shape[:-1], k.shape[-2])  # a view: blocks slice the key dim
        out = _ChunkedAttentionFn.apply(q, k, v, mask, causal, self.block_size)  # (B, H, T, Dh)
        scale = 1.0 / math.sqrt(q.shape[-1])
        return out, (explicit_weights(q, k, mask, causal, scale) if need_weights else None)


@register_kernel("additive")
class AdditiveAttention(nn.Module):
    """MLP alignment e_ij = w^T tanh(W_q q_i + W_k k_j) (Bahdanau et al. 2015, §3.1, App. A.1.2).

    W_q, W_k (Dh -> A) and w (A -> 1) are shared across heads; softmax over keys; out = P V.
    Materialises the (B, H, T, S, A) tanh input: memory grows like T*S*A, so the kernel benchmark
    caps its sequence lengths. No 1/sqrt(Dh): w learns the logit scale.
    """

    def __init__(self, head_dim: int = 64, attn_dim: int | None = None) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.attn_dim = head_dim if attn_dim is None else attn_dim
        self.w_q = nn.Linear(head_dim, self.attn_dim, bias=False)
        self.w_k = nn.Linear(head_dim, self.attn_dim, bias=False)
        self.w = nn.Linear(self.attn_dim, 1, bias=False)

    def forward(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        mask: Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        if q.shape[-1] != self.head_dim or k.shape[-1] != self.head_dim:
            raise ValueError(
                f"additive kernel has head_dim={self.head_dim}; got q {tuple(q.shape)}, "
                f"k {tuple(k.shape)}"
            )
        t, s = q.shape[-2], k.shape[-2]
        hidden = self.w_q(q).unsqueeze(-2) + self.w_k(k).unsqueeze(-3)  # (B, H, T, S, A)
        scores = self.w(torch.tanh(hidden)).squeeze(-1)  # (B, H, T, S)
        attend = combine_masks(mask, causal, t, s, q.device)
        if attend is not None:
            scores = scores.masked_fill(~attend, float("-inf"))
        weights = scores.softmax(dim=-1)  # (B, H, T, S)
        out = torch.matmul(weights, v)  # (B, H, T, Dh)
        return out, (weights if need_weights else None)
