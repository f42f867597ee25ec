"""Transformer decoder (Vaswani et al. 2017, "Attention Is All You Need", §3) with a KV cache.

Shapes: B batch, T target length, S memory length, D d_model, H heads, Dh = D // H, V vocab,
t tokens decoded so far (the KV-cache length).

Each layer: masked self-attention, cross-attention over the encoder memory, position-wise FFN,
each wrapped in dropout + residual + LayerNorm (pre-norm by default, as in GPT-2/nanoGPT, with a
final LayerNorm; post-norm as in the paper). Attention math is delegated to a kernel from
`models.attention`, chosen by name, so the same decoder runs `dot`, `sdpa`, `chunked`, `additive`.

Incremental decoding (`step`) caches every layer's self-attention K,V (B,H,t,Dh) and the
cross-attention K,V of the memory (B,H,S,Dh), so a step costs O(t), not O(t^2). With
`use_cache=False` the step re-runs the whole prefix instead: the baseline for the decode benchmark.
`step` only ever sees the prefix, so with `causal=False` (the ablation) it cannot equal `forward`,
whose positions then also attend to later tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor, nn

from . import registry
from .base import (
    Decoder,
    DecoderOutput,
    EncoderOutput,
    State,
    host_reads_free,
    validate_encoder_output,
)
from .errors import ConfigError
from .positions import sinusoidal_table
from .registry import register_decoder

KV = tuple[Tensor, Tensor]  # (k, v), each (B, H, L, Dh)


def make_kernel(name: str, cfg: dict | None, head_dim: int) -> nn.Module:
    """Kernel `name` built with `cfg`; `head_dim` is passed when the constructor accepts it."""
    cfg = dict(cfg or {})
    factory = registry.registered("kernel", name)  # unknown names fail in create_kernel
    if factory is not None and "head_dim" in registry.accepted_keys(factory):
        if cfg.setdefault("head_dim", head_dim) != head_dim:
            raise ConfigError(f"kernel_cfg head_dim={cfg['head_dim']} != d_model // num_heads")
    return registry.create_kernel(name, **cfg)


def key_padding(memory_mask: Tensor) -> Tensor | None:
    """(B, S) True = real -> the kernels' (B, 1, 1, S) attend-mask, or None when nothing is padded:
    without a mask tensor SDPA may take its fastest path. Only on the CPU, where asking is free:
    on a GPU the question is a device sync per forward, so the mask is always passed there."""
    if host_reads_free(memory_mask) and bool(memory_mask.all()):
        return None
    return memory_mask[:, None, None, :]


def split_heads(x: Tensor, heads: int) -> Tensor:
    """(B, L, H*Dh) -> (B, H, L, Dh)."""
    b, n, _ = x.shape
    return x.view(b, n, heads, -1).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """(B, H, L, Dh) -> (B, L, H*Dh)."""
    b, h, n, dh = x.shape
    return x.transpose(1, 2).reshape(b, n, h * dh)


class SelfAttention(nn.Module):
    """Masked multi-head self-attention (§3.2.2) with one fused Q,K,V projection (D -> 3D)."""

    def __init__(self, d_model: int, num_heads: int, kernel: str, kernel_cfg: dict | None) -> None:
        super().__init__()
        self.h, self.dh = num_heads, d_model // num_heads
        self.qkv_proj = nn.Linear(d_model, 3 * d_model)  # one GEMM instead of three
        self.out_proj = nn.Linear(d_model, d_model)
        self.kernel = make_kernel(kernel, kernel_cfg, self.dh)

    def forward(self, x: Tensor, causal: bool, cache: KV | None) -> tuple[Tensor, KV]:
        """x (B, T, D) -> out (B, T, D) and this layer's K, V (B, H, t+T, Dh), cache appended."""
        q, k, v = (split_heads(y, self.h) for y in self.qkv_proj(x).chunk(3, dim=-1))
        if cache is not None:
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        out, _ = self.kernel(q, k, v, mask=None, causal=causal)  # (B, H, T, Dh)
        return self.out_proj(merge_heads(out)), (k, v)


class CrossAttention(nn.Module):
    """Multi-head attention over the encoder memory (§3.2.3); K, V projected once per sequence
    by one fused projection (D -> 2D), then reused by every step and every query."""

    def __init__(self, d_model: int, num_heads: int, kernel: str, kernel_cfg: dict | None) -> None:
        super().__init__()
        self.h, self.dh = num_heads, d_model // num_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.kv_proj = nn.Linear(d_model, 2 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.kernel = make_kernel(kernel, kernel_cfg, self.dh)

    def project_kv(self, memory: Tensor) -> KV:
        """memory (B, S, D) -> k, v (B, H, S, Dh), once per sequence."""
        k, v = self.kv_proj(memory).chunk(2, dim=-1)
        return split_heads(k, self.h), split_heads(v, self.h)

    def forward(
        self, x: Tensor, kv: KV, mask: Tensor | None, need_weights: bool
    ) -> tuple[Tensor, Tensor | None]:
        """x (B, T, D) over kv -> out (B, T, D), weights (B, H, T, S) | None."""
        q = split_heads(self.q_proj(x), self.h)  # (B, H, T, Dh)
        out, w = self.kernel(q, kv[0], kv[1], mask=mask, need_weights=need_weights)
        return self.out_proj(merge_heads(out)), w


