"""Frozen copies of the decoders' teacher-forced math as it was before the throughput rewrite
(round 1): the reference that the fast paths must reproduce within 1e-5, outputs and gradients.

Written against the modules' parameters, so the same weights drive both. Shapes: B batch, S
memory, T target length, D width, V vocab, H heads, Dh head width.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from models.base import EncoderOutput


def rnn_attn_reference(dec: nn.Module, enc: EncoderOutput, tokens: Tensor) -> tuple[Tensor, Tensor]:
    """The old AttnRNNDecoder.forward: one nn.*Cell call per step on [embedding; context], the
    scorer's `score` per step, the deep output and the vocabulary projection once at the end."""
    keys = dec.alignment.precompute(enc.memory)  # (B, S, A)
    hidden = {k: v.squeeze(1) for k, v in dec.init(enc.summary).items()}
    x = dec.drop(dec.embed(tokens))  # (B, T, D)
    outs, attns = [], []
    for t in range(tokens.shape[1]):
        scores = dec.alignment.score(hidden["h"], keys)  # (B, S)
        weights = scores.masked_fill(~enc.memory_mask, float("-inf")).softmax(-1)  # (B, S)
        context = torch.bmm(weights.unsqueeze(1), enc.memory).squeeze(1)  # (B, D)
        inp = torch.cat([x[:, t], context], dim=-1)  # (B, 2D)
        if dec.cell == "lstm":
            h, c = dec.rnn(inp, (hidden["h"], hidden["c"]))
            hidden = {"h": h, "c": c}
        else:
            hidden = {"h": dec.rnn(inp, hidden["h"])}
        outs.append(torch.tanh(dec.deep(torch.cat([hidden["h"], context], dim=-1))))
        attns.append(weights)
    logits = dec.out(dec.drop(torch.stack(outs, dim=1)))  # (B, T, V)
    return logits, torch.stack(attns, dim=1)


def _attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool) -> Tensor:
    """Explicit softmax(QK^T / sqrt(Dh)) V over (B, H, L, Dh) tensors."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, T, S)
    if causal:
        t, s = scores.shape[-2:]
        scores = scores.masked_fill(~torch.ones(t, s, dtype=torch.bool).tril(), float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(-1) @ v


def transformer_reference(dec: nn.Module, enc: EncoderOutput, tokens: Tensor) -> Tensor:
    """A pre-norm Transformer decoder written out from the paper's equations (Vaswani et al.
    2017 §3), reading the fused projections by their row blocks: the logits (B, T, V)."""

    def heads(x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.view(b, n, h, -1).transpose(1, 2)  # (B, H, n, Dh)

    def merge(x: Tensor) -> Tensor:
        b, _, n, _ = x.shape
        return x.transpose(1, 2).reshape(b, n, -1)

    t, d = tokens.shape[1], dec.d_model
    h = dec.layers[0].self_attn.h
    x = dec.embed(tokens) * math.sqrt(d) + dec.pe[:t]  # (B, T, D)
    mask = enc.memory_mask[:, None, None, :]  # (B, 1, 1, S)
    for layer in dec.layers:
        sa, ca = layer.self_attn, layer.cross_attn
        y = layer.norms[0](x)
        wq, wk, wv = sa.qkv_proj.weight.chunk(3)
        bq, bk, bv = sa.qkv_proj.bias.chunk(3)
        q, k, v = (heads(y @ w.t() + b) for w, b in ((wq, bq), (wk, bk), (wv, bv)))
        x = x + sa.out_proj(merge(_attend(q, k, v, None, causal=True)))
        y = layer.norms[1](x)
        wk, wv = ca.kv_proj.weight.chunk(2)
        bk, bv = ca.kv_proj.bias.chunk(2)
        k, v = heads(enc.memory @ wk.t() + bk), heads(enc.memory @ wv.t() + bv)
        x = x + ca.out_proj(merge(_attend(heads(ca.q_proj(y)), k, v, mask, causal=False)))
        x = x + layer.ffn(layer.norms[2](x))
    return dec.out(dec.final_norm(x))
