"""FlashAttention-2's tiled forward and backward in plain PyTorch (Dao 2023, algorithms 1 and 2).

Shapes: N = B*H folded heads, T queries, S keys, Dh head width; bq, bk the query and key block
sizes; a tile is (N, bq, bk). q, k, v arrive folded to (N, T|S, Dh) in an fp32-or-wider dtype;
masks stay (B|1, H|1, T|1, S) and are applied to a tile viewed as (B, H, bq, bk).

Forward: outer loop over query blocks, inner loop over key blocks with a running max m, running
sum l and unnormalised output (online softmax, Milakov & Gimelshein 2018); it returns the output
and the logsumexp lse = m + log l per query row. Backward: outer loop over key blocks, inner over
query blocks; each tile's probabilities are recomputed from lse, so nothing (T, S)-sized is saved.
Causal (top-left): tiles entirely above the diagonal are never visited, tiles entirely below it
get no mask at all, only tiles that straddle it are masked.

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

    With `causal`, keys j >= i1 are above the diagonal for every query of the block: skipped.
    """
    stop = min(s, i1) if causal else s
    for j0 in range(0, stop, bk):
        j1 = min(j0 + bk, stop)
        yield j0, j1, causal and j1 - 1 > i0  # some key in the tile is after some query


def query_blocks(
    j0: int, j1: int, t: int, causal: bool, bq: int
) -> Iterator[tuple[int, int, int, bool]]:
    """Query ranges [i0, i1) that attend keys [j0, j1), the keys' end for them (with `causal`,
    keys >= i1 are after every query of the block), and whether the tile needs a causal mask."""
    start = (j0 // bq) * bq if causal else 0  # with `causal`, queries i < j0 see none of the keys
    for i0 in range(start, t, bq):
        i1 = min(i0 + bq, t)
        stop = min(j1, i1) if causal else j1
        yield i0, i1, stop, causal and stop - 1 > i0


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
    bufs = _Tiles(q, bq, bk, tiles=1)
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
    """FlashAttention-2 algorithm 2: (N,T|S,Dh) inputs, lse (N,T) -> dq, dk, dv."""
    n, t, dh = q.shape
    s = k.shape[1]
    bq, bk = min(block[0], t), min(block[1], s)
    bufs = _Tiles(q, bq, bk, tiles=2)
    delta = q.new_empty(n, t, 1)  # (N, T, 1) D_i = rowsum(dO_i * O_i)
    for i0 in range(0, t, bq):
        torch.sum(dout[:, i0 : i0 + bq] * out[:, i0 : i0 + bq], dim=-1, keepdim=True,
                  out=delta[:, i0 : i0 + bq])  # fmt: skip
    lse = lse.unsqueeze(-1)  # (N, T, 1)
    dq, dk, dv = torch.zeros_like(q), torch.empty_like(k), torch.empty_like(v)
    kv_acc = q.new_empty(2, n * bk * dh)  # dK_j, dV_j accumulators: contiguous, so no copies
    for j0 in range(0, s, bk):
        j1 = min(j0 + bk, s)
        k_j, v_j = k[:, j0:j1], v[:, j0:j1]  # (N, bk, Dh)
        dk_j, dv_j = (a[: n * (j1 - j0) * dh].view(n, j1 - j0, dh).zero_() for a in kv_acc)
        for i0, i1, stop, diag in query_blocks(j0, j1, t, causal, bq):
            r, c = i1 - i0, stop - j0
            kb, vb = k_j[:, :c], v_j[:, :c]  # (N, c, Dh)
            qs = bufs.scaled_queries(q, i0, i1, scale)  # (N, r, Dh)
            p = torch.bmm(qs, kb.transpose(1, 2), out=bufs.tile(0, n, r, c))  # (N, r, c)
            if attend is not None:  # causal diagonal tiles without a caller mask: see _Tiles.exp_
                bufs.mask(p, attend, bh, i0, j0, diag)
            bufs.exp_(p.sub_(lse[:, i0:i1]), attend is not None, i0, j0, diag)  # probabilities
            do_i = dout[:, i0:i1]  # (N, r, Dh)
            bufs.accumulate(dv_j[:, :c], p.transpose(1, 2), do_i)  # dV_j += P^T dO_i
            ds = torch.bmm(do_i, vb.transpose(1, 2), out=bufs.tile(1, n, r, c))  # dP (N, r, c)
            ds.sub_(delta[:, i0:i1]).mul_(p)  # dS = P * (dP - D): the softmax Jacobian
            bufs.accumulate(dq[:, i0:i1], ds, kb, alpha=scale)  # dQ_i += scale dS K_j
            bufs.accumulate(dk_j[:, :c], ds.transpose(1, 2), qs)  # dK_j += dS^T (scale Q_i)
        dk[:, j0:j1], dv[:, j0:j1] = dk_j, dv_j
    return dq, dk, dv


def fold(x: Tensor, dtype: torch.dtype) -> Tensor:
    """(B, H, L, Dh) -> (B*H, L, Dh) in `dtype`: a view when x is contiguous and of that dtype."""
    return x.to(dtype).reshape(-1, *x.shape[-2:])


class FlashAttentionFn(torch.autograd.Function):
    """out = softmax(QK^T / sqrt(Dh)) V with FlashAttention-2's tiles, forward and backward.

    Saved for backward: q, k, v, out, lse (B*H, T) and the caller's mask; never a (T, S) tensor.
    Low-precision inputs are upcast once and every tile is computed in fp32.
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
        grads = flash_backward(
            *(fold(x, acc) for x in (q, k, v, out)), lse, fold(dout, acc),
            attend, (b, h), ctx.causal, ctx.block, ctx.scale,
        )  # fmt: skip
        dq, dk, dv = (g.view(x.shape).to(x.dtype) for g, x in zip(grads, (q, k, v), strict=True))
        return dq, dk, dv, None, None, None
