"""The attentional GRU recurrence of `rnn_attn` as one autograd Function, forward and backward.

Shapes: B batch, T steps, S memory positions, D width, A alignment width, G = 3D (GRU gates).

At step t, from h = h_{t-1} (Bahdanau et al. 2015's order: attend, then update; Cho et al. 2014's
GRU with torch's GRUCell gate order r, z, n):
    q, gh = h W_q^T, h W_hh^T + b_hh          one GEMM: [W_q; W_hh] stacked
    e_s   = v . tanh(K_s + q)   (additive)    or   K_s . (scale h)   (dot / general / scaled_dot)
    p     = softmax over valid s;  c = p M    context (B, D)
    gi    = XG_t + c W_ic^T                   XG = the embedding half of W_ih (+ b_ih), made for
                                              all T by one GEMM before the loop
    r, z  = sigmoid(gi_r + gh_r), sigmoid(gi_z + gh_z);  n = tanh(gi_n + r * gh_n)
    h_t   = (1 - z) * n + z * h

Why a Function instead of autograd: under autograd each of the T steps records ~15 small ops and
replays ~30 in backward, and every weight gradient arrives as T small GEMMs. Here the forward
runs without a graph and keeps each step's projections, gate inputs and tanh(K + q); the
backward recomputes the gates of all T steps at once, runs only the truly recurrent chain per
step (d h_{t-1} through the cell and the attention), and forms each weight gradient after the
loop as one GEMM over all B*T rows, as cuDNN's RNN backward does. Memory is what autograd kept:
the (B, S, A) tanh per step. Checked against autograd with gradcheck in float64 (tests).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable


class Workspace:
    """One reusable buffer for the tanh(K + q) of every step, (T, B, S, A) floats.

    Allocating it afresh every training step costs page faults: glibc hands blocks this large
    back to the OS on free, and the next step faults every page in again (most of the cost of
    an elementwise pass over fresh memory). The buffer is lent to one forward and returned by its
    backward; a forward that finds it lent (two graphs alive at once) gets a fresh tensor. Every
    loan bumps `generation`, so a backward run again on a retained graph after another forward
    took the buffer sees that its contents are gone and recomputes them. Not a parameter or
    buffer: it never enters a state_dict.
    """

    def __init__(self) -> None:
        self.buffer: Tensor | None = None
        self.lent = False
        self.generation = 0

    def take(self, shape: tuple[int, ...], like: Tensor, keep: bool) -> tuple[Tensor, int | None]:
        """A tensor of `shape` and the generation of the loan (None: not the shared buffer)."""
        numel = math.prod(shape)
        if not keep or self.lent:
            return like.new_empty(shape), None
        buf = self.buffer
        if (
            buf is None
            or buf.numel() < numel
            or (buf.dtype, buf.device) != (like.dtype, like.device)
        ):
            self.buffer = buf = like.new_empty(numel)
        self.lent, self.generation = True, self.generation + 1
        return buf[:numel].view(shape), self.generation

    def holds(self, generation: int | None) -> bool:
        """Whether a loan's contents are still there (always, for a tensor of its own)."""
        return generation is None or generation == self.generation

    def release(self, generation: int | None) -> None:
        if generation == self.generation:
            self.lent = False


