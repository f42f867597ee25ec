"""RNN decoder with attention over the encoder memory (Bahdanau et al. 2015; Xu et al. 2015).

Shapes: B batch, S memory length, T target length, D width (= d_model), A alignment width,
G gate width (3D for the GRU, 4D for the LSTM, D for the tanh RNN), V vocab.

At step t, from the previous hidden state h_{t-1} (Bahdanau's order: attend, then update):
    e_s   = align(h_{t-1}, m_s)                       scorer from alignment.py, (B, S)
    a     = softmax over valid s (memory_mask)        exactly 0 on padding
    c_t   = sum_s a_s m_s                             context, (B, D)
    h_t   = cell([embed(y_{t-1}); c_t], h_{t-1})      GRU / LSTM / tanh RNN (torch's cells)
    o_t   = tanh(W_o [h_t; c_t])                      deep output (Luong et al. 2015 eq. 5)
    logits = W_v dropout(o_t)                         (B, V)
h_0 (and c_0 for the LSTM) come from `summary` by affine maps, exactly as in the `rnn` decoder,
so the two differ only by attention.

Only what depends on h_{t-1} runs per step. The cell's input weights split into an embedding
half, applied to all T embeddings in one GEMM before the loop, and a context half; the memory
keys are projected once per sequence; the deep output and the vocabulary projection run once
over all T after the loop. The GRU (the default) runs its whole recurrence in one autograd
Function with a hand-written backward (attn_gru.py); the LSTM and tanh RNN record the loop
under autograd. `step` advances one token with the same per-step math, so incremental decoding
reproduces teacher forcing.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .alignment import ALIGNMENTS, make_alignment, masked_softmax
from .attn_gru import AttentiveGRUScan, Workspace
from .base import Decoder, DecoderOutput, EncoderOutput, State, validate_encoder_output
from .precision import fp32_rnn
from .registry import register_decoder
from .rnn import CELLS, Cell, InitialState, check_choice, check_sizes, check_tokens

Alignment = Literal["additive", "dot", "general", "scaled_dot"]


def cell_update(cell: str, gi: Tensor, gh: Tensor, hidden: State) -> State:
    """torch's RNNCell / GRUCell / LSTMCell from projections gi = W_ih x + b_ih, gh = W_hh h + b_hh
    (B, G) each: the same gate order and formulas, so the cells' weights keep their meaning."""
    if cell == "rnn":
        return {"h": torch.tanh(gi + gh)}
    if cell == "gru":
        ir, iz, i_n = gi.chunk(3, dim=-1)
        hr, hz, hn = gh.chunk(3, dim=-1)
        r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
        n = torch.tanh(i_n + r * hn)  # (B, D)
        return {"h": torch.lerp(n, hidden["h"], z)}  # (1 - z) n + z h
    i, f, g, o = (gi + gh).chunk(4, dim=-1)
    c = torch.sigmoid(f) * hidden["c"] + torch.sigmoid(i) * torch.tanh(g)  # (B, D)
    return {"h": torch.sigmoid(o) * torch.tanh(c), "c": c}


@register_decoder("rnn_attn")
class AttnRNNDecoder(Decoder):
    """One-layer attentional RNN decoder; `alignment` picks the scorer for the ablation."""

    color = "C1"
    default_lr = 3e-3

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
        self._workspace = Workspace()  # reused across training steps by AttentiveGRUScan

    def _initial(self, summary: Tensor) -> State:
        """summary (B, D) -> {"h": (B, D)[, "c": (B, D)]} (one layer, so drop the L axis)."""
        return {k: v.squeeze(1) for k, v in self.init(summary).items()}

    def _input_weights(self) -> tuple[Tensor, Tensor]:
        """The cell's W_ih (G, 2D) as its embedding half and its context half, (G, D) each."""
        return self.rnn.weight_ih.split(self.d_model, dim=1)

    def _project_inputs(self, tokens: Tensor) -> Tensor:
        """tokens (B, T) -> embedding half of the cell input projection + b_ih, (B, T, G)."""
        w_emb, _ = self._input_weights()
        return F.linear(self.drop(self.embed(tokens)), w_emb, self.rnn.bias_ih)

    def _advance(
        self, xg: Tensor, hidden: State, memory: Tensor, keys: Tensor, mask: Tensor
    ) -> tuple[State, Tensor, Tensor]:
        """One step from xg (B, G) -> new hidden, context (B, D), weights (B, S)."""
        weights = masked_softmax(self.alignment.score(hidden["h"], keys), mask)  # (B, S)
        context = torch.bmm(weights.unsqueeze(1), memory).squeeze(1)  # (B, D)
        gi = xg + context @ self._input_weights()[1].t()  # (B, G)
        gh = F.linear(hidden["h"], self.rnn.weight_hh, self.rnn.bias_hh)  # (B, G)
        return cell_update(self.cell, gi, gh, hidden), context, weights

    def _recur(self, xg: Tensor, enc: EncoderOutput, keys: Tensor) -> tuple[Tensor, ...]:
        """All T steps -> hidden states H, contexts C (B, T, D), attention weights P (B, T, S).
        In fp32 with autocast off, like every recurrence here (precision.py)."""
        with fp32_rnn(xg.device):
            hidden = {k: v.float() for k, v in self._initial(enc.summary).items()}
            memory = EncoderOutput(enc.memory.float(), enc.memory_mask, enc.summary)
            return self._recur_fp32(xg.float(), memory, keys.float(), hidden)

    def _recur_fp32(
        self, xg: Tensor, enc: EncoderOutput, keys: Tensor, hidden: State
    ) -> tuple[Tensor, ...]:
        if self.cell == "gru":
            w_q, v, scale = self.alignment.scan_params()
            return AttentiveGRUScan.apply(
                xg, keys, enc.memory, enc.memory_mask, hidden["h"], w_q, v,
                self.rnn.weight_hh, self.rnn.bias_hh, self._input_weights()[1], scale,
                self._workspace,
            )  # fmt: skip
        hs, cs, ps = [], [], []
        for t in range(xg.shape[1]):
            hidden, c, p = self._advance(xg[:, t], hidden, enc.memory, keys, enc.memory_mask)
            hs.append(hidden["h"])
            cs.append(c)
            ps.append(p)
        return torch.stack(hs, 1), torch.stack(cs, 1), torch.stack(ps, 1)

    def _logits(self, h: Tensor, context: Tensor) -> Tensor:
        """Deep output and vocabulary projection: (..., D) each -> (..., V)."""
        o = torch.tanh(self.deep(torch.cat([h, context], dim=-1)))  # (..., D)
        return self.out(self.drop(o))

    def forward(self, enc: EncoderOutput, tokens: Tensor, need_attn: bool = True) -> DecoderOutput:
        """tokens (B, T) -> logits (B, T, V), attention (B, T, S)."""
        validate_encoder_output(enc, self.d_model)
        check_tokens(tokens, enc.summary.shape[0])
        keys = self.alignment.precompute(enc.memory)  # (B, S, A), once for all T steps
        h, context, weights = self._recur(self._project_inputs(tokens), enc, keys)
        return DecoderOutput(self._logits(h, context), weights if need_attn else None)

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
        xg = self._project_inputs(token)  # (B, G)
        hidden = {k: state[k] for k in ("h", "c") if k in state}
        memory, keys, mask = state["memory"], state["keys"], state["memory_mask"]
        hidden, context, w = self._advance(xg, hidden, memory, keys, mask)
        return self._logits(hidden["h"], context), {**state, **hidden}, w
