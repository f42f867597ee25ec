"""`additive`: MLP alignment (Bahdanau et al. 2015), blocked over queries. Shapes: B,H,T,S,Dh,A.

e_ij = w^T tanh(W_q q_i + W_k k_j) (Bahdanau et al. 2015, §3.1 and App. A.1.2). The (T, S, A)
tanh input is never materialised: `additive_scores` visits blocks of queries, each block's
(rows, S, A) hidden tensor lives in one reused buffer, and its backward recomputes the block's
tanh instead of saving it, so transient memory is O(rows * S * A), not O(T * S * A).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from ..registry import register_kernel
from .base import AttentionKernel, masked_softmax

NEG_INF = float("-inf")
# tanh-input elements per query block (16 MiB in fp32). Measured on the 2-core CPU (1 thread,
# fp32, H=4, Dh=A=64, median of 3 calls of `AdditiveAttention(block_size=rows)`), seconds:
#   rows per block          1      2      4      8     16
#   N=1024, B=4  fwd      0.82   0.80   0.72   0.71   0.74
#                fwd+bwd  2.93   2.80   2.62   2.52   2.47
#   N=256, B=16  fwd      0.20   0.18   0.18
#                fwd+bwd  0.73   0.67   0.64
# Smaller blocks pay per-block overhead; past 4 rows (here 2**22 elements) the gain is <= 6 %
# for a buffer 2-4x larger. At N=256 the half-a-score-matrix cap below picks 2 rows (+5 %).
BLOCK_ELEMENTS = 2**22


def rows_per_block(lead: int, t: int, s: int, a: int, block_size: int | None) -> int:
    """Queries per block: `block_size`, or as many as keep lead*rows*S*A <= BLOCK_ELEMENTS and
    the block at most half a (lead, T, S) score matrix (rows*A <= T/2).

    The half keeps the transient a minor term beside the score matrices the kernel holds anyway,
    and lets the block buffer reuse the heap hole a freed score matrix leaves: under glibc a
    buffer of exactly a score matrix's size cannot (64-byte-aligned allocations need a little
    more than the freed block), so at N=256, B=16 (rows*A = T) forward+backward read 82 MiB
    with glibc's defaults against 64 MiB with freed memory returned; with the half, 64.5 MiB.
    """
    if block_size is not None:
        return block_size
    return max(1, min(BLOCK_ELEMENTS // max(1, lead * s * a), t // (2 * a)))


def _above_diagonal(r: int, c: int, i0: int, device: torch.device) -> Tensor:
    """(r, c) bool, True where key j > query i0 + row (top-left causal)."""
    return torch.ones(r, c, dtype=torch.bool, device=device).triu_(i0 + 1)


class _AdditiveScoresFn(torch.autograd.Function):
    """Blocked e = w . tanh(q_i + k_j); backward recomputes each block's tanh from q, k, w."""

    @staticmethod
    def forward(ctx: Any, q: Tensor, k: Tensor, w: Tensor, causal: bool, rows: int) -> Tensor:
        t, s, a = q.shape[-2], k.shape[-2], q.shape[-1]
        lead = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2])
        scores = q.new_empty(*lead, t, s)  # (..., T, S)
        buf = q.new_empty(lead.numel() * min(rows, t) * s * a)
        for i0 in range(0, t, rows):
            i1 = min(i0 + rows, t)
            stop = min(s, i1) if causal else s  # keys >= i1 are after every query of the block
            hid = buf[: lead.numel() * (i1 - i0) * stop * a].view(*lead, i1 - i0, stop, a)
            torch.add(q[..., i0:i1, None, :], k[..., None, :stop, :], out=hid).tanh_()
            block = scores[..., i0:i1, :]  # (..., r, S)
            block[..., :stop] = torch.matmul(hid, w)  # (..., r, stop)
            if causal:
                block[..., stop:] = NEG_INF
                above = _above_diagonal(i1 - i0, stop, i0, q.device)  # (r, stop)
                block[..., :stop].masked_fill_(above, NEG_INF)
        ctx.causal, ctx.rows = causal, rows
        ctx.save_for_backward(q, k, w)
        return scores

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
        q, k, w = ctx.saved_tensors
        t, s, a = q.shape[-2], k.shape[-2], q.shape[-1]
        lead = g.shape[:-2]
        dq = q.new_zeros(*lead, t, a)  # (..., T, A) summed to q's shape at the end
        dk = k.new_zeros(*lead, s, a)  # (..., S, A)
        dw = torch.zeros_like(w)  # (A,)
        n = lead.numel()
        buf = q.new_empty(n * min(ctx.rows, t) * s * a)
        ones = q.new_ones(1, 1, ctx.rows).expand(n, 1, ctx.rows)  # (n, 1, rows): sums the rows
        for i0 in range(0, t, ctx.rows):
            i1 = min(i0 + ctx.rows, t)
            stop = min(s, i1) if ctx.causal else s
            gb = g[..., i0:i1, :stop]  # (..., r, stop)
            if ctx.causal:  # masked scores are constants: no gradient flows through them
                gb = gb.masked_fill(_above_diagonal(i1 - i0, stop, i0, q.device), 0.0)
            hid = buf[: n * (i1 - i0) * stop * a].view(*lead, i1 - i0, stop, a)
            torch.add(q[..., i0:i1, None, :], k[..., None, :stop, :], out=hid).tanh_()
            dw += torch.matmul(gb.unsqueeze(-2), hid).sum_to_size(1, a).view(a)  # sum g * tanh
            hid.square_().neg_().add_(1.0).mul_(gb.unsqueeze(-1)).mul_(w)  # d hidden (..,r,stop,A)
            dq[..., i0:i1, :] += hid.sum(dim=-2)  # (..., r, A)
            # dk[..., :stop, :] += hid.sum(dim=-3) as one batched GEMV into dk: no (.., S, A)
            # temporary per block (measured: 0.40 against 1.06 ms per block at N=256, rows=2)
            dk_rows = dk[..., :stop, :].view(n, 1, stop * a)  # (n, 1, stop*A), a view of dk
            dk_rows.baddbmm_(ones[..., : i1 - i0], hid.view(n, i1 - i0, stop * a))
        return dq.sum_to_size(q.shape), dk.sum_to_size(k.shape), dw, None, None


