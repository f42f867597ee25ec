"""Vanilla recurrent decoder: the context-vector seq2seq baseline (no attention).

Shapes: B batch, S memory length, T target length, D width (= d_model), L layers, V vocab.

Sutskever et al. 2014 / Cho et al. 2014 seq2seq, and the cs231n CaptioningRNN (Karpathy &
Fei-Fei 2015): the decoder's ONLY view of the input is the encoder's `summary` vector, mapped to
the initial hidden state by an affine layer. `memory` and `memory_mask` are validated but never
read, so every bit of the source must squeeze through D numbers (the bottleneck that attention
removes; see rnn_attn.py).

Cells: `rnn` is cs231n's tanh RNN  h' = tanh(x Wx + h Wh + b)  (torch's nn.RNN with
Wx = weight_ih^T, Wh = weight_hh^T, b = bias_ih + bias_hh); `gru` and `lstm` are torch's, gate
order and all. Teacher forcing runs the fused nn.RNN/GRU/LSTM over the whole sequence; `step`
runs the same module on one token, so both paths give the same logits.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from .base import Decoder, DecoderOutput, EncoderOutput, State, validate_encoder_output
from .errors import ConfigError
from .precision import fp32_rnn
from .registry import register_decoder

Cell = Literal["rnn", "gru", "lstm"]
CELLS: tuple[str, ...] = ("rnn", "gru", "lstm")


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    """Fail fast on an unknown option, naming the choices."""
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; choose from {list(choices)}")


def check_sizes(vocab_size: int, d_model: int, dropout: float) -> None:
    """Reject sizes no decoder can be built with, one line each."""
    if vocab_size < 1:
        raise ConfigError(f"vocab_size must be >= 1; got {vocab_size}")
    if d_model < 1:
        raise ConfigError(f"d_model must be >= 1; got {d_model}")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1); got {dropout}")


def check_tokens(tokens: Tensor, batch: int) -> None:
    """tokens must be (B, T) with T >= 1 and the encoder's batch size."""
    if tokens.dim() != 2 or tokens.shape[0] != batch or tokens.shape[1] < 1:
        raise ValueError(f"tokens must be (B={batch}, T>=1); got shape {tuple(tokens.shape)}")


class InitialState(nn.Module):
    """summary (B, D) -> {"h": (B, L, D)[, "c": (B, L, D)]} by affine maps (no squashing).

    h0 = summary W_h + b_h as in cs231n's CaptioningRNN (`h0 = features W_proj + b_proj`). For the
    LSTM, c0 comes from its own affine map rather than zeros, as Show-Attend-Tell does (Xu et al.
    2015 §3.1.2: c0 = f_init,c(mean a), h0 = f_init,h(mean a)): the cell state is where the LSTM
    keeps long-term information, and seeding it lets the source ride the forget gates directly
    instead of entering only through h0's influence on the first gates.
    """

    def __init__(self, d_model: int, num_layers: int, with_cell: bool) -> None:
        super().__init__()
        self.num_layers, self.d_model = num_layers, d_model
        self.h = nn.Linear(d_model, num_layers * d_model)
        self.c = nn.Linear(d_model, num_layers * d_model) if with_cell else None

    def forward(self, summary: Tensor) -> State:
        b = summary.shape[0]
        state = {"h": self.h(summary).view(b, self.num_layers, self.d_model)}  # (B, L, D)
        if self.c is not None:
            state["c"] = self.c(summary).view(b, self.num_layers, self.d_model)  # (B, L, D)
        return state


def _float(hx: Tensor | tuple[Tensor, Tensor]) -> Tensor | tuple[Tensor, Tensor]:
    """A hidden state (or the LSTM's pair) in fp32: under autocast, `init` returns bf16."""
    return (hx[0].float(), hx[1].float()) if isinstance(hx, tuple) else hx.float()


@register_decoder("rnn")
class RNNDecoder(Decoder):
    """Context-vector RNN decoder: h0 = affine(summary), then embed -> cell -> Linear to vocab."""

    color = "C0"
    default_lr = 1e-2  # earlier tuning runs: the best lr was the largest tried (6e-3, then 1.2e-2)

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 128,
        dropout: float = 0.0,
        cell: Cell = "gru",
        num_layers: int = 1,
    ) -> None:
        super().__init__()
        check_sizes(vocab_size, d_model, dropout)
        check_choice("cell", cell, CELLS)
        if num_layers < 1:
            raise ConfigError(f"num_layers must be >= 1; got {num_layers}")
        self.vocab_size, self.d_model, self.cell = vocab_size, d_model, cell
        self.init = InitialState(d_model, num_layers, with_cell=cell == "lstm")
        self.embed = nn.Embedding(vocab_size, d_model)
        self.drop = nn.Dropout(dropout)
        rnn_cls = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cell]
        # Dropout between stacked layers only (torch warns and ignores it for one layer).
        inter = dropout if num_layers > 1 else 0.0
        self.rnn = rnn_cls(d_model, d_model, num_layers, batch_first=True, dropout=inter)
        self.out = nn.Linear(d_model, vocab_size)

    def _hx(self, state: State) -> Tensor | tuple[Tensor, Tensor]:
        """Batch-first state -> torch's (L, B, D) hidden (a pair for the LSTM)."""
        h = state["h"].transpose(0, 1).contiguous()  # (L, B, D)
        if self.cell == "lstm":
            return h, state["c"].transpose(0, 1).contiguous()
        return h

    def _state(self, hx: Tensor | tuple[Tensor, Tensor]) -> State:
        """torch's (L, B, D) hidden -> batch-first state, so reorder_state is index_select(0)."""
        if self.cell == "lstm":
            h, c = hx
            return {"h": h.transpose(0, 1), "c": c.transpose(0, 1)}  # (B, L, D) each
        return {"h": hx.transpose(0, 1)}  # (B, L, D)

    def forward(self, enc: EncoderOutput, tokens: Tensor, need_attn: bool = True) -> DecoderOutput:
        """tokens (B, T) -> logits (B, T, V); memory is never read (attn is None)."""
        validate_encoder_output(enc, self.d_model)
        check_tokens(tokens, enc.summary.shape[0])
        hx = self._hx(self.init(enc.summary))
        x = self.drop(self.embed(tokens))  # (B, T, D)
        with fp32_rnn(tokens.device):  # fp32 recurrence, also under autocast (precision.py)
            h, _ = self.rnn(x.float(), _float(hx))  # (B, T, D) top-layer outputs
        return DecoderOutput(self.out(self.drop(h)), None)  # (B, T, V)

    def init_state(self, enc: EncoderOutput) -> State:
        validate_encoder_output(enc, self.d_model)
        return self.init(enc.summary)

    def step(self, state: State, token: Tensor) -> tuple[Tensor, State, Tensor | None]:
        """token (B,) -> logits (B, V) via the same fused module run on a length-1 sequence."""
        x = self.drop(self.embed(token)).unsqueeze(1)  # (B, 1, D)
        with fp32_rnn(token.device):
            h, hx = self.rnn(x.float(), _float(self._hx(state)))  # (B, 1, D)
        logits = self.out(self.drop(h.squeeze(1)))  # (B, V)
        return logits, self._state(hx), None
