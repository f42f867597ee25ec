"""FlashAttention-2's tiled forward and backward in plain PyTorch (Dao 2023, algorithms 1 and 2).

Shapes: N = B*H folded heads, T queries, S keys, Dh head width; bq, bk the query and key block
sizes; a tile is (N, bq, bk). q, k, v arrive folded to (N, T|S, Dh) in an fp32-or-wider dtype;
masks stay (B|1, H|1, T|1, S) and are applied to a tile viewed as (B, H, bq, bk).

Forward: outer loop over query blocks, inner loop over key blocks with a running max m, running
sum l and unnormalised output (online softmax, Milakov & Gimelshein 2018); it returns the output
and the logsumexp lse = m + log l per query row. Backward: the same tiles, each tile's
probabilities recomputed from lse, so nothing (T, S)-sized is saved. Causal (top-left): tiles
entirely above the diagonal are never visited, tiles entirely below it get no mask at all, and
each query block's keys [i0, i1) form one square tile, the only one masked (`key_blocks`).

Memory: one preallocated (N, bq, bk) tile forward, two backward, reused by every block
(in-place exp, subtract, multiply; matmuls write into the buffer with `out=`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .base import as_4d_mask

NEG_INF = float("-inf")
EXP_FLOOR = -80.0  # exp stays on its fast path and in normal floats (see _Tiles)


def key_blocks(i0: int, i1: int, s: int, causal: bool, bk: int) -> Iterator[tuple[int, int, bool]]:
    """Key ranges [j0, j1) that queries [i0, i1) attend, and whether the tile needs a causal mask.

    With `causal`, keys j < i0 are attended by every query of the block: tiles of bk keys, no
    mask; keys [i0, i1) straddle the diagonal: one (bq, bq) tile, masked; keys j >= i1 are after
    every query of the block: skipped. So masks and wasted work are confined to a bq-wide band.
    """
    below = min(i0, s) if causal else s
    for j0 in range(0, below, bk):
        yield j0, min(j0 + bk, below), False
    if causal and below < min(i1, s):
        yield below, min(i1, s), min(i1, s) - 1 > i0  # some key in the tile is after some query


class _Tiles:
    """Reusable per-call buffers (score tiles, a block of scaled queries) and the mask steps.

    Masked scores are -inf so that exp gives exactly 0. But torch's vectorised exp leaves its
    fast path for inputs below about -87 (measured: a tile half -inf takes 5x a finite one), so
    on causal diagonal tiles without a caller mask the masked scores are -inf only for the row
    max; the exponent is then clamped to >= EXP_FLOOR and the masked entries multiplied by 0
    (two cheap passes instead of a slow exp). exp(EXP_FLOOR) is 1.8e-35: attended weights that
    small are below fp32's resolution of the row sum (>= 1), so the clamp changes no result.
    """

    def __init__(self, q: Tensor, bq: int, bk: int, tiles: int) -> None:
        """`bk`: the widest tile, max(bq, bk) when causal (its diagonal tiles are bq x bq)."""
        n, _, dh = q.shape
        self.tiles = [q.new_empty(n * bq * bk) for _ in range(tiles)]
        self.qs = q.new_empty(n * bq * dh)
        self.product = q.new_empty(n * max(bq, bk) * dh) if tiles > 1 else None
        self.causal: dict[tuple[int, int, int], tuple[Tensor, Tensor]] = {}  # by (r, c, i0 - j0)
        self.neg_inf = q.new_full((), NEG_INF)  # torch.where's `other` must be a tensor with out=

    def tile(self, which: int, n: int, r: int, c: int) -> Tensor:
        return self.tiles[which][: n * r * c].view(n, r, c)  # (N, r, c) contiguous

    def scaled_queries(self, q: Tensor, i0: int, i1: int, scale: float) -> Tensor:
        n, _, dh = q.shape
        out = self.qs[: n * (i1 - i0) * dh].view(n, i1 - i0, dh)  # (N, r, Dh)
        return torch.mul(q[:, i0:i1], scale, out=out)

    def accumulate(self, acc: Tensor, a: Tensor, b: Tensor, alpha: float = 1.0) -> None:
        """acc += alpha * a @ b. In-place baddbmm_ on a non-contiguous acc loops over the batch
        in torch (one addmm per head), so such an acc gets the product added instead."""
        if acc.is_contiguous():
            acc.baddbmm_(a, b, alpha=alpha)
            return
        product = self.product[: acc.numel()].view(acc.shape)  # type: ignore[index]
        acc.add_(torch.bmm(a, b, out=product), alpha=alpha)

    def causal_tile(self, x: Tensor, offset: int) -> tuple[Tensor, Tensor]:
        """(bias, keep), each (r, c): 0 / -inf and 1 / 0 for keys after the query (j0+b > i0+a)."""
        key = (*x.shape[1:], offset)
        if key not in self.causal:
            above = torch.ones(*key[:2], dtype=torch.bool, device=x.device).triu_(offset + 1)
            bias = torch.zeros(*key[:2], dtype=x.dtype, device=x.device)
            bias.masked_fill_(above, NEG_INF)
            self.causal[key] = bias, (~above).to(x.dtype)
        return self.causal[key]

    def mask(self, x: Tensor, attend: Tensor | None, bh: tuple[int, int], i0: int, j0: int,
             diag: bool) -> None:  # fmt: skip
        """-inf in tile x (N, r, c) of queries i0.., keys j0.. where not attended, in place."""
        n, r, c = x.shape
        if attend is not None:
            rows = slice(i0, i0 + r) if attend.shape[-2] > 1 else slice(None)
            x4 = x.view(*bh, r, c)  # (B, H, r, c)
            torch.where(attend[..., rows, j0 : j0 + c], x4, self.neg_inf, out=x4)
        if diag:
            x.add_(self.causal_tile(x, i0 - j0)[0])

    def exp_(self, x: Tensor, exact: bool, i0: int, j0: int, diag: bool) -> Tensor:
        """exp of the shifted scores x (<= 0 where attended) in place, exactly 0 where masked.

        `exact`: a caller mask is present, so -inf must stay -inf (no clamp).
        """
        if not diag or exact:
            return x.exp_()
        keep = self.causal_tile(x, i0 - j0)[1]
        return x.clamp_(EXP_FLOOR, 0.0).exp_().mul_(keep)


def flash_forward(
    q: Tensor,
    k: Tensor,
    v: Tensor | None,
    attend: Tensor | None,
    bh: tuple[int, int],
    causal: bool,
    block: tuple[int, int],
    scale: float,
) -> tuple[Tensor | None, Tensor]:
    """q (N,T,Dh), k, v (N,S,Dh) -> out (N,T,Dh) (None when v is None), lse (N,T).

    `attend` (B|1, H|1, T|1, S) bool or None; `bh` = (B, H) with B*H = N.
    """
    n, t, dh = q.shape
    bq, bk = min(block[0], t), min(block[1], k.shape[1])
    bufs = _Tiles(q, bq, max(bk, bq) if causal else bk, tiles=1)
    out = None if v is None else torch.empty_like(q)  # (N, T, Dh)
    lse = q.new_empty(n, t)  # (N, T)
    acc = None if v is None else q.new_empty(n * bq * dh)
    # With a mask a row can have seen no attended key yet (m = -inf): shift it by 0, not -inf.
    guard = attend is not None
    for i0 in range(0, t, bq):
        i1 = min(i0 + bq, t)
        r = i1 - i0
        qs = bufs.scaled_queries(q, i0, i1, scale)  # (N, r, Dh) q / sqrt(Dh)
        m = q.new_full((n, r, 1), NEG_INF)  # (N, r, 1) running max
        l = q.new_zeros(n, r, 1)  # (N, r, 1) running sum of exp(score - m)
        o = None if acc is None else acc[: n * r * dh].view(n, r, dh).zero_()  # (N, r, Dh)
        for j0, j1, diag in key_blocks(i0, i1, k.shape[1], causal, bk):
            x = torch.bmm(qs, k[:, j0:j1].transpose(1, 2), out=bufs.tile(0, n, r, j1 - j0))
            bufs.mask(x, attend, bh, i0, j0, diag)  # (N, r, c) scores
            m_new = torch.maximum(m, x.amax(dim=-1, keepdim=True))  # (N, r, 1)
            shift = m_new.masked_fill(m_new == NEG_INF, 0.0) if guard else m_new
            bufs.exp_(x.sub_(shift), guard, i0, j0, diag)  # (N, r, c) unnormalised probabilities
            alpha = (m - shift).exp_()  # (N, r, 1) rescales what was summed under the old max
            l.mul_(alpha).add_(x.sum(dim=-1, keepdim=True))
            if o is not None:
                o.mul_(alpha).baddbmm_(x, v[:, j0:j1])  # (N, r, Dh)
            m = m_new
        if out is not None:
            torch.div(o, l, out=out[:, i0:i1])
        lse[:, i0:i1] = (m + l.log()).squeeze(-1)  # log sum_j exp(score_ij)
    return out, lse


def flash_backward(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    out: Tensor,
    lse: Tensor,
    dout: Tensor,
    attend: Tensor | None,
    bh: tuple[int, int],
    causal: bool,
    block: tuple[int, int],
    scale: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """FlashAttention-2 algorithm 2: (N,T|S,Dh) inputs, lse (N,T) -> dq, dk, dv.

    The loop runs query blocks outer, like the forward, so both passes share `key_blocks`; FA-2
    puts key blocks outer to avoid atomic dK/dV updates across GPU thread blocks, which a
    sequential loop does not need.
    """
    n, t, dh = q.shape
    s = k.shape[1]
    bq, bk = min(block[0], t), min(block[1], s)
    bufs = _Tiles(q, bq, max(bk, bq) if causal else bk, tiles=2)
    delta = q.new_empty(n, t, 1)  # (N, T, 1) D_i = rowsum(dO_i * O_i)
    for i0 in range(0, t, bq):
        torch.sum(dout[:, i0 : i0 + bq] * out[:, i0 : i0 + bq], dim=-1, keepdim=True,
                  out=delta[:, i0 : i0 + bq])  # fmt: skip
    lse = lse.unsqueeze(-1)  # (N, T, 1)
    dq, dk, dv = torch.empty_like(q), torch.zeros_like(k), torch.zeros_like(v)
    dq_acc = q.new_empty(n * bq * dh)  # dQ_i accumulator: contiguous, so baddbmm_ adds in place
    for i0 in range(0, t, bq):
        i1 = min(i0 + bq, t)
        r = i1 - i0
        qs = bufs.scaled_queries(q, i0, i1, scale)  # (N, r, Dh)
        do_i = dout[:, i0:i1]  # (N, r, Dh)
        dq_i = dq_acc[: n * r * dh].view(n, r, dh).zero_()  # (N, r, Dh)
        for j0, j1, diag in key_blocks(i0, i1, s, causal, bk):
            kb, vb = k[:, j0:j1], v[:, j0:j1]  # (N, c, Dh)
            p = torch.bmm(qs, kb.transpose(1, 2), out=bufs.tile(0, n, r, j1 - j0))  # (N, r, c)
            if attend is not None:  # causal diagonal tiles without a caller mask: see _Tiles.exp_
                bufs.mask(p, attend, bh, i0, j0, diag)
            bufs.exp_(p.sub_(lse[:, i0:i1]), attend is not None, i0, j0, diag)  # probabilities
            bufs.accumulate(dv[:, j0:j1], p.transpose(1, 2), do_i)  # dV_j += P^T dO_i
            ds = torch.bmm(do_i, vb.transpose(1, 2), out=bufs.tile(1, n, r, j1 - j0))  # dP
            ds.sub_(delta[:, i0:i1]).mul_(p)  # dS = P * (dP - D): the softmax Jacobian
            dq_i.baddbmm_(ds, kb, alpha=scale)  # dQ_i += scale dS K_j
            bufs.accumulate(dk[:, j0:j1], ds.transpose(1, 2), qs)  # dK_j += dS^T (scale Q_i)
        dq[:, i0:i1] = dq_i
    return dq, dk, dv


def fold(x: Tensor, dtype: torch.dtype) -> Tensor:
    """(B, H, L, Dh) -> (B*H, L, Dh) in `dtype`: a view when x is contiguous and of that dtype."""
    return x.to(dtype).reshape(-1, *x.shape[-2:])


class FlashAttentionFn(torch.autograd.Function):
    """out = softmax(QK^T / sqrt(Dh)) V with FlashAttention-2's tiles, forward and backward.

    Saved for backward: q, k, v, out, lse (B*H, T) and the caller's mask; never a (T, S) tensor.
    Low-precision inputs are upcast once and every tile is computed in fp32, with autocast off
    in both passes: under autocast the tiles' matmuls would otherwise come back in bf16 (forward)
    and the backward would run in whatever autocast state its caller left. This is what
    `torch.amp.custom_fwd`/`custom_bwd` do, for the device type of the inputs rather than one
    fixed at decoration.
    """

    @staticmethod
    def forward(
        ctx: Any,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        mask: Tensor | None,
        causal: bool,
        block: tuple[int, int],
    ) -> Tensor:
        b, h, t, dh = q.shape
        acc = torch.promote_types(q.dtype, torch.float32)
        attend = as_4d_mask(mask, k.shape[-2])  # (B|1, H|1, T|1, S)
        scale = dh**-0.5
        with torch.autocast(q.device.type, enabled=False):
            out, lse = flash_forward(
                fold(q, acc), fold(k, acc), fold(v, acc), attend, (b, h), causal, block, scale
            )
        out = out.view(b, h, t, dh).to(q.dtype)  # (B, H, T, Dh)
        ctx.causal, ctx.block, ctx.scale = causal, block, scale
        ctx.save_for_backward(q, k, v, out, lse, attend)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dout: Tensor) -> tuple[Tensor | None, ...]:
        q, k, v, out, lse, attend = ctx.saved_tensors
        b, h, t, dh = q.shape
        acc = lse.dtype
        with torch.autocast(q.device.type, enabled=False):
            grads = flash_backward(
                *(fold(x, acc) for x in (q, k, v, out)), lse, fold(dout, acc),
                attend, (b, h), ctx.causal, ctx.block, ctx.scale,
            )  # fmt: skip
        dq, dk, dv = (g.view(x.shape).to(x.dtype) for g, x in zip(grads, (q, k, v), strict=True))
        return dq, dk, dv, None, None, None


def _block(t: int, s: int, block: tuple[int, int], causal: bool) -> tuple[int, int]:
    """(bq, widest tile) as `flash_forward` / `flash_backward` allocate them."""
    bq, bk = min(block[0], t), min(block[1], s)
    return bq, max(bk, bq) if causal else bk


def flash_forward_bytes(
    n: int, t: int, s: int, dh: int, block: tuple[int, int], causal: bool, e: int
) -> int:
    """Bytes `FlashAttentionFn.forward` allocates for N = B*H heads of inputs with `e` bytes per
    element: tile, scaled-query block, accumulator block, out, logsumexp (+ fp32 copies of q, k,
    v and out when e < 4)."""
    bq, bk = _block(t, s, block, causal)
    upcast = n * (t + 2 * s) * dh * 4 + n * t * dh * e if e < 4 else 0
    return n * bq * bk * 4 + 2 * n * bq * dh * 4 + n * t * dh * 4 + n * t * 4 + upcast


def flash_backward_bytes(
    n: int, t: int, s: int, dh: int, block: tuple[int, int], causal: bool, e: int
) -> int:
    """Bytes alive in `flash_backward`: saved out and logsumexp, delta, dq, dk, dv, two tiles,
    the scaled-query block, the dQ_i accumulator, the product buffer and the delta loop's
    product (+ fp32 copies of q, k, v, out, dout and the cast grads when e < 4)."""
    bq, bk = _block(t, s, block, causal)
    x, kv = n * t * dh * 4, n * s * dh * 4
    upcast = 3 * x + 2 * kv + n * (t + 2 * s) * dh * e if e < 4 else 0
    saved = n * t * dh * e + 2 * n * t * 4  # out, logsumexp, delta
    buffers = 2 * n * bq * bk * 4 + 3 * n * bq * dh * 4 + n * max(bq, bk) * dh * 4
    return saved + x + 2 * kv + buffers + upcast