def additive_scores(
    q: Tensor, k: Tensor, w: Tensor, causal: bool = False, block_size: int | None = None
) -> Tensor:
    """MLP alignment e_ij = w . tanh(q_i + k_j) on already-projected queries and keys.

    q (..., T, A), k (..., S, A) (leading dims broadcast), w (A,) or (1, A) -> scores (..., T, S).
    With `causal` (top-left) scores of keys j > i are -inf. Queries are visited `block_size` at
    a time (default: blocks of <= BLOCK_ELEMENTS hidden elements); differentiable in q, k, w
    with the same transient memory in backward. Any bias belongs in the key projection.
    """
    w = w.reshape(-1)  # (A,)
    if not q.shape[-1] == k.shape[-1] == w.shape[0]:
        raise ValueError(f"width mismatch: q {tuple(q.shape)}, k {tuple(k.shape)}, w {w.shape[0]}")
    if block_size is not None and block_size < 1:
        raise ValueError(f"block_size must be >= 1 or None; got {block_size}")
    lead = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2]).numel()
    rows = rows_per_block(lead, q.shape[-2], k.shape[-2], w.shape[0], block_size)
    return _AdditiveScoresFn.apply(q, k, w, causal, rows)


@register_kernel("additive")
class AdditiveAttention(AttentionKernel):
    """MLP alignment e_ij = w^T tanh(W_q q_i + W_k k_j) (Bahdanau et al. 2015), softmax, P V.

    W_q, W_k (Dh -> A) and w (A -> 1) are shared across heads. No 1/sqrt(Dh): w learns the logit
    scale. Memory: the (B,H,T,S) scores and weights plus one query block of the tanh input.
    `block_size`: queries per block (None: blocks of <= BLOCK_ELEMENTS hidden elements).
    """

    color = "C3"

    def __init__(
        self, head_dim: int = 64, attn_dim: int | None = None, block_size: int | None = None
    ) -> None:
        super().__init__()
        if block_size is not None and block_size < 1:
            raise ValueError(f"block_size must be >= 1 or None; got {block_size}")
        self.head_dim = head_dim
        self.attn_dim = head_dim if attn_dim is None else attn_dim
        self.block_size = block_size
        self.w_q = nn.Linear(head_dim, self.attn_dim, bias=False)
        self.w_k = nn.Linear(head_dim, self.attn_dim, bias=False)
        self.w = nn.Linear(self.attn_dim, 1, bias=False)

    @classmethod
    def flops(
        cls, b: int, h: int, t: int, s: int, dh: int, causal: bool, backward: bool
    ) -> float | None:
        """None: its cost is the (T, S, A) MLP, not matmuls; it is reported in pairs/s."""
        return None

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
        head_dim: int = 64,
        attn_dim: int | None = None,
        block_size: int | None = None,
    ) -> int:
        """P = one (B,H,T,S) matrix; qp, kp the projected queries (B,H,T,A) and keys (B,H,S,A);
        hid one query block's tanh input (B,H,rows,S,A). Phases (BLAS's workspace left out):
        blocked scores (qp, kp, P, hid); softmax (2 P); with backward also the softmax
        backward (weights, their gradient and the scores' gradient: 3 P, with out and dv) and
        the blocked backward (P, qp, kp, dqp, dkp, hid, out, dv).
        Measured against it: `results/tables/kernel_memory_<device>.md` (`make bench`).
        """
        e, n = dtype_bytes, b * h
        a = head_dim if attn_dim is None else attn_dim
        rows = min(t, rows_per_block(n, t, s, a, block_size))
        p, qp, kp = n * t * s * e, n * t * a * e, n * s * a * e
        hid, x, kv = n * rows * s * (a + 1) * e, n * t * dh * e, n * s * dh * e
        scores = qp + kp + p + hid
        if backward:
            softmax_bwd = 3 * p + qp + kp + x + kv
            blocked_bwd = p + 2 * qp + 2 * kp + hid + x + kv
            return max(scores, 2 * p + qp + kp, softmax_bwd, blocked_bwd)
        return max(scores, 2 * p, p + x)

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
        scores = additive_scores(self.w_q(q), self.w_k(k), self.w.weight, causal, self.block_size)
        weights = masked_softmax(scores, mask)  # (B, H, T, S)
        del scores  # under inference nothing else holds it: freed before the matmul
        out = torch.matmul(weights, v)  # (B, H, T, Dh)
        return out, (weights if need_weights else None)
