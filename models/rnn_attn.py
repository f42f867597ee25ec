"""RNN decoder with attention over the encoder memory (Bahdanau et al. 2015; Xu et al. 2015).

Shapes: B batch, S memory length, T target length, D width (= d_model), A alignment width,
V vocab.

At step t, from the previous hidden state h_{t-1} (Bahdanau's order: attend, then update):
    e_s   = align(h_{t-1}, m_s)                       scorer from alignment.py, (B, S)
    a     = softmax over valid s (memory_mask)        exactly 0 on padding
    c_t   = sum_s a_s m_s                             context, (B, D)
    h_t   = cell([embed(y_{t-1}); c_t], h_{t-1})      LSTMCell / GRUCell / tanh RNNCell
    o_t   = tanh(W_o [h_t; c_t])                      deep output (Luong et al. 2015 eq. 5)
    logits = W_v dropout(o_t)                         (B, V)
h_0 (and c_0 for the LSTM) come from `summary` by affine maps, exactly as in the `rnn` decoder,
so the two differ only by attention. The memory-side key projection runs once per sequence:
in `forward` before the time loop, and in `init_state`, which stores the keys in the state.
`forward` and `step` share `_advance`, so incremental decoding reproduces teacher forcing.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from .alignment import ALIGNMENTS, make_alignment, masked_softmax
from .base import Decoder, DecoderOutput, EncoderOutput, State, validate_encoder_output
from .registry import register_decoder
from .rnn import CELLS, Cell, InitialState, check_choice, check_sizes, check_tokens

Alignment = Literal["additive", "dot", "general", "scaled_dot"]


@register_decoder("rnn_attn")
class AttnRNNDecoder(Decoder):
    """One-layer attentional RNN decoder; `alignment` picks the scorer for the ablation."""

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 128,
        dropout: float = 0.0,
        cell: Cell = "gru",
        alignment: Alignment = "additive",
        attn_dim: int | None = None,
    ) -> None:
        super().__init__()
        check_sizes(vocab_size, d_model, dropout)
        check_choice("cell", cell, CELLS)
        check_choice("alignment", alignment, ALIGNMENTS)
        self.vocab_size, self.d_model, self.cell = vocab_size, d_model, cell
        self.init = InitialState(d_model, 1, with_cell=cell == "lstm")
        self.embed = nn.Embedding(vocab_size, d_model)
        self.drop = nn.Dropout(dropout)
        self.alignment = make_alignment(alignment, d_model, attn_dim)
        cell_cls = {"rnn": nn.RNNCell, "gru": nn.GRUCell, "lstm": nn.LSTMCell}[cell]
        self.rnn = cell_cls(2 * d_model, d_model)  # input [embedding; context]
        self.deep = nn.Linear(2 * d_model, d_model)  # [h_t; c_t] -> o_t
        self.out = nn.Linear(d_model, vocab_size)

    def _initial(self, summary: Tensor) -> State:
        """summary (B, D) -> {"h": (B, D)[, "c": (B, D)]} (one layer, so drop the L axis)."""
        return {k: v.squeeze(1) for k, v in self.init(summary).items()}

    def _advance(
        self, x: Tensor, hidden: State, memory: Tensor, keys: Tensor, mask: Tensor
    ) -> tuple[Tensor, State, Tensor]:
        """One step: x (B, D) embedded y_{t-1} -> o_t (B, D), new hidden, weights (B, S)."""
        weights = masked_softmax(self.alignment.score(hidden["h"], keys), mask)  # (B, S)
        context = torch.bmm(weights.unsqueeze(1), memory).squeeze(1)  # (B, D)
        inp = torch.cat([x, context], dim=-1)  # (B, 2D)
        if self.cell == "lstm":
            h, c = self.rnn(inp, (hidden["h"], hidden["c"]))  # (B, D) each
            new = {"h": h, "c": c}
        else:
            h = self.rnn(inp, hidden["h"])  # (B, D)
            new = {"h": h}
        o = torch.tanh(self.deep(torch.cat([h, context], dim=-1)))  # (B, D)
        return o, new, weights

    def forward(self, enc: EncoderOutput, tokens: Tensor) -> DecoderOutput:
        """tokens (B, T) -> logits (B, T, V), attention (B, T, S)."""
        validate_encoder_output(enc, self.d_model)
        check_tokens(tokens, enc.summary.shape[0])
        keys = self.alignment.precompute(enc.memory)  # (B, S, A), once for all T steps
        hidden = self._initial(enc.summary)
        x = self.drop(self.embed(tokens))  # (B, T, D)
        outs, attns = [], []
        for t in range(tokens.shape[1]):
            o, hidden, w = self._advance(x[:, t], hidden, enc.memory, keys, enc.memory_mask)
            outs.append(o)
            attns.append(w)
        # The vocabulary projection is step-independent: one (B*T, D) x (D, V) matmul, not T.
        logits = self.out(self.drop(torch.stack(outs, dim=1)))  # (B, T, V)
        return DecoderOutput(logits, torch.stack(attns, dim=1))  # attn (B, T, S)

    def init_state(self, enc: EncoderOutput) -> State:
        """Hidden state from `summary`, plus memory, mask and precomputed keys (all batch-first)."""
        validate_encoder_output(enc, self.d_model)
        state = self._initial(enc.summary)
        state["memory"] = enc.memory  # (B, S, D)
        state["memory_mask"] = enc.memory_mask  # (B, S)
        state["keys"] = self.alignment.precompute(enc.memory)  # (B, S, A), once per sequence
        return state

    def step(self, state: State, token: Tensor) -> tuple[Tensor, State, Tensor | None]:
        """token (B,) -> logits (B, V), new state, attention (B, S)."""
        x = self.drop(self.embed(token))  # (B, D)
        hidden = {k: state[k] for k in ("h", "c") if k in state}
        memory, keys, mask = state["memory"], state["keys"], state["memory_mask"]
        o, hidden, w = self._advance(x, hidden, memory, keys, mask)
        logits = self.out(self.drop(o))  # (B, V)
        return logits, {**state, **hidden}, w
