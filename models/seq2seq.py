"""Seq2Seq(encoder, decoder) and the decoding algorithms, written once against the Decoder contract.

Shapes: B batch, K beam, S memory, T target/generated length, V vocab.
Beam search follows Wu et al. 2016 (GNMT) in spirit: hypotheses are ranked by cumulative
log-probability while searching and by length-normalised score (logp / len^alpha) at the end.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import BOS, EOS, PAD, Decoder, DecoderOutput, EncoderOutput, host_reads_free
from .errors import ConfigError


class Seq2Seq(nn.Module):
    """Composition, as in the Annotated Transformer's EncoderDecoder."""

    def __init__(self, encoder: nn.Module, decoder: Decoder):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def encode(self, source: Tensor, source_mask: Tensor | None = None) -> EncoderOutput:
        return self.encoder(source, source_mask)

    def forward(
        self, source: Tensor, source_mask: Tensor | None, tokens_in: Tensor, need_attn: bool = True
    ) -> DecoderOutput:
        """Teacher forcing: tokens_in (B,T) = [BOS, y1..] -> logits (B,T,V)."""
        return self.decoder(self.encode(source, source_mask), tokens_in, need_attn=need_attn)


def _append_eos_mask(tokens: Tensor, finished: Tensor) -> Tensor:
    """Positions after a sequence's EOS become PAD."""
    return torch.where(finished, torch.full_like(tokens, PAD), tokens)


def all_done_every(like: Tensor) -> int:
    """Decoding steps between checks that every sequence has finished. The check reads a flag
    on the host: free on the CPU, a device sync on a GPU, where checking every 8th step costs at
    most 7 steps of padding (the output is trimmed to the same tokens)."""
    return 1 if host_reads_free(like) else 8


def _trim_padding(tokens: Tensor) -> Tensor:
    """Drop trailing all-PAD columns (B, L) -> (B, L'), L' >= 1: those a sparse check let run."""
    filled = (tokens != PAD).any(0).nonzero()  # (n, 1)
    return tokens[:, : int(filled.max()) + 1] if len(filled) else tokens[:, :1]


@torch.no_grad()
def greedy(decoder: Decoder, enc: EncoderOutput, max_len: int) -> tuple[Tensor, Tensor | None]:
    """Argmax decoding -> tokens (B, L<=max_len) ending in EOS or cut at max_len (PAD after EOS),
    and attention (B, L, S) when the decoder provides it."""
    b = enc.memory.shape[0]
    state = decoder.init_state(enc)
    token = torch.full((b,), BOS, dtype=torch.long, device=enc.memory.device)
    finished = torch.zeros(b, dtype=torch.bool, device=enc.memory.device)
    out, attns, every = [], [], all_done_every(enc.memory)
    for t in range(max_len):
        logits, state, attn = decoder.step(state, token)  # (B, V)
        token = _append_eos_mask(logits.argmax(-1), finished)  # (B,)
        out.append(token)
        if attn is not None:
            attns.append(attn)
        finished = finished | (token == EOS)
        if t % every == every - 1 and bool(finished.all()):
            break
    tokens = torch.stack(out, 1)  # (B, L)
    if every > 1:
        tokens = _trim_padding(tokens)  # (B, L')
        attns = attns[: tokens.shape[1]]
    return tokens, (torch.stack(attns, 1) if attns else None)


@torch.no_grad()
def beam_search(
    decoder: Decoder, enc: EncoderOutput, max_len: int, beam_size: int = 4, alpha: float = 1.0
) -> Tensor:
    """Batched beam search -> best hypothesis per row, tokens (B, L<=max_len), PAD after EOS.

    Finished beams continue with PAD at zero cost, so they keep competing without growing; when
    EOS never comes the search stops at max_len and returns max_len tokens (never crashes).
    """
    b, device = enc.memory.shape[0], enc.memory.device
    vocab = decoder.vocab_size
    if not 1 <= beam_size <= vocab:
        raise ConfigError(f"beam_size must be in [1, {vocab}]; got {beam_size}")
    k = beam_size
    state = decoder.init_state(
        enc.index_select(torch.arange(b, device=device).repeat_interleave(k))
    )
    scores = torch.full((b, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: keep one so top-k does not pick duplicates
    token = torch.full((b * k,), BOS, dtype=torch.long, device=device)
    finished = torch.zeros(b * k, dtype=torch.bool, device=device)
    lengths = torch.zeros(b * k, device=device)
    history = torch.zeros(b * k, 0, dtype=torch.long, device=device)  # (B*K, t)
    # a finished beam's only continuation is free padding; torch.where, not a boolean-mask
    # write, which would read the mask on the host (a device sync per step on a GPU)
    pad_only = torch.full((vocab,), float("-inf"), device=device)  # (V,)
    pad_only[PAD] = 0.0
    every = all_done_every(enc.memory)
    for t in range(max_len):
        logits, state, _ = decoder.step(state, token)
        logp = logits.float().log_softmax(-1)  # (B*K, V)
        logp = torch.where(finished.unsqueeze(1), pad_only, logp)  # (B*K, V)
        cand = (scores.view(-1, 1) + logp).view(b, k * vocab)  # (B, K*V)
        scores, flat_idx = cand.topk(k, dim=1)  # (B, K)
        parent = (flat_idx // vocab + torch.arange(b, device=device).unsqueeze(1) * k).view(-1)
        token = (flat_idx % vocab).view(-1)  # (B*K,)
        state = decoder.reorder_state(state, parent)
        history = torch.cat([history[parent], token.unsqueeze(1)], 1)  # (B*K, t+1)
        lengths = lengths[parent] + (~finished[parent]).float()
        finished = finished[parent] | (token == EOS)
        if t % every == every - 1 and bool(finished.all()):
            break
    normalised = scores / lengths.view(b, k).clamp_min(1.0).pow(alpha)  # (B, K)
    best = normalised.argmax(1) + torch.arange(b, device=device) * k  # (B,)
    return history[best] if every == 1 else _trim_padding(history[best])
