"""Alignment scorers for the attentional RNN decoder: one query vector against all memory keys.

Shapes: B batch, S memory length, D width (= d_model), A alignment width.

Each scorer splits into `precompute(memory (B,S,D)) -> keys (B,S,A)`, run ONCE per sequence, and
`score(h (B,D), keys) -> (B,S)`, run once per decoding step: the memory-side projection does not
depend on the step, so recomputing it every step would cost O(T S D A) instead of O(S D A)
(Bahdanau et al. 2015, appendix A.1.2, precompute U_a h_j for the same reason).

  additive    e_s = v^T tanh(W_h h + W_m m_s)     Bahdanau et al. 2015 eq. 6; Xu et al. 2015
  dot         e_s = h . m_s                       Luong et al. 2015 eq. 8
  general     e_s = h^T W m_s                     Luong et al. 2015 eq. 8
  scaled_dot  e_s = h . m_s / sqrt(D)             Vaswani et al. 2017 eq. 1
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .errors import ConfigError

ALIGNMENTS: tuple[str, ...] = ("additive", "dot", "general", "scaled_dot")


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """scores (B, S), mask (B, S) bool True=real -> weights (B, S), exactly 0 where masked.

    exp(-inf) is exactly 0, so padded positions get no weight at all; a row with no valid
    position would be NaN, which validate_encoder_output rules out where the memory comes in.
    """
    return scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)  # (B, S)


def _dot(h: Tensor, keys: Tensor) -> Tensor:
    """h (B, D) . keys (B, S, D) -> (B, S)."""
    return torch.bmm(keys, h.unsqueeze(-1)).squeeze(-1)  # (B, S)


class AdditiveAlignment(nn.Module):
    """MLP alignment v^T tanh(W_h h + W_m m) (Bahdanau et al. 2015); the one bias lives in W_m."""

    def __init__(self, d_model: int, attn_dim: int) -> None:
        super().__init__()
        self.key_proj = nn.Linear(d_model, attn_dim)  # W_m (+ bias), once per sequence
        self.query_proj = nn.Linear(d_model, attn_dim, bias=False)  # W_h, once per step
        self.v = nn.Linear(attn_dim, 1, bias=False)

    def precompute(self, memory: Tensor) -> Tensor:
        return self.key_proj(memory)  # (B, S, A)

    def score(self, h: Tensor, keys: Tensor) -> Tensor:
        hidden = torch.tanh(keys + self.query_proj(h).unsqueeze(1))  # (B, S, A)
        return self.v(hidden).squeeze(-1)  # (B, S)

    def scan_params(self) -> tuple[Tensor | None, Tensor | None, float]:
        """(W_h (A, D), v (A,), scale) for the fused recurrence in attn_gru.py."""
        return self.query_proj.weight, self.v.weight.squeeze(0), 1.0


class DotAlignment(nn.Module):
    """h . m_s, optionally / sqrt(D); no parameters, so the keys are the memory itself."""

    def __init__(self, d_model: int, scaled: bool = False) -> None:
        super().__init__()
        # 1/sqrt(D) keeps scores O(1) for unit-variance vectors so the softmax does not saturate
        # (Vaswani et al. 2017 §3.2.1); the unscaled variant is Luong's `dot`.
        self.scale = 1.0 / math.sqrt(d_model) if scaled else 1.0

    def precompute(self, memory: Tensor) -> Tensor:
        return memory  # (B, S, D)

    def score(self, h: Tensor, keys: Tensor) -> Tensor:
        return _dot(h, keys) * self.scale  # (B, S)

    def scan_params(self) -> tuple[Tensor | None, Tensor | None, float]:
        """No query projection and no output vector: e = keys . (scale h)."""
        return None, None, self.scale


class GeneralAlignment(nn.Module):
    """h^T W m_s (Luong et al. 2015): keys are W m_s, precomputed, then a dot with h."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.key_proj = nn.Linear(d_model, d_model, bias=False)  # W, once per sequence

    def precompute(self, memory: Tensor) -> Tensor:
        return self.key_proj(memory)  # (B, S, D)

    def score(self, h: Tensor, keys: Tensor) -> Tensor:
        return _dot(h, keys)  # (B, S)

    def scan_params(self) -> tuple[Tensor | None, Tensor | None, float]:
        """The keys are already W m, so the score is a plain dot product."""
        return None, None, 1.0


def make_alignment(name: str, d_model: int, attn_dim: int | None = None) -> nn.Module:
    """Build a scorer by name; `attn_dim` (default d_model) sizes only the additive MLP."""
    if name not in ALIGNMENTS:
        raise ConfigError(f"unknown alignment {name!r}; choose from {list(ALIGNMENTS)}")
    if name == "additive":
        attn_dim = d_model if attn_dim is None else attn_dim
        if attn_dim < 1:
            raise ConfigError(f"attn_dim must be >= 1; got {attn_dim}")
        return AdditiveAlignment(d_model, attn_dim)
    # The other scorers dot h with a D-wide key, so there is no width to choose.
    if attn_dim not in (None, d_model):
        raise ConfigError(
            f"attn_dim={attn_dim} only applies to alignment 'additive'; '{name}' scores in d_model"
            f"={d_model}"
        )
    if name == "general":
        return GeneralAlignment(d_model)
    return DotAlignment(d_model, scaled=name == "scaled_dot")