class AttentiveGRUScan(torch.autograd.Function):
    """(xg, keys, memory, mask, h0, w_q, v, w_hh, b_hh, w_ic, scale) -> H, C (B,T,D), P (B,T,S).

    xg (B,T,G): embedding half of the input projection (+ b_ih); keys (B,S,A): precomputed keys
    (dot scorers: A = D, the memory itself or W m); memory (B,S,D); mask (B,S) bool True = real;
    h0 (B,D); w_q (A,D) and v (A,) for the additive scorer, None for the dot scorers (q =
    scale * h); w_hh (G,D), b_hh (G,), w_ic (G,D) the context half of W_ih. Returns hidden states
    H, contexts C and attention weights P.
    """

    @staticmethod
    def forward(
        ctx: Any,
        xg: Tensor,
        keys: Tensor,
        memory: Tensor,
        mask: Tensor,
        h0: Tensor,
        w_q: Tensor | None,
        v: Tensor | None,
        w_hh: Tensor,
        b_hh: Tensor,
        w_ic: Tensor,
        scale: float,
        workspace: Workspace,
    ) -> tuple[Tensor, Tensor, Tensor]:
        b, t_len, g = xg.shape
        s, d = keys.shape[1], h0.shape[1]
        w_h, b_h = _stacked(w_q, w_hh, b_hh)  # (A+G, D), (A+G,)
        a_dim = w_h.shape[0] - g
        keys_t = None if a_dim else keys.transpose(1, 2).contiguous()  # (B, D, S) for a fast bmm
        padded = ~mask  # (B, S)
        hs, cs, ps = (xg.new_empty(t_len, b, n) for n in (d, d, s))  # time-major: rows contiguous
        hp, gi = xg.new_empty(t_len, b, a_dim + g), xg.new_empty(t_len, b, g)  # kept for backward
        # additive: tanh(K + q) of every step, kept for backward (one reused step otherwise)
        keep = any(ctx.needs_input_grad)
        us, ctx.loan = workspace.take((t_len if keep else 1, b, s, a_dim), xg, keep)
        h = h0
        for t in range(t_len):
            torch.addmm(b_h, h, w_h.t(), out=hp[t])  # (B, A+G) [q; gh]
            if a_dim:
                u = torch.add(keys, hp[t, :, None, :a_dim], out=us[t if keep else 0]).tanh_()
                e = torch.matmul(u, v)  # (B, S)
            else:
                e = torch.bmm((h * scale).unsqueeze(1), keys_t).squeeze(1)  # (B, S)
            p = torch.softmax(e.masked_fill_(padded, float("-inf")), dim=-1, out=ps[t])
            c = torch.bmm(p.unsqueeze(1), memory, out=cs[t].unsqueeze(1)).squeeze(1)  # (B, D)
            torch.addmm(xg[:, t], c, w_ic.t(), out=gi[t])  # (B, G)
            r, z, n = _gates(gi[t], hp[t, :, a_dim:], d)
            h = torch.lerp(n, h, z, out=hs[t])  # (1 - z) * n + z * h
        ctx.scale, ctx.us, ctx.workspace = scale, us, workspace
        ctx.save_for_backward(keys, memory, h0, w_q, v, w_hh, b_hh, w_ic, hs, cs, ps, hp, gi)
        return hs.transpose(0, 1), cs.transpose(0, 1), ps.transpose(0, 1)

    @staticmethod
    @once_differentiable
    def backward(
        ctx: Any, d_h: Tensor | None, d_c: Tensor | None, d_p: Tensor | None
    ) -> tuple[Tensor | None, ...]:
        keys, memory, h0, w_q, v, w_hh, b_hh, w_ic, hs, cs, ps, hp, gi = ctx.saved_tensors
        us, scale = ctx.us, ctx.scale
        t_len, b, d = hs.shape
        g = w_hh.shape[0]
        a_dim = hp.shape[2] - g
        w_h, _ = _stacked(w_q, w_hh, b_hh)  # (A+G, D)
        h_prev = torch.cat([h0.unsqueeze(0), hs[:-1]])  # (T, B, D)
        r, z, n = _gates(gi, hp[..., a_dim:], d)  # (T, B, D) each, every step at once
        k_n, k_r, k_z = _gate_coefficients(h_prev, r, z, n, hp[..., -d:])
        memory_t = memory.transpose(1, 2).contiguous()  # (B, D, S) for a fast bmm
        d_hp, d_gi = hp.new_empty(t_len, b, a_dim + g), gi.new_empty(t_len, b, g)
        d_ctx = cs.new_empty(t_len, b, d)  # (T, B, D) total gradient reaching c_t
        d_keys = torch.zeros_like(keys)  # (B, S, A); additive: scaled by v after the loop
        slope = None if v is None else torch.empty_like(keys)  # (B, S, A) one step's tanh'
        ones = None if v is None else torch.ones_like(keys)
        d_v = None if v is None else torch.zeros_like(v)  # (A,)
        fresh = ctx.workspace.holds(ctx.loan)  # else another forward reused the buffer: recompute
        dh = h0.new_zeros(b, d)  # gradient reaching h_t from later steps
        for t in reversed(range(t_len)):
            if d_h is not None:
                dh = dh + d_h[:, t]
            _gate_grads(dh, k_n[t], k_r[t], k_z[t], r[t], d_gi[t], d_hp[t, :, a_dim:])
            dc = torch.mm(d_gi[t], w_ic, out=d_ctx[t])  # (B, D)
            if d_c is not None:
                dc += d_c[:, t]
            da = torch.bmm(dc.unsqueeze(1), memory_t).squeeze(1)  # (B, S) d p
            if d_p is not None:
                da += d_p[:, t]
            p = ps[t]  # (B, S); softmax backward, exactly 0 on padding where p = 0
            de = p * (da - (p * da).sum(-1, keepdim=True))  # (B, S)
            if v is None:  # dot scorers: e = K . (scale h)
                q = h_prev[t] * scale  # (B, D)
                d_keys.baddbmm_(de.unsqueeze(-1), q.unsqueeze(1))  # (B, S, D)
                dq = torch.bmm(de.unsqueeze(1), keys).squeeze(1) * scale  # (B, D)
                dh = torch.addmm(torch.addcmul(dq, dh, z[t]), d_hp[t], w_h)  # d h_{t-1}
                continue
            # additive: e = u v with u = tanh(K + q), so d e / d(K + q) = v (1 - u^2)
            u = us[t] if fresh else torch.add(keys, hp[t, :, None, :a_dim]).tanh_()  # (B, S, A)
            d_v.addmv_(u.view(-1, a_dim).t(), de.view(-1))  # (A,) sum over b, s of de u
            torch.addcmul(ones, u, u, value=-1, out=slope)  # (B, S, A)
            torch.mul(torch.bmm(de.unsqueeze(1), slope).squeeze(1), v, out=d_hp[t, :, :a_dim])
            d_keys.addcmul_(slope, de.unsqueeze(-1))  # (B, S, A) sum_t de (1 - u^2)
            dh = torch.addmm(dh * z[t], d_hp[t], w_h)  # (B, D) d h_{t-1}
        if v is not None:
            d_keys.mul_(v)
        ctx.workspace.release(ctx.loan)
        return _input_grads(ctx, dh, d_hp, d_gi, d_ctx, h_prev, d_keys, d_v)