class DecoderLayer(nn.Module):
    """Self-attention, cross-attention, FFN; each sublayer with dropout + residual + LayerNorm."""

    def __init__(
        self,
        d: int,
        heads: int,
        ffn_dim: int,
        dropout: float,
        norm_first: bool,
        kernel: str,
        kernel_cfg: dict | None,
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = SelfAttention(d, heads, kernel, kernel_cfg)
        self.cross_attn = CrossAttention(d, heads, kernel, kernel_cfg)
        # §3.3; in-place ReLU: its backward needs only the output, so no second (B, T, F) buffer
        relu = nn.ReLU(inplace=True)
        self.ffn = nn.Sequential(nn.Linear(d, ffn_dim), relu, nn.Linear(ffn_dim, d))
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(3))
        self.drop = nn.Dropout(dropout)  # residual dropout (§5.4)

    def _sublayer(
        self, x: Tensor, i: int, fn: Callable[[Tensor], tuple[Tensor, Any]]
    ) -> tuple[Tensor, Any]:
        """Pre-norm: x + drop(fn(norm(x))); post-norm: norm(x + drop(fn(x)))."""
        if self.norm_first:
            out, extra = fn(self.norms[i](x))
            return x + self.drop(out), extra
        out, extra = fn(x)
        return self.norms[i](x + self.drop(out)), extra

    def _ffn(self, h: Tensor) -> Tensor:
        """The FFN on (B*T, D) rows, (B, T, D) -> (B, T, D). On a 3-D input, the in-place ReLU
        writes into a view of the first Linear's output, and autograd then copies and clones
        (B, T, F) buffers in backward (measured: FFN forward+backward 14.3 ms against 9.5 ms
        flat, B=64, T=32, D=128, F=512, one thread)."""
        return self.ffn(h.reshape(-1, h.shape[-1])).view(h.shape)

    def forward(
        self,
        x: Tensor,
        cross_kv: KV,
        mem_mask: Tensor | None,
        causal: bool,
        need_weights: bool,
        cache: KV | None = None,
    ) -> tuple[Tensor, Tensor | None, KV]:
        """x (B, T, D) -> x (B, T, D), cross weights (B, H, T, S) | None, self K,V (B, H, t+T, Dh).

        With `cache` the new K,V are appended to it; the caller then passes causal=False, since a
        single query at the end of the prefix may see all of it (kernels align causal top-left).
        """
        x, kv = self._sublayer(x, 0, lambda h: self.self_attn(h, causal, cache))
        x, w = self._sublayer(x, 1, lambda h: self.cross_attn(h, cross_kv, mem_mask, need_weights))
        x, _ = self._sublayer(x, 2, lambda h: (self._ffn(h), None))
        return x, w, kv