def _stacked(w_q: Tensor | None, w_hh: Tensor, b_hh: Tensor) -> tuple[Tensor, Tensor]:
    """[W_q; W_hh] (A+G, D) and [0; b_hh]: the query and the hidden gates in one GEMM."""
    if w_q is None:
        return w_hh, b_hh
    return torch.cat([w_q, w_hh]), torch.cat([b_hh.new_zeros(w_q.shape[0]), b_hh])


def _gates(gi: Tensor, gh: Tensor, d: int) -> tuple[Tensor, Tensor, Tensor]:
    """GRU gates from input and hidden projections (..., 3D) -> r, z, n (..., D)."""
    rz = torch.sigmoid(gi[..., : 2 * d] + gh[..., : 2 * d])  # (..., 2D) both gates at once
    r, z = rz[..., :d], rz[..., d:]
    n = torch.addcmul(gi[..., 2 * d :], r, gh[..., 2 * d :]).tanh_()  # (..., D)
    return r, z, n


def _gate_coefficients(
    h_prev: Tensor, r: Tensor, z: Tensor, n: Tensor, gh_n: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """What back-propagation through the cell multiplies dh_t by, for every step at once:
    d an = dh (1 - z)(1 - n^2), d ar = d an * gh_n r (1 - r), d az = dh (h - n) z (1 - z)."""
    k_n = (1 - z) * (1 - n * n)  # (T, B, D)
    k_r = gh_n * r * (1 - r)
    k_z = (h_prev - n) * z * (1 - z)
    return k_n, k_r, k_z


def _gate_grads(
    dh: Tensor, k_n: Tensor, k_r: Tensor, k_z: Tensor, r: Tensor, d_gi: Tensor, d_gh: Tensor
) -> None:
    """Back through h' = (1-z) n + z h for one step: writes d gi and d gh, (B, 3D) each."""
    d = dh.shape[1]
    d_an = torch.mul(dh, k_n, out=d_gi[:, 2 * d :])  # (B, D)
    torch.mul(d_an, k_r, out=d_gi[:, :d])  # d ar
    torch.mul(dh, k_z, out=d_gi[:, d : 2 * d])  # d az
    d_gh[:, : 2 * d] = d_gi[:, : 2 * d]
    torch.mul(d_an, r, out=d_gh[:, 2 * d :])


def _input_grads(
    ctx: Any,
    dh0: Tensor,
    d_hp: Tensor,
    d_gi: Tensor,
    d_ctx: Tensor,
    h_prev: Tensor,
    d_keys: Tensor,
    d_v: Tensor | None,
) -> tuple[Tensor | None, ...]:
    """Every input's gradient; each weight's as one GEMM over all T*B rows, after the loop."""
    keys, memory, h0, w_q, v, w_hh, b_hh, w_ic, hs, cs, ps, hp, gi = ctx.saved_tensors
    d, g = h0.shape[1], w_hh.shape[0]
    a_dim = hp.shape[2] - g
    d_w_h = d_hp.reshape(-1, a_dim + g).t() @ h_prev.reshape(-1, d)  # (A+G, D)
    d_w_ic = d_gi.reshape(-1, g).t() @ cs.reshape(-1, d)  # (G, D)
    d_memory = torch.bmm(ps.permute(1, 2, 0), d_ctx.transpose(0, 1))  # (B, S, D) sum_t p^T dc
    return (
        d_gi.transpose(0, 1),  # xg (B, T, G)
        d_keys,
        d_memory,
        None,  # mask
        dh0,
        d_w_h[:a_dim] if a_dim else None,  # w_q
        d_v,
        d_w_h[a_dim:],  # w_hh
        d_hp[..., a_dim:].sum((0, 1)),  # b_hh (G,)
        d_w_ic,
        None,  # scale
        None,  # workspace
    )