@register_decoder("transformer")
class TransformerDecoder(Decoder):
    """Stack of decoder layers over encoder memory; see the module docstring."""

    color = "C2"
    default_lr = 6e-3  # earlier tuning runs: 4e-3, then 8e-3 reached reverse L=12's target first

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 128,
        dropout: float = 0.0,
        num_layers: int = 2,
        num_heads: int = 4,
        ffn_dim: int | None = None,  # None -> 4 * d_model (the paper's 512 -> 2048)
        norm_first: bool = True,  # pre-norm (+ final LayerNorm); False = the paper's post-norm
        positional: Literal["sinusoidal", "learned", "none"] = "sinusoidal",
        max_len: int = 1024,  # longest target (positions 0..max_len-1)
        causal: bool = True,  # False = ablation: self-attention also sees later tokens
        kernel: str = "sdpa",  # attention kernel by registry name
        kernel_cfg: dict | None = None,  # kernel options, e.g. {"scaled": False} for `dot`
        use_cache: bool = True,  # False: `step` recomputes the whole prefix (benchmark baseline)
    ) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ConfigError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        if positional not in ("sinusoidal", "learned", "none"):
            raise ConfigError(f"positional={positional!r}; choose from sinusoidal, learned, none")
        self.vocab_size, self.d_model, self.max_len = vocab_size, d_model, max_len
        self.positional, self.causal, self.use_cache = positional, causal, use_cache
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos_embed = nn.Embedding(max_len, d_model) if positional == "learned" else None
        pe = sinusoidal_table(max_len, d_model) if positional == "sinusoidal" else None
        self.register_buffer("pe", pe, persistent=False)  # derived, so kept out of checkpoints
        self.drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            DecoderLayer(
                d_model, num_heads, ffn_dim or 4 * d_model, dropout, norm_first, kernel, kernel_cfg
            )
            for _ in range(num_layers)
        )
        self.final_norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.out = nn.Linear(d_model, vocab_size)

    def _embed(self, tokens: Tensor, positions: Tensor) -> Tensor:
        """tokens (B, T), positions (B or 1, T) -> (B, T, D)."""
        x = self.embed(tokens) * math.sqrt(self.d_model)  # (B, T, D); sqrt(D) as in §3.4
        if self.pe is not None:
            x = x + self.pe[positions]
        elif self.pos_embed is not None:
            x = x + self.pos_embed(positions)
        return self.drop(x)

    def _check_len(self, t: int) -> None:
        if t > self.max_len:
            raise ValueError(f"target length {t} exceeds transformer max_len={self.max_len}")

    def _cross_kv(self, memory: Tensor) -> list[KV]:
        return [layer.cross_attn.project_kv(memory) for layer in self.layers]  # (B, H, S, Dh)

    def _run(
        self,
        x: Tensor,
        cross: list[KV],
        mask: Tensor | None,
        causal: bool,
        caches: list[KV] | None,
        need_attn: bool = True,
    ) -> tuple[Tensor, Tensor | None, list[KV]]:
        """Layers + final norm + output: x (B, T, D) -> logits (B, T, V), attn (B, T, S), K,V.

        Only the last layer's cross-attention is asked for weights, and only with `need_attn`:
        fused kernels never form them, so every request pays an explicit recompute.
        """
        new_caches, w = [], None
        for i, layer in enumerate(self.layers):
            last = need_attn and i == len(self.layers) - 1
            cache = None if caches is None else caches[i]
            x, w, kv = layer(x, cross[i], mask, causal, need_weights=last, cache=cache)
            new_caches.append(kv)
        attn = None if w is None else w.mean(dim=1)  # (B, T, S), averaged over heads
        return self.out(self.final_norm(x)), attn, new_caches

    def forward(self, enc: EncoderOutput, tokens: Tensor, need_attn: bool = True) -> DecoderOutput:
        validate_encoder_output(enc, self.d_model)
        self._check_len(tokens.shape[1])
        positions = torch.arange(tokens.shape[1], device=tokens.device)[None]  # (1, T)
        x = self._embed(tokens, positions)  # (B, T, D)
        mask = key_padding(enc.memory_mask)
        cross = self._cross_kv(enc.memory)
        logits, attn, _ = self._run(x, cross, mask, self.causal, None, need_attn)
        return DecoderOutput(logits, attn)

    def init_state(self, enc: EncoderOutput) -> State:
        validate_encoder_output(enc, self.d_model)
        b, device = enc.memory.shape[0], enc.memory.device
        if not self.use_cache:  # the prefix and raw memory; everything is recomputed per step
            prefix = torch.zeros(b, 0, dtype=torch.long, device=device)  # (B, 0)
            return {"prefix": prefix, "memory": enc.memory, "mem_mask": enc.memory_mask}
        h, dh = self.layers[0].self_attn.h, self.layers[0].self_attn.dh
        empty = enc.memory.new_zeros(b, h, 0, dh)  # (B, H, 0, Dh)
        return {
            "pos": torch.zeros(b, dtype=torch.long, device=device),  # (B,) next position
            "mem_mask": enc.memory_mask,  # (B, S)
            "cross": self._cross_kv(enc.memory),  # per layer (B, H, S, Dh), computed once
            "self": [(empty, empty) for _ in self.layers],  # per layer (B, H, t, Dh)
        }

    def step(self, state: State, token: Tensor) -> tuple[Tensor, State, Tensor | None]:
        if not self.use_cache:
            return self._step_recompute(state, token)
        self._check_len(state["self"][0][0].shape[2] + 1)  # cache length: a shape, no GPU sync
        pos = state["pos"]  # (B,)
        x = self._embed(token[:, None], pos[:, None])  # (B, 1, D)
        mask = key_padding(state["mem_mask"])
        logits, attn, caches = self._run(x, state["cross"], mask, False, state["self"])
        new_state = {**state, "pos": pos + 1, "self": caches}
        return logits[:, 0], new_state, None if attn is None else attn[:, 0]

    def _step_recompute(self, state: State, token: Tensor) -> tuple[Tensor, State, Tensor | None]:
        """No cache: run the whole prefix (self- and cross-attention K,V included) again."""
        prefix = torch.cat([state["prefix"], token[:, None]], dim=1)  # (B, t)
        self._check_len(prefix.shape[1])
        x = self._embed(prefix, torch.arange(prefix.shape[1], device=prefix.device)[None])
        mask = key_padding(state["mem_mask"])
        cross = self._cross_kv(state["memory"])
        logits, attn, _ = self._run(x, cross, mask, self.causal, None)
        return logits[:, -1], {**state, "prefix": prefix}, None if attn is None else attn[:, -1]
